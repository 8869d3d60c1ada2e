"""The labelled-frame targets of bench/accuracy.py, asserted through the harness itself.

Face Mesh (static) + Solver on ../shared/data/frames/*.png, scored by the harness's
own functions and thresholds (eye closed: eyeBlink >= 0.5; mouth open: jawOpen >=
0.3; smiling: max(mouthSmileLeft, mouthSmileRight) >= 0.5). Targets: eyes on every
frame (`lowered` = open), mouth on every frame, smile on >= 95 % of them.

The solver is being improved: assertions that miss today are marked
xfail(strict=False) one by one, with the reading at the time of writing, so a fix
shows up as XPASS and any other frame that breaks fails. No correlation or timing
assertions: those are benchmark output (docs/accuracy.md).
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LABELS = DATA / "frames" / "labels.csv"
NO_DATA = f"real test data not found: {LABELS} (the shared data lives in ../shared/data; see its SOURCES.md)"


def _load_harness():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


acc = _load_harness()

needs_data = pytest.mark.skipif(not LABELS.exists(), reason=NO_DATA)


def _label_files() -> list[str]:
    if not LABELS.exists():
        return ["(no data)"]   # collected, then skipped with NO_DATA
    with open(LABELS, newline="") as f:
        return [row["file"] for row in csv.DictReader(f)]


# Misses of the solver today (per category and file), with why.
# Misses of the solver on the frames as still photos, with why. In their video (how a
# live tracker sees them, and how the targets are scored) there are none: see the
# test_in_video_* tests.
KNOWN_MISSES = {
    ("eyes", "d3_f0130.png"): "lowered (downcast) eyes read as closed (blink 1.00 / 1.00): a still image has no "
                              "capture time, so the solver's lid-speed test (LidWatch) cannot call them lowered",
}
SMILE_XFAIL = ("as a still, d18_f0140.png (wide open-mouth laugh) reads mouthSmile 0.33 / 0.13 < 0.5 (Face Mesh "
               "static mode places the corners lower than tracking mode does), so 13/14 = 93 % < 95 %")


def _params(category: str):
    out = []
    for name in _label_files():
        reason = KNOWN_MISSES.get((category, name))
        marks = [pytest.mark.xfail(strict=False, reason=f"solver being improved: {reason}")] if reason else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(scope="module")
def in_video() -> dict:
    if not LABELS.exists():
        pytest.skip(NO_DATA)
    return {f.file: f for f in acc.labelled_in_video(DATA)}


@needs_data
def test_in_video_every_labelled_frame_is_scored_right(in_video):
    """The targets: eyes 100 % (lowered = open), mouth 100 %, smile >= 95 %, each frame
    seen as frame N of its clip with the clip's capture times (bench/accuracy.py (a))."""
    scores = acc.labelled_scores(list(in_video.values()))
    assert scores["eyes"].correct == scores["eyes"].total == len(in_video), scores["eyes"].misses
    assert scores["mouth"].correct == scores["mouth"].total, scores["mouth"].misses
    assert scores["smile"].fraction >= acc.TARGET_SMILE, scores["smile"].misses


@needs_data
def test_in_video_lowered_eyes_are_not_a_blink_and_closed_ones_reach_0_9(in_video):
    lowered = in_video["d3_f0130.png"].solver
    assert max(lowered["eyeBlinkLeft"], lowered["eyeBlinkRight"]) < acc.BLINK_CLOSED
    for name, f in in_video.items():
        if f.eyes == "closed":
            assert min(f.solver["eyeBlinkLeft"], f.solver["eyeBlinkRight"]) >= 0.9, name


@pytest.fixture(scope="module")
def frames() -> dict:
    if not LABELS.exists():
        pytest.skip(NO_DATA)
    return {f.file: f for f in acc.labelled_frames(DATA, with_model=False)}


@needs_data
@pytest.mark.parametrize("name", _params("eyes"))
def test_labelled_eyes(frames, name):
    f = frames[name]
    assert f.solver is not None, f"{name}: Face Mesh found no face"
    assert acc.judge(f)["eyes"], (f"{name}: labelled {f.eyes}{' ' + f.eye_side if f.eye_side else ''}, "
                                  f"solver reads {acc.predict(f.solver)['eyes']} (eyeBlinkLeft "
                                  f"{f.solver['eyeBlinkLeft']:.2f}, eyeBlinkRight {f.solver['eyeBlinkRight']:.2f})")


