"""View3D > Sidebar > FaceMocap: connection and status, meshes, armature, recording."""

import bpy

from . import session
from .properties import BONE_PROPERTIES
from .receiver import ReceiverError, is_loopback, listens_everywhere, parse_allow_list


class FACEMOCAP_UL_meshes(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_prop):
        row = layout.row(align=True)
        row.prop(item, "object", text="", emboss=False, icon="MESH_DATA")
        row.prop(item, "strength", text="", emboss=False)


class FACEMOCAP_UL_remaps(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_prop):
        row = layout.row(align=True)
        row.prop(item, "stream_name", text="", emboss=False)
        row.label(icon="FORWARD")
        key = data.object.data.shape_keys if data.object is not None else None
        if key is not None:
            row.prop_search(item, "shape_key", key, "key_blocks", text="")
        else:
            row.prop(item, "shape_key", text="")


def _list_with_buttons(layout, list_type, owner, collection, active, operator_prefix):
    row = layout.row()
    row.template_list(list_type, "", owner, collection, owner, active, rows=2)
    buttons = row.column(align=True)
    buttons.operator(f"{operator_prefix}_add", icon="ADD", text="")
    buttons.operator(f"{operator_prefix}_remove", icon="REMOVE", text="")


def _allow_list_problem(text: str) -> str:
    try:
        parse_allow_list(text)
    except ReceiverError as error:
        return str(error)
    return ""


def exposure_warning(host: str, allow_listed: bool) -> str:
    """The status line for a receiver reachable from the network, or ''."""
    if listens_everywhere(host):
        where = "Listening on every network interface"
    elif not is_loopback(host):
        where = f"Listening on the network at {host}"
    else:
        return ""
    if allow_listed:
        return f"{where}: only allow-listed senders can drive this scene"
    return f"{where}: anyone on the network can drive this scene"


class _SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FaceMocap"


class FACEMOCAP_PT_receiver(_SidebarPanel, bpy.types.Panel):
    bl_label = "FaceMocap Receiver"

    def draw(self, context):
        settings = context.scene.facemocap
        state = session.STATE
        layout = self.layout
        col = layout.column(align=True)
        col.enabled = not state.running
        col.prop(settings, "host")
        col.prop(settings, "port")
        col.prop(settings, "allow")
        allow_problem = _allow_list_problem(settings.allow)
        if allow_problem and not state.running:
            col.label(text=allow_problem, icon="ERROR")
        row = layout.row(align=True)
        if state.running:
            row.operator("facemocap.stop", icon="PAUSE")
        else:
            row.operator("facemocap.start", icon="PLAY")
        row.prop(settings, "record", toggle=True, icon="REC")

        box = layout.box().column(align=True)
        if state.error:
            box.label(text=state.error, icon="ERROR")
        if state.running:
            receiving = state.receiving()
            box.label(
                text=f"Receiving, {state.fps():.0f} fps" if receiving else "Listening, nothing received",
                icon="CHECKMARK" if receiving else "TIME",
            )
            exposure = exposure_warning(state.receiver.host, bool(state.receiver.networks))
            if exposure:
                box.label(text=exposure, icon="ERROR")
            stats = state.receiver.stats
            box.label(text=f"From {state.receiver.stream.last_sender or '-'}")
            box.label(text=f"Dropped as malformed: {stats.dropped}")
            if state.receiver.networks:
                box.label(text=f"Dropped, sender not allowed: {state.receiver.not_allowed}")
            if state.receiver.overflowed:
                box.label(text=f"Skipped while Blender was busy: {state.receiver.overflowed}")
        else:
            box.label(text="Stopped", icon="PAUSE")
        if state.take is not None:
            box.label(text=f"Recording: {len(state.take)} frames", icon="REC")
        for line in state.last_take:
            box.label(text=line, icon="ACTION")
        for problem in state.targets.problems if state.targets is not None else ():
            box.label(text=problem, icon="ERROR")


class FACEMOCAP_PT_meshes(_SidebarPanel, bpy.types.Panel):
    bl_label = "Shape Keys"
    bl_parent_id = "FACEMOCAP_PT_receiver"

    def draw(self, context):
        settings = context.scene.facemocap
        layout = self.layout
        _list_with_buttons(layout, "FACEMOCAP_UL_meshes", settings, "meshes", "active_mesh", "facemocap.mesh")
        if not 0 <= settings.active_mesh < len(settings.meshes):
            return
        item = settings.meshes[settings.active_mesh]
        layout.prop(item, "object")
        layout.prop(item, "strength", slider=True)
        layout.label(text="Remap (stream name > shape key):")
        _list_with_buttons(layout, "FACEMOCAP_UL_remaps", item, "remaps", "active_remap", "facemocap.remap")


class FACEMOCAP_PT_armature(_SidebarPanel, bpy.types.Panel):
    bl_label = "Bones"
    bl_parent_id = "FACEMOCAP_PT_receiver"

    def draw(self, context):
        settings = context.scene.facemocap
        layout = self.layout
        layout.prop(settings, "armature")
        armature = settings.armature
        col = layout.column(align=True)
        for stream_bone, prop in BONE_PROPERTIES.items():
            if armature is not None:
                col.prop_search(settings, prop, armature.data, "bones", text=stream_bone)
            else:
                col.prop(settings, prop, text=stream_bone)
        layout.operator("facemocap.autofill_bones", icon="BONE_DATA")


class FACEMOCAP_PT_landmarks(_SidebarPanel, bpy.types.Panel):
    bl_label = "Landmark Face"
    bl_parent_id = "FACEMOCAP_PT_receiver"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.facemocap
        self.layout.prop(settings, "landmark_object")
        self.layout.operator("facemocap.landmark_face_create", icon="MESH_DATA")


_classes = (
    FACEMOCAP_UL_meshes,
    FACEMOCAP_UL_remaps,
    FACEMOCAP_PT_receiver,
    FACEMOCAP_PT_meshes,
    FACEMOCAP_PT_armature,
    FACEMOCAP_PT_landmarks,
)


register, unregister = bpy.utils.register_classes_factory(_classes)
