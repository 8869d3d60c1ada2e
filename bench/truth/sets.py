"""Named, seeded sets of `FaceSpec`s."""

from __future__ import annotations

from bench.truth.faces import FaceSpec

SMOKE_IDENTITIES = (1, 2)


def smoke() -> list[FaceSpec]:
    """Eleven faces, each checking one thing the tracker must read the right way round (plus
    a both-eyes blink and fixed-lid gazes, which tell render faults from tracker limits)."""
    a, b = SMOKE_IDENTITIES
    return [
        FaceSpec(name="neutral_id1", identity_seed=a),
        FaceSpec(name="neutral_id2", identity_seed=b),
        FaceSpec(name="jawOpen_1.0", identity_seed=a, weights={"jawOpen": 1.0}),
        FaceSpec(name="eyeBlinkLeft_1.0", identity_seed=a, weights={"eyeBlinkLeft": 1.0}),
        FaceSpec(name="eyeBlinkBoth_1.0", identity_seed=a, weights={"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
        FaceSpec(name="mouthSmile_0.8", identity_seed=a, weights={"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8}),
        FaceSpec(name="gaze_yaw+25", identity_seed=a, gaze=(25.0, 0.0)),
        FaceSpec(name="gaze_pitch+20", identity_seed=a, gaze=(0.0, 20.0)),
        FaceSpec(name="gaze_yaw+25_fixedlids", identity_seed=a, gaze=(25.0, 0.0), lids_follow_gaze=False),
        FaceSpec(name="gaze_pitch+20_fixedlids", identity_seed=a, gaze=(0.0, 20.0), lids_follow_gaze=False),
        FaceSpec(name="head_yaw+20", identity_seed=a, head=(20.0, 0.0, 0.0)),
    ]


SETS = {"smoke": smoke}