@needs_data
@pytest.mark.parametrize("name", _params("mouth"))
def test_labelled_mouth(frames, name):
    f = frames[name]
    assert f.solver is not None, f"{name}: Face Mesh found no face"
    ok = acc.judge(f)["mouth"]
    if ok is None:
        pytest.skip(f"{name}: mouth labelled {f.mouth}, not scored")
    assert ok, f"{name}: labelled {f.mouth}, jawOpen {f.solver['jawOpen']:.2f} (open at >= {acc.JAW_OPEN})"


@needs_data
def test_labelled_eyes_and_mouth_totals(frames):
    """The harness's own totals agree with the per-frame tests' scope: every labelled
    frame scored for the eyes (lowered counts as open), all but lips_parted for the mouth."""
    scores = acc.labelled_scores(list(frames.values()))
    assert scores["eyes"].total == len(frames)
    assert scores["mouth"].total == sum(f.mouth != "lips_parted" for f in frames.values())
    assert scores["mouth"].correct == scores["mouth"].total, scores["mouth"].misses


@needs_data
@pytest.mark.xfail(strict=False, reason=f"solver being improved: {SMILE_XFAIL}")
def test_labelled_smile_at_least_95_percent(frames):
    score = acc.labelled_scores(list(frames.values()))["smile"]
    assert score.fraction >= acc.TARGET_SMILE, f"smile {score}, missed: {', '.join(score.misses)}"


# --- the harness's own conventions (no data needed) ----------------------------------


def _frame(eyes, mouth="closed", smile=0, note="", **values):
    base = dict(eyeBlinkLeft=0.0, eyeBlinkRight=0.0, jawOpen=0.0, mouthSmileLeft=0.0, mouthSmileRight=0.0)
    base.update(values)
    return acc.LabelledFrame("x.png", eyes, mouth, smile, note, acc._eye_side(note), base)


def test_scoring_rules():
    assert acc.judge(_frame("lowered"))["eyes"]                                   # lowered = open
    assert not acc.judge(_frame("lowered", eyeBlinkLeft=0.6, eyeBlinkRight=0.6))["eyes"]
    assert acc.judge(_frame("closed", eyeBlinkLeft=0.5, eyeBlinkRight=0.5))["eyes"]   # >= threshold
    assert acc.judge(_frame("one_closed", eyeBlinkRight=0.9))["eyes"]             # either eye, unless ...
    assert not acc.judge(_frame("one_closed", note="left-eye wink", eyeBlinkRight=0.9))["eyes"]  # ... named
    assert acc.judge(_frame("one_closed", note="left-eye wink", eyeBlinkLeft=0.9))["eyes"]
    assert acc.judge(_frame("open", mouth="lips_parted"))["mouth"] is None        # not scored
    assert acc.judge(_frame("open", mouth="open", jawOpen=acc.JAW_OPEN))["mouth"]
    assert acc.judge(_frame("open", smile=1, mouthSmileRight=0.5))["smile"]
    assert not acc.judge(_frame("open", smile=0, mouthSmileLeft=0.5))["smile"]


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (20, 0, 0), (0, 15, 0), (0, 0, -10), (25, -12, 8)])
def test_model_matrix_angles_use_the_state_conventions(yaw, pitch, roll):
    from bridge.state import angles_to_quat, quat_to_matrix

    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(angles_to_quat(yaw, pitch, roll))
    m[:3, 3] = (0.0, 0.0, -40.0)          # straight ahead of the camera
    assert np.allclose(acc.model_head_angles(m), (yaw, pitch, roll), atol=1e-6)
    assert np.allclose(acc.model_head_angles_line_of_sight(m), (yaw, pitch, roll), atol=1e-6)
    # Below the optical axis and facing the lens: pitched up in camera space, frontal along the line of sight.
    m2 = np.eye(4)
    m2[:3, :3] = quat_to_matrix(angles_to_quat(0.0, 10.0, 0.0))
    m2[:3, 3] = (0.0, -40.0 * np.tan(np.radians(10.0)), -40.0)
    assert np.allclose(acc.model_head_angles(m2), (0.0, 10.0, 0.0), atol=1e-6)
    assert np.allclose(acc.model_head_angles_line_of_sight(m2), (0.0, 0.0, 0.0), atol=1e-6)


def test_stillest_window_and_lag_measure():
    head = np.cumsum(np.ones((100, 3)), axis=0)
    head[40:70] = head[40]                      # still from 40 to 69
    head[10] = np.nan                           # no face: windows over it don't count
    assert acc.stillest_window(head, 30) == 40
    lag = acc.step_lag(1.0, 20.0)
    for k50, k90 in lag.values():
        assert k50 is not None and k90 is not None and 0 <= k50 <= k90
