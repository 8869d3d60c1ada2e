"""The panel's settings, stored on the scene (`scene.facemocap`) and saved with the file."""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import session
from .receiver import DEFAULT_HOST


def _settings_changed(self, context):
    session.invalidate_bindings()


def _armature_changed(self, context):
    from .targets import autofill_bones

    if self.armature is not None:
        autofill_bones(self)
    session.invalidate_bindings()


def _record_changed(self, context):
    session.set_recording(context.scene, self.record)


def _is_mesh(self, obj):
    return obj.type == "MESH"


def _is_armature(self, obj):
    return obj.type == "ARMATURE"


class FACEMOCAP_PG_remap(bpy.types.PropertyGroup):
    stream_name: StringProperty(
        name="Stream name", description="Name as it arrives, e.g. JawOpen or A",
        update=_settings_changed,
    )
    shape_key: StringProperty(
        name="Shape key", description="Shape key this stream name drives instead",
        update=_settings_changed,
    )
    strength: FloatProperty(
        name="Strength", default=1.0, min=0.0, max=10.0, soft_max=2.0, update=_settings_changed,
        description="Multiplies this row's value (rows onto one key add up, then clamp to its slider range)",
    )
    curve: FloatProperty(
        name="Curve", default=1.0, min=0.05, max=10.0, soft_min=0.25, soft_max=4.0, update=_settings_changed,
        description="Response: value to this power. 1 is linear, above 1 eases in (small values shrink), "
                    "below 1 eases out (small values grow)",
    )


class FACEMOCAP_PG_mesh(bpy.types.PropertyGroup):
    object: PointerProperty(
        type=bpy.types.Object, name="Mesh", poll=_is_mesh, update=_settings_changed,
        description="Mesh whose shape keys follow the stream",
    )
    strength: FloatProperty(
        name="Strength", default=1.0, min=0.0, soft_max=2.0, update=_settings_changed,
        description="Multiplies every value before it is clamped to the key's slider range",
    )
    remaps: CollectionProperty(type=FACEMOCAP_PG_remap)
    active_remap: IntProperty()


class FACEMOCAP_PG_settings(bpy.types.PropertyGroup):
    host: StringProperty(
        name="Host", default=DEFAULT_HOST,
        description=(
            "Address to listen on. 127.0.0.1 (the default): senders on this machine only. "
            "0.0.0.0 or :: listens on every network interface, so anyone on the network "
            "can drive this scene (limit it with Allow)"
        ),
    )
    allow: StringProperty(
        name="Allow",
        description=(
            "Accept datagrams only from these senders: IPv4 / IPv6 addresses or CIDR ranges "
            "(192.168.1.20, 192.168.1.0/24, ::1), separated by commas or spaces. "
            "Empty: every sender. Others are dropped before parsing and counted"
        ),
    )
    port: IntProperty(name="Port", default=39539, min=1, max=65535)
    meshes: CollectionProperty(type=FACEMOCAP_PG_mesh)
    active_mesh: IntProperty()
    armature: PointerProperty(
        type=bpy.types.Object, name="Armature", poll=_is_armature, update=_armature_changed,
        description="Armature whose head, neck and eye bones follow the stream",
    )
    bone_head: StringProperty(name="Head", update=_settings_changed)
    bone_neck: StringProperty(name="Neck", update=_settings_changed)
    bone_left_eye: StringProperty(name="LeftEye", update=_settings_changed)
    bone_right_eye: StringProperty(name="RightEye", update=_settings_changed)
    landmark_object: PointerProperty(
        type=bpy.types.Object, name="Landmark face", poll=_is_mesh,
        description="Mesh whose 478 vertices follow the landmarks stream (facemocap-osc's landmarks preset)",
    )
    record: BoolProperty(
        name="Record", update=_record_changed,
        description="Keep every frame received; when switched off, write them as a take (an Action)",
    )
    active_take: IntProperty(name="Take", description="Index of the selected take in the file's Actions")
    cleanup_decimate: FloatProperty(
        name="Reduce", default=0.01, min=0.0, max=1.0, soft_max=0.1, precision=3,
        description="Keys are removed while the curve stays within this of the (smoothed) values; "
                    "0.01 is 1% of a shape key's range",
    )
    cleanup_smooth: FloatProperty(
        name="Smooth", default=0.3, min=0.0, max=1.0, subtype="FACTOR",
        description="How strongly the take is smoothed before keys are reduced (0: not at all)",
    )
    face_rig: PointerProperty(
        type=bpy.types.Object, name="Face rig", poll=_is_armature,
        description="The armature made by Create Face Rig, which follows the landmark face",
    )


# Stream bone -> settings property holding the rig bone name.
BONE_PROPERTIES = {
    "Head": "bone_head",
    "Neck": "bone_neck",
    "LeftEye": "bone_left_eye",
    "RightEye": "bone_right_eye",
}

_classes = (FACEMOCAP_PG_remap, FACEMOCAP_PG_mesh, FACEMOCAP_PG_settings)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_classes)


def register():
    _register_classes()
    bpy.types.Scene.facemocap = PointerProperty(type=FACEMOCAP_PG_settings)


def unregister():
    del bpy.types.Scene.facemocap
    _unregister_classes()
