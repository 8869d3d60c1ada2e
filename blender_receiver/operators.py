"""Operators: the panel's buttons, each a thin call into session / targets."""

import bpy

from . import session
from .targets import autofill_bones


class FACEMOCAP_OT_start(bpy.types.Operator):
    bl_idname = "facemocap.start"
    bl_label = "Start"
    bl_description = "Listen for a VMC stream on the host and port above"

    def execute(self, context):
        error = session.start(context.scene)
        if error:
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        return {"FINISHED"}


class FACEMOCAP_OT_stop(bpy.types.Operator):
    bl_idname = "facemocap.stop"
    bl_label = "Stop"
    bl_description = "Stop listening and release the port (a take being recorded is written)"

    def execute(self, context):
        session.stop(context.scene)
        return {"FINISHED"}


class FACEMOCAP_OT_autofill_bones(bpy.types.Operator):
    bl_idname = "facemocap.autofill_bones"
    bl_label = "Auto-fill Bones"
    bl_description = "Find head, neck and eye bones (VRM humanoid table, Rigify, or common names)"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene.facemocap.armature is not None

    def execute(self, context):
        found = autofill_bones(context.scene.facemocap)
        self.report({"INFO"}, f"Found {len(found)} of 4 bones")
        return {"FINISHED"}


class FACEMOCAP_OT_mesh_add(bpy.types.Operator):
    bl_idname = "facemocap.mesh_add"
    bl_label = "Add Mesh"
    bl_description = "Add the selected meshes (or an empty slot) as shape-key targets"
    bl_options = {"UNDO"}

    def execute(self, context):
        settings = context.scene.facemocap
        present = {item.object for item in settings.meshes}
        selected = [o for o in context.selected_objects if o.type == "MESH" and o not in present]
        for obj in selected or [None]:
            settings.meshes.add().object = obj
        settings.active_mesh = len(settings.meshes) - 1
        session.invalidate_bindings()
        return {"FINISHED"}


class FACEMOCAP_OT_mesh_remove(bpy.types.Operator):
    bl_idname = "facemocap.mesh_remove"
    bl_label = "Remove Mesh"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return len(context.scene.facemocap.meshes) > 0

    def execute(self, context):
        _remove_active(context.scene.facemocap, "meshes", "active_mesh")
        return {"FINISHED"}


class FACEMOCAP_OT_landmark_face_create(bpy.types.Operator):
    bl_idname = "facemocap.landmark_face_create"
    bl_label = "Create Landmark Face"
    bl_description = ("A mesh of the tracker's 478 landmarks that follows the landmarks stream; "
                      "hook or constrain face bones to its vertices")
    bl_options = {"UNDO"}

    def execute(self, context):
        from .landmark_stream import COUNT
        from .targets import landmarks_to_blender

        latest = session.STATE.landmarks.latest if session.STATE.landmarks is not None else None
        if latest is not None:
            points = landmarks_to_blender(latest)
        else:  # no stream yet: a flat grid until the first frame arrives
            side = int(COUNT ** 0.5) + 1
            points = [((i % side) / side - 0.5, 0.0, (i // side) / side - 0.5) for i in range(COUNT)]
        mesh = bpy.data.meshes.new("FaceMocap Landmarks")
        mesh.from_pydata([tuple(p) for p in points], [], [])
        obj = bpy.data.objects.new("FaceMocap Landmarks", mesh)
        context.scene.collection.objects.link(obj)
        context.scene.facemocap.landmark_object = obj
        return {"FINISHED"}


def _remove_active(owner, collection: str, active: str) -> None:
    items, index = getattr(owner, collection), getattr(owner, active)
    items.remove(index)
    setattr(owner, active, max(0, min(index, len(items) - 1)))
    session.invalidate_bindings()


def _active_mesh(context):
    settings = context.scene.facemocap
    if 0 <= settings.active_mesh < len(settings.meshes):
        return settings.meshes[settings.active_mesh]
    return None


class FACEMOCAP_OT_remap_add(bpy.types.Operator):
    bl_idname = "facemocap.remap_add"
    bl_label = "Add Remap"
    bl_description = "Drive a shape key from a stream name that does not match it"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_mesh(context) is not None

    def execute(self, context):
        item = _active_mesh(context)
        item.remaps.add()
        item.active_remap = len(item.remaps) - 1
        return {"FINISHED"}


class FACEMOCAP_OT_remap_remove(bpy.types.Operator):
    bl_idname = "facemocap.remap_remove"
    bl_label = "Remove Remap"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        item = _active_mesh(context)
        return item is not None and len(item.remaps) > 0

    def execute(self, context):
        _remove_active(_active_mesh(context), "remaps", "active_remap")
        return {"FINISHED"}


_classes = (
    FACEMOCAP_OT_start,
    FACEMOCAP_OT_stop,
    FACEMOCAP_OT_autofill_bones,
    FACEMOCAP_OT_mesh_add,
    FACEMOCAP_OT_mesh_remove,
    FACEMOCAP_OT_remap_add,
    FACEMOCAP_OT_remap_remove,
    FACEMOCAP_OT_landmark_face_create,
)


register, unregister = bpy.utils.register_classes_factory(_classes)
