"""Neutral-face calibration: the math, the capture window, the adaptive range,
profiles on disk, the OSC control port and the run loop's wiring."""

import functools
import json
import logging
import math
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient

from bridge.calibrate import (
    ADAPTIVE_DECAY_SECONDS, ADAPTIVE_FLOOR, CALIBRATED_NOTE_SECONDS, CONFIG_DIR_ENV, MAX_CAPTURED_MODEL_REST,
    VMC_CALIBRATED, VMC_CALIBRATING, AdaptiveRange, Calibrator, Capture, Neutral, NeutralAccumulator,
    ProfileError, check_profile_name, config_dir, load_profile, profile_path, save_profile,
)
from bridge.control import ControlError, ControlPort, parse_calibrate_args
from bridge.shape import ShapeOptions, Shaper
from bridge.solve import Solver, geometry, vrm_presets
from bridge.state import (
    ARKIT_INDEX, ARKIT_NAMES, VRM0_INDEX, FaceState, angles_to_quat, matrix_to_angles, quat_multiply,
    quat_to_matrix,
)

FPS = 30.0
WAIT_SECONDS = 5.0   # upper bound for a datagram to cross loopback; never asserted on


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """Every test here writes profiles under tmp_path, never into a real home."""
    home = tmp_path / "config"
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return home


MEASURE = geometry.M
TONGUE = ARKIT_INDEX["tongueOut"]


def measures(**changes) -> np.ndarray:
    """The prior's rest measures with some changed (name=value)."""
    m = geometry.PRIOR_VECTOR.copy()
    for name, value in changes.items():
        m[MEASURE[name]] = value
    return m


def scores(smile=0.0, **changes) -> np.ndarray:
    """Model scores as the solver keeps them: ARKIT_NAMES order, NaN for tongueOut."""
    s = np.full(len(ARKIT_NAMES), 0.02)
    s[[ARKIT_INDEX["mouthSmileLeft"], ARKIT_INDEX["mouthSmileRight"]]] = smile
    for name, value in changes.items():
        s[ARKIT_INDEX[name]] = value
    s[TONGUE] = np.nan
    return s


def face(smile=0.0, jaw=0.0, yaw=0.0, pitch=0.0, roll=0.0, eyes=((0.0, 0.0), (0.0, 0.0)),
         position=(0.0, 0.0, -0.5), measures=None, scores=None) -> FaceState:
    s = FaceState.neutral(head_position=position)
    s.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] = smile
    s.blendshapes[ARKIT_INDEX["mouthSmileRight"]] = smile
    s.blendshapes[ARKIT_INDEX["jawOpen"]] = jaw
    s.head_angles[:] = (yaw, pitch, roll)
    s.eye_angles[:] = eyes
    s.vrm = vrm_presets(s.blendshapes, s.eye_angles)
    s.measures, s.scores = measures, scores
    return s


def neutral_of(state: FaceState) -> Neutral:
    model = None if state.scores is None else np.nan_to_num(state.scores, nan=0.0)
    return Neutral(state.measures, model, state.head_angles, state.head_position)


def same_rotation(a, b) -> bool:
    return abs(abs(float(np.dot(a, b))) - 1.0) < 1e-9


# ---- applying a neutral ------------------------------------------------------------

def test_apply_leaves_blendshapes_and_eyes_to_the_solver():
    """The solver already took them against the neutral's measures: subtracting the
    rest again here would remove it twice."""
    neutral = neutral_of(face(smile=0.3, eyes=((4.0, -2.0), (3.0, -1.0)), measures=measures(lip_gap=0.2),
                              scores=scores(smile=0.3)))
    state = face(smile=0.3, jaw=0.4, eyes=((10.0, 0.0), (9.0, 1.0)), measures=measures(), scores=scores())
    out = neutral.apply(state)
    assert np.array_equal(out.blendshapes, state.blendshapes)
    assert np.array_equal(out.eye_angles, state.eye_angles)
    assert out.measures is state.measures and out.scores is state.scores   # what they were read from
    out.blendshapes[0] = 0.5
    out.eye_angles[0, 0] = 1.0
    assert state.blendshapes[0] == 0.0 and state.eye_angles[0, 0] == 10.0   # copies: the input is untouched


def test_head_neutral_is_removed_as_a_rotation():
    neutral = neutral_of(face(yaw=10.0, roll=5.0))
    # At rest: exactly the identity.
    assert neutral.apply(face(yaw=10.0, roll=5.0)).head_angles == pytest.approx([0, 0, 0], abs=1e-9)
    # A turn relative to the rest pose, R = R_n * R_rel, comes back as R_rel.
    relative = (25.0, -12.0, 4.0)
    q = quat_multiply(angles_to_quat(10.0, 0.0, 5.0), angles_to_quat(*relative))
    measured = matrix_to_angles(quat_to_matrix(q))
    out = neutral.apply(face(*[0.0, 0.0], *measured)).head_angles
    assert out == pytest.approx(relative, abs=1e-9)
    assert same_rotation(angles_to_quat(*out), angles_to_quat(*relative))
    # Subtracting Euler angles would have given something else: the test has teeth.
    assert not np.allclose(np.subtract(measured, (10.0, 0.0, 5.0)), relative, atol=0.1)


