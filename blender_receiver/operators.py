"""Operators: the panel's buttons, each a thin call into session / targets."""

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

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


# --- the mapping table ------------------------------------------------------------


class FACEMOCAP_OT_mapping_autofill(bpy.types.Operator):
    bl_idname = "facemocap.mapping_autofill"
    bl_label = "Auto-fill Mapping"
    bl_description = ("Recognise the mesh's shape-key naming (ARKit, _L/_R, VRoid Fcl_*, CC4, VRM presets) "
                      "and fill the table with a row per channel it has a key for")
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        item = _active_mesh(context)
        return item is not None and item.object is not None and item.object.data.shape_keys is not None

    def execute(self, context):
        from .retarget import detect_scheme

        item = _active_mesh(context)
        match = detect_scheme([kb.name for kb in item.object.data.shape_keys.key_blocks])
        _set_rows(item, match.rows)
        self.report({"INFO"}, f"{match.label}: {match.found} of {match.total} channels, {len(match.rows)} rows")
        return {"FINISHED"}


def _set_rows(item, rows) -> None:
    item.remaps.clear()
    for row in rows:
        entry = item.remaps.add()
        entry.stream_name, entry.shape_key, entry.strength, entry.curve = row.stream, row.key, row.strength, row.curve
    item.active_remap = 0
    session.invalidate_bindings()


