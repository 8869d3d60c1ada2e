"""FaceMocap Receiver: drive shape keys and bones in Blender from a VMC stream.

The add-on runs no tracking. It listens for VMC (from `facemocap-osc` or any VMC
sender), applies the newest complete frame on Blender's main thread and can record
takes as Actions. Blender-facing modules are imported in register() so the plain
modules (stream parsing, mapping, the build command) import without bpy.
"""


def register():
    from . import operators, panels, properties

    properties.register()
    operators.register()
    panels.register()


def unregister():
    from . import operators, panels, properties, session

    session.shutdown()
    panels.unregister()
    operators.unregister()
    properties.unregister()