def test_head_position_is_relative_to_the_neutral():
    neutral = neutral_of(face(position=(0.01, 0.02, -0.6)))
    out = neutral.apply(face(position=(0.03, 0.02, -0.5)))
    assert out.head_position == pytest.approx([0.02, 0.0, 0.1])


def test_vrm_presets_are_recomputed_from_the_values_that_go_out():
    calibrator = Calibrator(neutral=neutral_of(face(yaw=10.0)), adaptive_range=True)
    raw = face(smile=0.3, yaw=10.0)
    assert raw.vrm[VRM0_INDEX["Fun"]] == pytest.approx(0.3)
    out = calibrator.process(0.0, raw)
    # The adaptive range stretched the smile (0.3 / its floor): the presets follow it.
    assert out.blendshape("mouthSmileLeft") == pytest.approx(0.3 / ADAPTIVE_FLOOR)
    assert out.vrm[VRM0_INDEX["Fun"]] == pytest.approx(0.3 / ADAPTIVE_FLOOR)
    assert out.vrm == pytest.approx(vrm_presets(out.blendshapes, out.eye_angles))
    assert raw.vrm[VRM0_INDEX["Fun"]] == pytest.approx(0.3)       # the input was not modified


def test_a_neutral_refuses_vectors_of_the_wrong_size():
    with pytest.raises(ValueError, match="measures must be"):
        Neutral(np.zeros(3), None, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="model scores must be 52"):
        Neutral(None, np.zeros(51), np.zeros(3), np.zeros(3))


def test_without_neutral_or_adaptive_range_states_pass_through_untouched():
    calibrator = Calibrator()
    state = face(smile=0.3, yaw=7.0)
    assert calibrator.process(0.0, state) is state
    assert calibrator.process(0.1, None) is None
    assert calibrator.vmc_state == VMC_CALIBRATED and calibrator.status_note() == ""


# ---- capturing -------------------------------------------------------------------------

def feed(target, frames, start_index=0):
    """frames: a list of FaceState | None at 30 fps; returns the next frame index."""
    for i, state in enumerate(frames, start_index):
        target.add(i / FPS, state) if isinstance(target, Capture) else target.process(i / FPS, state)
    return start_index + len(frames)