class FACEMOCAP_OT_mapping_save(bpy.types.Operator, ExportHelper):
    bl_idname = "facemocap.mapping_save"
    bl_label = "Save Mapping"
    bl_description = "Save this mesh's mapping table (TOML or JSON) to share it across characters"

    filename_ext = ".toml"
    filter_glob: StringProperty(default="*.toml;*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _active_mesh(context) is not None

    def execute(self, context):
        from .retarget import MappingError, save_mapping
        from .targets import mapping_rows

        item = _active_mesh(context)
        try:
            save_mapping(self.filepath, mapping_rows(item))
        except (MappingError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {len(item.remaps)} rows to {self.filepath}")
        return {"FINISHED"}


class FACEMOCAP_OT_mapping_load(bpy.types.Operator, ImportHelper):
    bl_idname = "facemocap.mapping_load"
    bl_label = "Load Mapping"
    bl_description = "Replace this mesh's mapping table with one from a file (TOML or JSON)"
    bl_options = {"UNDO"}

    filter_glob: StringProperty(default="*.toml;*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _active_mesh(context) is not None

    def execute(self, context):
        from .retarget import MappingError, load_mapping

        item = _active_mesh(context)
        try:
            rows = load_mapping(self.filepath)
        except (MappingError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _set_rows(item, rows)
        self.report({"INFO"}, f"Loaded {len(rows)} rows")
        return {"FINISHED"}


# --- takes ---------------------------------------------------------------------------


class FACEMOCAP_OT_import_take(bpy.types.Operator, ImportHelper):
    bl_idname = "facemocap.import_take"
    bl_label = "Import Face Take"
    bl_description = ("A take file (facemocap-osc take or export, iPhone Live Link Face CSV) as a take Action "
                      "on the panel's targets, or else the active object")
    bl_options = {"UNDO", "PRESET"}

    filter_glob: StringProperty(default="*.csv;*.json;*.jsonl;*.jsonl.gz;*.gz", options={"HIDDEN"})
    start_frame: IntProperty(name="Start Frame", default=1, description="Scene frame of the take's first frame")

    def invoke(self, context, event):
        self.start_frame = context.scene.frame_current
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        from .importer import ImportFailed, import_take

        try:
            lines = import_take(self.filepath, context.scene, self.start_frame, context.active_object)
        except ImportFailed as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        session.STATE.last_take = lines
        for line in lines:
            self.report({"INFO"}, line)
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(FACEMOCAP_OT_import_take.bl_idname, text="Face Take (.csv, .json, .jsonl)")


def active_take(context):
    from .takes import is_take

    index = context.scene.facemocap.active_take
    actions = bpy.data.actions
    if 0 <= index < len(actions) and is_take(actions[index]):
        return actions[index]
    return None


class _TakeOperator:
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return active_take(context) is not None


class FACEMOCAP_OT_take_push_nla(_TakeOperator, bpy.types.Operator):
    bl_idname = "facemocap.take_push_nla"
    bl_label = "Push to NLA"
    bl_description = "Put the take on its objects' NLA as a strip on a new track, to compare, blend and trim takes"

    def execute(self, context):
        from .takes import push_to_nla

        action = active_take(context)
        pushed = push_to_nla(action)
        if not pushed:
            self.report({"ERROR"}, f"{action.name}: the objects it was recorded on are gone")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{action.name}: pushed to the NLA of {', '.join(pushed)}")
        return {"FINISHED"}


class FACEMOCAP_OT_take_delete(_TakeOperator, bpy.types.Operator):
    bl_idname = "facemocap.take_delete"
    bl_label = "Delete Take"
    bl_description = "Delete the take's Action and the NLA strips that play it"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        from .takes import delete_take

        action = active_take(context)
        name = action.name
        delete_take(action)
        self.report({"INFO"}, f"Deleted {name}")
        return {"FINISHED"}


class FACEMOCAP_OT_take_cleanup(_TakeOperator, bpy.types.Operator):
    bl_idname = "facemocap.take_cleanup"
    bl_label = "Clean Up Take"
    bl_description = "Smooth the take's curves, then remove keys while the curves stay within the tolerance"

    decimate: FloatProperty(name="Reduce", default=0.01, min=0.0, max=1.0, precision=3,
                            description="Allowed change of any value where a key is removed")
    smooth: FloatProperty(name="Smooth", default=0.3, min=0.0, max=1.0, subtype="FACTOR",
                          description="How strongly the curves are smoothed first")

    def execute(self, context):
        from .cleanup import clean_up_take

        action = active_take(context)
        wm = context.window_manager
        # Blender's decimate takes about 50 us a key (a minute of 60 fps take: ~10 s):
        # show its progress on the cursor.
        wm.progress_begin(0, 1)
        try:
            result = clean_up_take(action, decimate=self.decimate, smooth=self.smooth,
                                   progress=lambda done, total: wm.progress_update(done / max(total, 1)))
        finally:
            wm.progress_end()
        line = f"{action.name}: {result.keys_before:,} keys -> {result.keys_after:,} (within {result.max_error:.4g})"
        session.STATE.last_take = [line]  # the status box keeps it: keys before and after
        self.report({"INFO"}, line)
        return {"FINISHED"}


# --- the landmark face rig -----------------------------------------------------------


class FACEMOCAP_OT_face_rig_create(bpy.types.Operator):
    bl_idname = "facemocap.face_rig_create"
    bl_label = "Create Face Rig"
    bl_description = ("An armature whose jaw, lip, lid, brow, cheek and nose bones follow the landmark face; "
                      "constrain or parent your character's face bones to it, or bake it")
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene.facemocap.landmark_object is not None

    def execute(self, context):
        from .face_rig import create_face_rig

        settings = context.scene.facemocap
        try:
            rig = create_face_rig(context.scene, settings.landmark_object)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        settings.face_rig = rig
        self.report({"INFO"}, f"{rig.name}: {len(rig.data.bones)} bones following {settings.landmark_object.name}")
        return {"FINISHED"}


class FACEMOCAP_OT_face_rig_bake(bpy.types.Operator):
    bl_idname = "facemocap.face_rig_bake"
    bl_label = "Bake Face Rig"
    bl_description = ("Bake the face rig's motion over the scene's frame range to an Action (onto the panel's "
                      "armature when its bones are constrained to the rig), so the rig can then be deleted")
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene.facemocap.face_rig is not None

    def execute(self, context):
        from .face_rig import bake_face_rig, follows_rig

        scene, settings = context.scene, context.scene.facemocap
        # The panel's armature when the character follows the rig, else the rig itself.
        character = settings.armature if follows_rig(settings.armature, settings.face_rig) else None
        try:
            action = bake_face_rig(scene, settings.face_rig, scene.frame_start, scene.frame_end, target=character)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Baked frames {scene.frame_start}-{scene.frame_end} to {action.name}")
        return {"FINISHED"}


_classes = (
    FACEMOCAP_OT_mapping_autofill,
    FACEMOCAP_OT_mapping_save,
    FACEMOCAP_OT_mapping_load,
    FACEMOCAP_OT_import_take,
    FACEMOCAP_OT_take_push_nla,
    FACEMOCAP_OT_take_delete,
    FACEMOCAP_OT_take_cleanup,
    FACEMOCAP_OT_face_rig_create,
    FACEMOCAP_OT_face_rig_bake,
    FACEMOCAP_OT_start,
    FACEMOCAP_OT_stop,
    FACEMOCAP_OT_autofill_bones,
    FACEMOCAP_OT_mesh_add,
    FACEMOCAP_OT_mesh_remove,
    FACEMOCAP_OT_remap_add,
    FACEMOCAP_OT_remap_remove,
    FACEMOCAP_OT_landmark_face_create,
)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_classes)


def register():
    _register_classes()
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    _unregister_classes()
