"""FaceMocap Receiver: a face-mocap toolkit in Blender for facemocap-osc and other VMC senders.

The add-on runs no tracking. It listens for VMC (from `facemocap-osc` or any VMC
sender), applies the newest complete frame on Blender's main thread and records
takes as Actions; imports take files (iPhone Live Link Face CSVs, facemocap-osc
takes and exports); retargets stream names to any rig's shape keys; puts takes on
the NLA and cleans them up; and builds a face rig that follows the landmark face.
Blender-facing modules are imported in register() so the plain modules (stream
parsing, mapping, take files, the build command) import without bpy.
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