def test_capture_takes_the_mean_of_face_frames_only():
    capture = Capture(1.0)
    gaps, smiles = [], []
    for i in range(100):
        state = None
        if not (i < 10 or i % 7 == 0):
            gap, smile = 0.05 + 0.01 * (i % 5), 0.2 + 0.02 * (i % 3)
            state = face(yaw=10.0, roll=5.0, measures=measures(lip_gap=gap), scores=scores(smile=smile))
            gaps.append(gap)
            smiles.append(smile)
        capture.add(i / FPS, state)
        if capture.done:
            break
    assert capture.done
    neutral = capture.neutral()
    assert neutral.measures[MEASURE["lip_gap"]] == pytest.approx(np.mean(gaps))
    assert neutral.model[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(np.mean(smiles))
    assert neutral.head_angles == pytest.approx([10.0, 0.0, 5.0], abs=1e-9)


def test_accumulator_means_measures_and_model_scores():
    acc = NeutralAccumulator()
    acc.add(face(measures=measures(lip_gap=0.1, brow_inner_L=1.0), scores=scores(smile=0.2)))
    acc.add(face(measures=measures(lip_gap=0.3, brow_inner_L=1.4), scores=scores(smile=0.4)))
    neutral = acc.mean()
    assert neutral.measures.shape == (len(geometry.MEASURES),)
    assert neutral.measures[MEASURE["lip_gap"]] == pytest.approx(0.2)
    assert neutral.measures[MEASURE["brow_inner_L"]] == pytest.approx(1.2)
    assert neutral.measures[MEASURE["nose_chin"]] == pytest.approx(geometry.PRIOR["nose_chin"])
    assert neutral.model.shape == (len(ARKIT_NAMES),)
    assert neutral.model[ARKIT_INDEX["mouthSmileRight"]] == pytest.approx(0.3)
    assert neutral.model[ARKIT_INDEX["jawOpen"]] == pytest.approx(0.02)
    # The model never gives tongueOut: its rest is 0, as the solver's own estimate has it.
    assert neutral.model[TONGUE] == 0.0 and np.isfinite(neutral.model).all()


def test_accumulator_skips_a_blink_and_frames_with_incomplete_scores():
    acc = NeutralAccumulator()
    acc.add(face(measures=measures(eye_open_L=0.32), scores=scores(smile=0.2)))
    # Eye shut: not an open eye's rest (geometry.rest_sample); the other measures count.
    acc.add(face(measures=measures(eye_open_L=0.02, lip_gap=0.4), scores=scores(smile=0.2)))
    incomplete = scores(smile=0.9)
    incomplete[ARKIT_INDEX["jawOpen"]] = np.nan          # a score missing: the frame's scores don't count
    acc.add(face(measures=measures(eye_open_L=0.30), scores=incomplete))
    neutral = acc.mean()
    assert neutral.measures[MEASURE["eye_open_L"]] == pytest.approx(0.31)
    assert neutral.measures[MEASURE["lip_gap"]] == pytest.approx(0.4 / 3)
    assert neutral.model[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.2)
    assert acc.score_frames == 2 and acc.measure_frames == 3


def test_accumulator_without_measures_or_scores_gives_none():
    acc = NeutralAccumulator()
    acc.add(face(yaw=4.0))
    neutral = acc.mean()
    assert neutral.measures is None and neutral.model is None
    assert neutral.head_angles == pytest.approx([4.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="no face frames"):
        NeutralAccumulator().mean()


def test_a_capture_held_in_a_big_smile_caps_the_model_rest():
    acc = NeutralAccumulator()
    acc.add(face(measures=measures(), scores=scores(smile=1.0)))
    # (s - rest) / (1 - rest): a rest of 1 would divide by zero, one near it amplify noise.
    assert acc.mean().model[ARKIT_INDEX["mouthSmileLeft"]] == MAX_CAPTURED_MODEL_REST


def test_capture_window_starts_at_the_first_face_frame():
    capture = Capture(1.0)
    feed(capture, [None] * 60)
    assert not capture.done and "waiting for a face" in capture.status()
    i = feed(capture, [face()] * 30, 60)     # 29 frame steps: 0.97 s of window
    assert not capture.done and "s left" in capture.status()
    feed(capture, [face()], i)
    assert capture.done


def test_capture_keeps_going_when_the_face_was_missing_too_much():
    capture = Capture(1.0)
    resting = face(measures=measures(corner_L=0.1))
    i = feed(capture, [resting] * 5 + [None] * 30)   # window over, ~0.13 s of face
    assert not capture.done
    assert "face missing too often" in capture.status()
    i = feed(capture, [resting] * 10, i)
    assert not capture.done                                  # still under 0.5 s of face
    feed(capture, [resting] * 10, i)
    assert capture.done and capture.face_seconds >= 0.5
    assert capture.neutral().measures[MEASURE["corner_L"]] == pytest.approx(0.1)


def test_a_stalled_source_does_not_count_as_seconds_of_face():
    capture = Capture(2.0)
    capture.add(0.0, face())
    capture.add(5.0, face())          # a 5 s gap counts as one frame's worth at most
    assert not capture.done and capture.face_seconds <= 0.1


def test_capture_ignores_non_finite_states():
    capture = Capture(0.5)
    bad = face(yaw=90.0, measures=measures(lip_gap=5.0), scores=scores(smile=0.9))
    bad.blendshapes[0] = np.nan
    nan_measure = face(measures=measures(lip_gap=np.nan, corner_L=0.2))   # one measure lost: the others count
    good = face(measures=measures(lip_gap=0.1, corner_L=0.2), scores=scores(smile=0.3))
    feed(capture, [good, bad, nan_measure] * 20)
    assert capture.done
    neutral = capture.neutral()
    assert np.isfinite(neutral.measures).all() and np.isfinite(neutral.model).all()
    assert neutral.measures[MEASURE["lip_gap"]] == pytest.approx(0.1)
    assert neutral.measures[MEASURE["corner_L"]] == pytest.approx(0.2)
    assert neutral.model[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.3)
    assert neutral.head_angles == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)


@pytest.mark.parametrize("seconds", [0.0, 0.4, 61.0, math.nan])
def test_capture_rejects_out_of_range_lengths(seconds):
    with pytest.raises(ValueError):
        Capture(seconds)


def test_calibrator_sends_uncalibrated_while_capturing_then_calibrated():
    calibrator = Calibrator()
    calibrator.start_capture(1.0)
    resting = face(smile=0.3, yaw=10.0, roll=5.0, position=(0.02, 0.0, -0.6), measures=measures())
    out = calibrator.process(0.0, resting)
    assert out.head_angles == pytest.approx([10.0, 0.0, 5.0])   # uncalibrated
    assert calibrator.vmc_state == VMC_CALIBRATING
    assert calibrator.status_note().startswith("calibrating: hold a neutral face (1.0 s left)")
    i = feed(calibrator, [resting] * 30, 1)
    assert calibrator.vmc_state == VMC_CALIBRATED and not calibrator.capturing
    assert calibrator.status_note() == "calibrated"
    assert calibrator.take_finished() is not None and calibrator.take_finished() is None
    out = calibrator.process(i / FPS, resting)
    assert out.head_angles == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert out.head_position == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    # The smile is the solver's to remove (it gets the neutral's measures): not touched here.
    assert out.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.3)
    calibrator.process(i / FPS + CALIBRATED_NOTE_SECONDS, resting)
    assert calibrator.status_note() == ""


