"""facemocap-osc: webcam face tracking to VMC / OSC.

Stages, one module each, data flowing one way:
sources -> tracking -> solve -> shape -> vmc (encode) -> send; pipeline runs them, cli parses.
"""

__version__ = "0.1.0"
