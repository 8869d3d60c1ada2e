"""Ground truth for the 52 ARKit channels: ICT-FaceKit faces rendered with known weights.

`faces` builds faces from a `FaceSpec` (numpy only), `render` renders them with Blender
Cycles (bpy), `sets` holds the named spec sets, ``python -m bench.truth`` is the command.
Renders go to a cache folder (default bench/truth/cache/, not to be committed).
"""