def test_recalibrating_keeps_the_old_neutral_until_the_new_one_is_ready():
    old = neutral_of(face(yaw=10.0))
    calibrator = Calibrator(neutral=old)
    calibrator.start_capture(0.5)
    turned_more = face(yaw=15.0, measures=measures(lip_gap=0.1))
    out = calibrator.process(0.0, turned_more)
    assert out.head_angles == pytest.approx([5.0, 0.0, 0.0])
    i = feed(calibrator, [turned_more] * 20, 1)
    assert not calibrator.capturing and calibrator.neutral is not old
    assert calibrator.neutral.measures[MEASURE["lip_gap"]] == pytest.approx(0.1)
    assert calibrator.process(i / FPS, turned_more).head_angles == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)


# ---- adaptive range --------------------------------------------------------------------

def test_adaptive_range_is_off_by_default():
    assert Shaper().calibrator.adaptive is None
    assert Shaper(ShapeOptions(adaptive_range=True)).calibrator.adaptive is not None


def test_adaptive_range_scales_to_the_running_max_within_bounds():
    adaptive = AdaptiveRange()
    jaw = ARKIT_INDEX["jawOpen"]
    b = np.zeros(len(ARKIT_NAMES))
    b[jaw] = 0.1
    assert adaptive(0.0, b)[jaw] == pytest.approx(0.1 / ADAPTIVE_FLOOR)   # the floor caps the gain at 2x
    b[jaw] = 0.8
    assert adaptive(0.1, b)[jaw] == pytest.approx(1.0)
    b[jaw] = 0.4
    assert adaptive(0.2, b)[jaw] == pytest.approx(0.5, abs=1e-3)
    # Many time constants later the old maximum has decayed back to the floor.
    assert adaptive(0.2 + 20 * ADAPTIVE_DECAY_SECONDS, b)[jaw] == pytest.approx(0.4 / ADAPTIVE_FLOOR)


def test_adaptive_range_maximum_stays_bounded_on_any_input():
    adaptive = AdaptiveRange()
    rng = np.random.default_rng(3)
    for i in range(200):
        b = rng.uniform(-0.5, 1.5, len(ARKIT_NAMES))
        b[rng.integers(0, len(b))] = np.nan
        out = adaptive(i / FPS, b)
        assert np.all((out >= 0.0) & (out <= 1.0))
        assert np.all((adaptive.maximum >= ADAPTIVE_FLOOR) & (adaptive.maximum <= 1.0))


def test_shaper_with_adaptive_range_recomputes_vrm():
    shaper = Shaper(ShapeOptions(adaptive_range=True))
    state, _ = shaper.update(0.0, face(jaw=0.25))
    assert state.blendshape("jawOpen") == pytest.approx(0.5)
    assert state.vrm == pytest.approx(vrm_presets(state.blendshapes, state.eye_angles), abs=1e-9)


# ---- profiles --------------------------------------------------------------------------

def sample_neutral(model=True) -> Neutral:
    m = measures(lip_gap=0.12, corner_L=-0.05, brow_inner_R=1.3, iris_x_L=-0.04)
    return neutral_of(face(yaw=10.0, pitch=-2.0, roll=5.0, position=(0.01, 0.0, -0.6), measures=m,
                           scores=scores(smile=0.3, browInnerUp=0.25) if model else None))


def test_profile_round_trip_is_readable_json_in_the_config_dir(config_home):
    neutral = sample_neutral()
    path = save_profile("alice", neutral)
    assert path == config_home / "facemocap-osc" / "profiles" / "alice.json"
    data = json.loads(path.read_text())
    assert data["version"] == 2 and "created" in data and "centimetres" in data["units"]
    assert list(data["measures"]) == list(geometry.MEASURES)
    assert data["measures"]["lip_gap"] == pytest.approx(0.12)
    assert data["model"]["mouthSmileLeft"] == pytest.approx(0.3)
    assert "tongueOut" not in data["model"]              # the model gives none
    assert "blendshapes" not in data and "eye_angles" not in data
    assert data["head_angles"]["yaw"] == pytest.approx(10.0)
    assert data["head_position"]["z"] == pytest.approx(-0.6)
    loaded = load_profile("alice")
    for field in ("measures", "model", "head_angles", "head_position"):
        assert np.array_equal(getattr(loaded, field), getattr(neutral, field)), field   # JSON keeps every digit
    assert loaded.model[TONGUE] == 0.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["alice.json"]   # no temp file left


def test_a_profile_without_model_scores_round_trips_as_none():
    save_profile("mesh", sample_neutral(model=False))
    assert json.loads(profile_path("mesh").read_text())["model"] is None
    loaded = load_profile("mesh")
    assert loaded.model is None and loaded.measures[MEASURE["brow_inner_R"]] == pytest.approx(1.3)


