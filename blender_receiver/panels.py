"""View3D > Sidebar > FaceMocap: connection and status, meshes, armature, recording."""

import bpy

from . import session
from .properties import BONE_PROPERTIES
from .receiver import ReceiverError, is_loopback, listens_everywhere, parse_allow_list
from .retarget import ARKIT_NAMES
from .targets import mapping_rows


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
        row.prop(item, "strength", text="", emboss=False)
        row.prop(item, "curve", text="", emboss=False)


class FACEMOCAP_UL_takes(bpy.types.UIList):
    """The file's take Actions (those with the take property), newest first by name."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_prop):
        layout.prop(item, "name", text="", emboss=False, icon="ACTION")

    def filter_items(self, context, data, propname):
        from .takes import is_take

        actions = getattr(data, propname)
        flags = [self.bitflag_filter_item if is_take(a) else 0 for a in actions]
        if self.filter_name:
            pattern = self.filter_name.lower()
            flags = [f if pattern in a.name.lower() else 0 for f, a in zip(flags, actions)]
        return flags, []


# key names -> (scheme match, unmatched); the panel redraws often and keys rarely change.
_SCHEME_CACHE: dict = {}


def scheme_summary(key_names, rows) -> tuple[str, list[str]]:
    """The panel's line about a mesh's naming scheme, and the channels that reach no key."""
    from .retarget import SCHEMES, compile_rows, detect_scheme

    cache_key = (tuple(key_names), tuple(rows))
    if cache_key not in _SCHEME_CACHE:
        if len(_SCHEME_CACHE) > 64:
            _SCHEME_CACHE.clear()
        match = detect_scheme(key_names)
        mapping, _problems = compile_rows(rows, key_names)
        # The scheme's own stream names (VRM presets for VRM meshes), else ARKit's.
        streams = SCHEMES[match.scheme].streams if match.scheme in SCHEMES else ARKIT_NAMES
        unmatched = mapping.unmatched(streams)
        found = len(streams) - len(unmatched)
        _SCHEME_CACHE[cache_key] = (f"{match.label}: {found} of {len(streams)} channels reach a key", unmatched)
    return _SCHEME_CACHE[cache_key]


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
        key = item.object.data.shape_keys if item.object is not None else None
        if key is not None:
            summary, unmatched = scheme_summary([kb.name for kb in key.key_blocks], mapping_rows(item))
            box = layout.box().column(align=True)
            box.label(text=summary, icon="SHAPEKEY_DATA")
            if unmatched:
                shown = ", ".join(unmatched[:6]) + (f" and {len(unmatched) - 6} more" if len(unmatched) > 6 else "")
                box.label(text=f"Unmatched: {shown}", icon="INFO")
        layout.label(text="Mapping (stream name > shape key, strength, curve):")
        _list_with_buttons(layout, "FACEMOCAP_UL_remaps", item, "remaps", "active_remap", "facemocap.remap")
        row = layout.row(align=True)
        row.operator("facemocap.mapping_autofill", icon="AUTO")
        row.operator("facemocap.mapping_load", icon="FILEBROWSER", text="Load")
        row.operator("facemocap.mapping_save", icon="FILE_TICK", text="Save")


class FACEMOCAP_PT_takes(_SidebarPanel, bpy.types.Panel):
    bl_label = "Takes"
    bl_parent_id = "FACEMOCAP_PT_receiver"

    def draw(self, context):
        from .cleanup import count_keys
        from .operators import active_take

        settings = context.scene.facemocap
        layout = self.layout
        layout.operator("facemocap.import_take", icon="IMPORT")
        layout.template_list("FACEMOCAP_UL_takes", "", bpy.data, "actions", settings, "active_take", rows=3)
        action = active_take(context)
        if action is None:
            layout.label(text="Record or import a take; double-click a take to rename it")
            return
        layout.label(text=f"{count_keys(action):,} keys, frames {action.frame_range[0]:g}-{action.frame_range[1]:g}")
        row = layout.row(align=True)
        row.operator("facemocap.take_push_nla", icon="NLA_PUSHDOWN")
        row.operator("facemocap.take_delete", icon="TRASH", text="Delete")
        col = layout.column(align=True)
        col.prop(settings, "cleanup_smooth", slider=True)
        col.prop(settings, "cleanup_decimate")
        op = col.operator("facemocap.take_cleanup", icon="IPO_EASE_IN_OUT")
        op.smooth, op.decimate = settings.cleanup_smooth, settings.cleanup_decimate


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
        layout = self.layout
        layout.prop(settings, "landmark_object")
        row = layout.row(align=True)
        row.operator("facemocap.landmark_face_create", icon="MESH_DATA")
        row.operator("facemocap.face_rig_create", icon="ARMATURE_DATA")
        layout.prop(settings, "face_rig")
        layout.operator("facemocap.face_rig_bake", icon="REC")


_classes = (
    FACEMOCAP_UL_meshes,
    FACEMOCAP_UL_remaps,
    FACEMOCAP_UL_takes,
    FACEMOCAP_PT_receiver,
    FACEMOCAP_PT_meshes,
    FACEMOCAP_PT_armature,
    FACEMOCAP_PT_takes,
    FACEMOCAP_PT_landmarks,
)


register, unregister = bpy.utils.register_classes_factory(_classes)