def test_a_version_1_profile_asks_for_a_new_capture():
    path = save_profile("old", sample_neutral())
    path.write_text(json.dumps({"format": "facemocap-osc neutral profile", "version": 1,
                                "blendshapes": dict.fromkeys(ARKIT_NAMES, 0.0)}))
    with pytest.raises(ProfileError) as error:
        load_profile("old")
    text = str(error.value)
    assert text.startswith(str(path) + ": ") and "\n" not in text
    assert "older facemocap-osc" in text and "--calibrate SECONDS --profile old" in text


def test_saving_again_replaces_atomically_and_a_failed_write_keeps_the_old_file(monkeypatch):
    save_profile("bob", sample_neutral())
    path = profile_path("bob")
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ProfileError, match="bob.json: cannot write: No space left"):
        save_profile("bob", neutral_of(face()))
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["bob.json"]


def test_config_dir_rules(monkeypatch, tmp_path, config_home):
    assert config_dir() == config_home / "facemocap-osc"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")        # invalid per the XDG spec: ignored
    assert config_dir() == tmp_path / "home" / ".config" / "facemocap-osc"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "override"))
    assert config_dir() == tmp_path / "override"


@pytest.mark.parametrize("name", ["alice", "Take_2.v1-b", "x" * 64, "a..b"])
def test_good_profile_names(name):
    assert check_profile_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "x" * 65, "naïve", "a b", "c:\\x", "a\n"])
def test_bad_profile_names_are_refused_in_one_line(name):
    with pytest.raises(ProfileError, match="invalid profile name") as error:
        profile_path(name)
    assert "\n" not in str(error.value).replace(repr(name), "")


def write_profile(name: str, edit) -> None:
    path = save_profile(name, sample_neutral())
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["measures"].pop("lip_gap"), "missing key 'measures.lip_gap'"),
    (lambda d: d["measures"].update(lip_gap="x"), "key 'measures.lip_gap' must be a number"),
    (lambda d: d["measures"].update(brow_inner_L=True), "key 'measures.brow_inner_L' must be a number"),
    (lambda d: d["measures"].update(eye_open_R=float("nan")), "key 'measures.eye_open_R' must be a number"),
    (lambda d: d["measures"].update(nose_chin=float("inf")), "key 'measures.nose_chin' must be a number"),
    (lambda d: d["measures"].update(nose_chin=None), "key 'measures.nose_chin' must be a number"),
    (lambda d: d["measures"].update(chin_x=-150), "key 'measures.chin_x' must be between -100 and 100, not -150"),
    (lambda d: d.update(measures=[0.0] * 37), "key 'measures' must be an object or null"),
    (lambda d: d.pop("measures"), "missing key 'measures'"),
    (lambda d: d["model"].pop("jawOpen"), "missing key 'model.jawOpen'"),
    (lambda d: d["model"].update(jawOpen=[0.1]), "key 'model.jawOpen' must be a number"),
    (lambda d: d["model"].update(jawOpen=-0.1), "key 'model.jawOpen' must be between 0 and 0.75"),
    (lambda d: d["model"].update(mouthSmileLeft=1.0), "key 'model.mouthSmileLeft' must be between 0 and 0.75"),
    (lambda d: d["model"].update(tongueOut=0.3), "key 'model.tongueOut' must be 0 or absent"),
    (lambda d: d["model"].update(tongueOut="0"), "key 'model.tongueOut' must be a number"),
    (lambda d: d.update(model="none"), "key 'model' must be an object or null"),
    (lambda d: d.pop("model"), "missing key 'model'"),
    (lambda d: d.update(head_angles=[1, 2, 3]), "key 'head_angles' must be an object"),
    (lambda d: d["head_angles"].update(roll=200), "key 'head_angles.roll' must be between -180 and 180"),
    (lambda d: d.pop("head_position"), "missing key 'head_position.x'"),
    (lambda d: d.update(version=99), "key 'version' is 99; this facemocap-osc reads version 2"),
    (lambda d: d.update(version="1"), "key 'version' must be a whole number"),
    (lambda d: d.update(version=2.0), "key 'version' must be a whole number"),
])
def test_bad_profile_contents_name_the_file_and_key(edit, message):
    write_profile("carol", edit)
    with pytest.raises(ProfileError) as error:
        load_profile("carol")
    text = str(error.value)
    assert text.startswith(str(profile_path("carol")) + ": ") and message in text and "\n" not in text


def test_a_zero_tongue_out_rest_is_accepted_as_written_by_hand():
    write_profile("frank", lambda d: d["model"].update(tongueOut=0))
    assert load_profile("frank").model[TONGUE] == 0.0


def test_corrupt_and_missing_profiles(config_home):
    path = save_profile("dave", sample_neutral())
    path.write_text('{"version": 2, "measures": {')
    with pytest.raises(ProfileError, match=r"dave\.json: not valid JSON"):
        load_profile("dave")
    path.write_text("[]")
    with pytest.raises(ProfileError, match=r"dave\.json: expected a JSON object"):
        load_profile("dave")
    with pytest.raises(ProfileError, match=r"no profile 'erin'.*--calibrate SECONDS --profile erin"):
        load_profile("erin")


# ---- the control port -------------------------------------------------------------------

def wait_for(predicate):
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def control():
    port = ControlPort(0)     # an ephemeral port: never the user's 39540
    yield port
    port.close()


def test_control_port_receives_calibrate_requests(control):
    client = SimpleUDPClient("127.0.0.1", control.port)
    client.send_message("/facemocap/calibrate", [])
    request = None

    def got():
        nonlocal request
        request = request or control.poll()
        return request is not None
    assert wait_for(got)
    assert request.seconds is None
    client.send_message("/facemocap/calibrate", 1.5)
    request = None
    assert wait_for(got) and request.seconds == 1.5


def test_control_port_ignores_and_counts_garbage(control):
    client = SimpleUDPClient("127.0.0.1", control.port)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    garbage = [b"", b"hello", b"\xff" * 100, b"/facemocap/calibrate\x00\x00\x00\x00,f\x00\x00\x01",
               b"#bundle\x00/facemocap/"]
    for datagram in garbage:
        raw.sendto(datagram, ("127.0.0.1", control.port))
    raw.close()
    bad_args = ["x", 0.1, 1000.0, float("nan"), [1.0, 2.0], True]
    for args in bad_args:
        client.send_message("/facemocap/calibrate", args)
    client.send_message("/VMC/Ext/Blend/Apply", [])      # someone else's address: ignored, not malformed
    client.send_message("/facemocap/calibrate", 3)        # and it still works afterwards
    request = None

    def got():
        nonlocal request
        request = request or control.poll()
        return request is not None
    assert wait_for(got) and request.seconds == 3.0
    # b"" may not even reach the server as a datagram; every other bad one is counted.
    assert wait_for(lambda: control.malformed >= len(garbage) - 1 + len(bad_args))
    assert control.poll() is None


def _control_bundle(*elements, sizes=None):
    out = b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    for i, e in enumerate(elements):
        out += struct.pack(">i", len(e) if sizes is None else sizes[i]) + e
    return out


CALIBRATE_2S = b"/facemocap/calibrate\x00\x00\x00\x00,f\x00\x00" + struct.pack(">f", 2.0)


def _dispatch(control, datagram):
    """Straight into the port's dispatcher, on a thread: python-osc looped forever on
    some of these (a hang guard, not a timing)."""
    worker = threading.Thread(target=control._server.dispatcher.call_handlers_for_packet,
                              args=(datagram, ("127.0.0.1", 9)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    return not worker.is_alive()


def test_control_port_survives_what_python_osc_did_not(control, caplog):
    nested = CALIBRATE_2S
    for _ in range(999):
        nested = _control_bundle(nested)
    datagrams = [
        _control_bundle(CALIBRATE_2S, sizes=[-4]),   # python-osc: an endless loop
        nested,                                      # python-osc: RecursionError
        # python-osc builds 5000 nested lists from the brackets; their repr in the
        # "bad arguments" log line raised RecursionError
        b"/facemocap/calibrate\x00\x00\x00\x00," + b"[" * 5000 + b"]" * 5000 + b"\x00" * 3,
        b"/facemocap/calibrate\x00\x00\x00\x00,zz\x00",  # python-osc: a warning per unknown tag
    ]
    with caplog.at_level(logging.WARNING):
        for datagram in datagrams:
            assert _dispatch(control, datagram)
    assert (control.malformed, control.too_deep, control.bad_args, control.errors) == (4, 1, 1, 0)
    assert control.poll() is None
    assert caplog.records == []
    assert _dispatch(control, _control_bundle(CALIBRATE_2S))
    assert control.poll().seconds == 2.0


def test_control_port_listens_on_this_machine_only(control):
    assert control.host == "127.0.0.1" and control.address == f"127.0.0.1:{control.port}"


def test_bad_arguments_are_described_flat_and_short():
    from bridge.control import describe_args

    deep = []
    for _ in range(5000):
        deep = [deep]
    assert describe_args((deep, b"x" * 100, "y" * 100, 1.5, None, True, 7)) == (
        "(<array of 1>, <blob of 100 bytes>, " + repr("y" * 40) + "..., 1.5, None, ... 7 in all)")


def test_control_port_in_use_is_a_one_line_error(control):
    with pytest.raises(ControlError, match="address already in use") as error:
        ControlPort(control.port)
    assert error.value.in_use and "\n" not in str(error.value)


@pytest.mark.parametrize("args,seconds", [((), None), ((2,), 2.0), ((0.5,), 0.5), ((60.0,), 60.0)])
def test_calibrate_arguments_accepted(args, seconds):
    assert parse_calibrate_args(args).seconds == seconds


@pytest.mark.parametrize("args", [("2",), (True,), (0.49,), (61.0,), (math.inf,), (1.0, 2.0), (b"x",)])
def test_calibrate_arguments_refused(args):
    assert parse_calibrate_args(args) is None


# ---- the run loop ----------------------------------------------------------------------

class ListSource:
    """Demo-face frames at 30 fps, unpaced, with the face missing where asked."""

    def __init__(self, count, missing=()):
        from bridge.demo_face import demo_landmarks
        from bridge.sources import Frame
        self.frames = [Frame(i, i / FPS, None, None if i in missing else np.asarray(demo_landmarks(0.0, 640, 480)),
                             width=640, height=480) for i in range(count)]

    def __iter__(self):
        return iter(self.frames)


class LandmarkTracker:
    def track(self, frame):
        from bridge.tracking import Tracked
        return Tracked(frame.landmarks)


class RecordingEncoder:
    """Takes the calibration state, as bridge.vmc's encoder should (see the report)."""

    def __init__(self):
        self.sent = []

    def encode(self, state, *, time, tracking, calibration_state):
        self.sent.append((state, tracking, calibration_state))
        return []


class NullTarget:
    address = "nowhere"

    def send(self, datagrams):
        pass


class FakeControl:
    address = "127.0.0.1:0"

    def __init__(self, requests):
        self.requests = dict(requests)   # frame index -> CalibrateRequest
        self.polls = 0

    def poll(self):
        request = self.requests.get(self.polls)
        self.polls += 1
        return request


def test_run_loop_reports_calibrating_then_calibrated_and_saves_once():
    from bridge.pipeline import run
    shaper, encoder, saved = Shaper(), RecordingEncoder(), []
    shaper.calibrator.start_capture(1.0)
    run(ListSource(60, missing=range(5)), LandmarkTracker(), shaper, encoder, NullTarget(),
        blendshapes="solver", on_calibrated=saved.append)
    states = [s for _, _, s in encoder.sent]
    assert states[0] == VMC_CALIBRATING and states[-1] == VMC_CALIBRATED
    first_done = states.index(VMC_CALIBRATED)
    assert all(s == VMC_CALIBRATING for s in states[:first_done])
    assert all(s == VMC_CALIBRATED for s in states[first_done:])
    assert first_done == 5 + 30        # face from frame 5, a 1 s window at 30 fps
    assert len(saved) == 1 and isinstance(saved[0], Neutral)
    # Every state came from the solver: the neutral has its measures; the landmarks came
    # without the model's scores, so there is no model rest.
    assert saved[0].measures is not None and np.isfinite(saved[0].measures).all() and saved[0].model is None
    # The demo face at rest, calibrated against itself: the output settles at rest.
    last = encoder.sent[-1][0]
    assert last.head_angles == pytest.approx([0, 0, 0], abs=0.5)


def test_run_loop_starts_a_capture_on_a_control_request():
    from bridge.control import CalibrateRequest
    from bridge.pipeline import run
    shaper, encoder = Shaper(), RecordingEncoder()
    control = FakeControl({10: CalibrateRequest(None), 20: CalibrateRequest(0.5)})
    run(ListSource(60), LandmarkTracker(), shaper, encoder, NullTarget(), blendshapes="solver",
        control=control, calibrate_seconds=2.0)
    states = [s for _, _, s in encoder.sent]
    assert states[:10] == [VMC_CALIBRATED] * 10
    # The 0.5 s request at frame 20 replaced the 2 s one: done 15 frames later.
    assert states[10:35] == [VMC_CALIBRATING] * 25 and states[35:] == [VMC_CALIBRATED] * 25


def test_run_loop_works_with_an_encoder_without_calibration_state():
    from bridge.pipeline import run
    from bridge.vmc import VmcEncoder
    shaper = Shaper()
    shaper.calibrator.start_capture(0.5)
    stats = run(ListSource(30), LandmarkTracker(), shaper, VmcEncoder(), NullTarget(), blendshapes="solver")
    assert stats.frames == 30 and shaper.calibrator.neutral is not None


# ---- the neutral in the solver ------------------------------------------------------------

# A resting face that is not the population's: a slight smile, raised brows, eyes a
# little to the side, the head turned and tilted.
HELD = dict(smile=0.5, brows_up=0.4, gaze_yaw=8.0, yaw=8.0, roll=3.0)
GEOMETRIC = ("mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "browInnerUp",
             "browOuterUpLeft", "browOuterUpRight", "eyeLookOutLeft", "eyeLookInRight", "jawOpen")


@functools.lru_cache(maxsize=None)
def _demo_face():
    from bridge.demo_face import DemoFace
    return DemoFace()


def _solved(solver, expression, t, scores=None):
    return solver.solve(_demo_face().landmarks(expression), time=t, scores=scores)


def test_a_captured_neutral_makes_the_held_face_read_zero_in_the_solver():
    from bridge.demo_face import Expression
    held = Expression(**HELD)
    # adapt=False: without the capture the face is read against the prior, as at start-up.
    solver = Solver(blendshapes="solver", adapt=False)
    before = _solved(solver, held, 0.0)
    values = [before.blendshape(n) for n in GEOMETRIC]
    assert max(values) > 0.2       # the held face reads as an expression
    calibrator = Calibrator()
    calibrator.start_capture(1.0)
    i = 0
    while calibrator.capturing:
        calibrator.process(i / FPS, _solved(solver, held, i / FPS))
        i += 1
    neutral = calibrator.take_finished()
    assert neutral.measures is not None and neutral.model is None
    solver.set_neutral(neutral)
    after = calibrator.process(i / FPS, _solved(solver, held, i / FPS))
    assert after.blendshapes == pytest.approx(np.zeros(len(ARKIT_NAMES)), abs=0.01)
    assert after.eye_angles == pytest.approx(np.zeros((2, 2)), abs=0.1)      # gaze from the iris rest
    assert after.head_angles == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)     # head from the calibrator
    assert after.vrm == pytest.approx(np.zeros(len(after.vrm)), abs=0.01)
    # The channels still move from the new rest: a bigger smile and higher brows read.
    bigger = Expression(**{**HELD, "smile": 1.0, "brows_up": 1.0})
    more = calibrator.process((i + 1) / FPS, _solved(solver, bigger, (i + 1) / FPS))
    assert more.blendshape("mouthSmileLeft") > 0.15 and more.blendshape("browInnerUp") > 0.15
    # A saved profile gives the solver the same rest.
    save_profile("held", neutral)
    solver.set_neutral(load_profile("held"))
    again = _solved(solver, held, (i + 2) / FPS)
    assert again.blendshapes == pytest.approx(np.zeros(len(ARKIT_NAMES)), abs=0.01)


def test_a_captured_model_rest_makes_the_held_scores_read_zero_when_fused():
    from bridge.demo_face import Expression
    held = Expression(**HELD)
    resting_scores = {n: 0.05 for n in ARKIT_NAMES if n != "tongueOut"}
    resting_scores.update(mouthSmileLeft=0.4, mouthSmileRight=0.4, browInnerUp=0.3)
    solver = Solver(blendshapes="fused", adapt=False)
    assert _solved(solver, held, 0.0, resting_scores).blendshape("browInnerUp") > 0.1
    calibrator = Calibrator()
    calibrator.start_capture(0.5)
    i = 0
    while calibrator.capturing:
        calibrator.process(i / FPS, _solved(solver, held, i / FPS, resting_scores))
        i += 1
    neutral = calibrator.take_finished()
    assert neutral.model[ARKIT_INDEX["browInnerUp"]] == pytest.approx(0.3)
    assert neutral.model[TONGUE] == 0.0
    solver.set_neutral(neutral)
    after = _solved(solver, held, i / FPS, resting_scores)
    assert after.blendshapes == pytest.approx(np.zeros(len(ARKIT_NAMES)), abs=0.01)
    # The rest reads 0 and a full score still reads 1: (s - rest) / (1 - rest).
    pressed = dict(resting_scores, mouthPressLeft=1.0)    # a channel the model leads alone
    assert _solved(solver, held, (i + 1) / FPS, pressed).blendshape("mouthPressLeft") == pytest.approx(1.0)


def test_a_busy_default_control_port_is_a_warning_not_an_error(control, caplog):
    from bridge.cli import CalibrationArgs, _open_control
    default = CalibrationArgs(None, None, None, control.port, control_port_given=False)
    with caplog.at_level("WARNING", logger="facemocap"):
        assert _open_control(default) is None
    assert len(caplog.records) == 1 and "already in use" in caplog.records[0].getMessage()
    given = CalibrationArgs(None, None, None, control.port, control_port_given=True)
    from bridge.cli import UsageError
    with pytest.raises(UsageError, match="already in use.*--control-port"):
        _open_control(given)


def test_preview_key_c_asks_for_a_calibration_and_keeps_the_window_open(monkeypatch):
    """The drawing runs for real; only the window calls are stubbed (no display here)."""
    import bridge.preview as preview_module
    from bridge.sources import Frame
    keys = iter([ord("c"), ord("x"), ord("q")])
    shown = []
    monkeypatch.setattr(preview_module.cv2, "imshow", lambda name, image: shown.append(image))
    monkeypatch.setattr(preview_module.cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(preview_module.cv2, "getWindowProperty", lambda name, prop: 1.0)
    preview = object.__new__(preview_module.Preview)   # skips opening a window
    preview._calibrate_requested = False
    frame = Frame(0, 0.0, None, width=320, height=240)
    note = "calibrating: hold a neutral face (1.4 s left)"
    assert preview.show(frame, None, face(smile=0.3), True, 30.0, note)
    assert preview.take_calibrate_request() and not preview.take_calibrate_request()
    assert preview.show(frame, None, face(), True, 30.0)
    assert not preview.take_calibrate_request()
    assert not preview.show(frame, None, face(), True, 30.0)       # q still quits
    assert len(shown) == 3
