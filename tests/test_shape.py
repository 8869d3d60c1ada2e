"""One Euro smoothing, face loss (hold, then ease to neutral) and mirroring."""

import numpy as np
import pytest

from bridge.shape import OneEuroFilter, ShapeOptions, Shaper
from bridge.state import ARKIT_INDEX, FaceState, VRM0_INDEX

FPS = 30.0


def face(jaw=0.0, blink_left=0.0, yaw=0.0) -> FaceState:
    s = FaceState.neutral()
    s.blendshapes[ARKIT_INDEX["jawOpen"]] = jaw
    s.blendshapes[ARKIT_INDEX["eyeBlinkLeft"]] = blink_left
    s.vrm[VRM0_INDEX["Blink_L"]] = blink_left
    s.head_angles[0] = yaw
    s.eye_angles[0] = [10.0, 5.0]
    return s


def test_one_euro_smooths_noise_on_a_still_signal():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(min_cutoff=1.5, beta=1.0)
    raw = 0.5 + rng.normal(scale=0.02, size=300)
    out = np.array([f(i / FPS, np.array([x]))[0] for i, x in enumerate(raw)])
    assert out[60:].std() < raw[60:].std() / 2


def test_one_euro_follows_a_fast_step_within_a_few_frames():
    f = OneEuroFilter(min_cutoff=1.5, beta=1.0)
    values = [f(i / FPS, np.array([0.0 if i < 10 else 1.0]))[0] for i in range(20)]
    assert values[9] == 0.0
    assert values[15] > 0.9


def test_one_euro_repeated_timestamp_does_not_divide_by_zero():
    f = OneEuroFilter()
    f(1.0, np.array([0.0]))
    assert np.isfinite(f(1.0, np.array([1.0]))).all()


def test_one_euro_rejects_bad_parameters():
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)


def test_face_lost_holds_then_eases_to_neutral_with_tracking_flag():
    shaper = Shaper(ShapeOptions())
    t = 0.0
    for _ in range(30):
        state, tracking = shaper.update(t, face(jaw=0.8, yaw=20.0))
        t += 1 / FPS
    assert tracking and state.blendshape("jawOpen") > 0.75
    lost_at = t
    seen = []
    while t < lost_at + 1.2:
        state, tracking = shaper.update(t, None)
        assert not tracking
        seen.append((t - lost_at, state.blendshape("jawOpen"), state.head_angles[0]))
        t += 1 / FPS
    held = [v for dt, v, _ in seen if dt < 0.28]
    assert min(held) > 0.75                      # held for ~0.3 s
    done = [(v, yaw) for dt, v, yaw in seen if dt > 0.82]
    assert all(v == 0.0 and abs(yaw) < 1e-9 for v, yaw in done)   # neutral within 0.3 + 0.5 s
    middle = [v for dt, v, _ in seen if 0.45 < dt < 0.65]
    assert all(0.0 < v < 0.8 for v in middle)   # easing, not a jump


def test_face_found_again_continues_smoothly_from_what_was_sent():
    shaper = Shaper(ShapeOptions())
    t = 0.0
    for _ in range(10):
        shaper.update(t, face(jaw=0.0))
        t += 1 / FPS
    for _ in range(40):
        shaper.update(t, None)
        t += 1 / FPS
    state, tracking = shaper.update(t, face(jaw=1.0))
    assert tracking
    assert state.blendshape("jawOpen") < 0.95   # filtered, not a raw jump


def test_no_face_at_start_sends_neutral():
    state, tracking = Shaper().update(0.0, None)
    assert not tracking
    assert np.all(state.blendshapes == 0.0)


def test_mirror_swaps_sides_and_flips_yaw():
    state, _ = Shaper(ShapeOptions(mirror=True)).update(0.0, face(blink_left=1.0, yaw=20.0))
    assert state.blendshape("eyeBlinkRight") == 1.0 and state.blendshape("eyeBlinkLeft") == 0.0
    assert state.vrm[VRM0_INDEX["Blink_R"]] == 1.0
    assert state.head_angles[0] == pytest.approx(-20.0)
    # The subject's left eye (yaw +10) becomes the avatar's right eye looking the other way.
    assert state.eye_angles[1] == pytest.approx([-10.0, 5.0])


def test_nan_in_never_comes_out():
    s = face(jaw=0.5)
    s.blendshapes[3] = np.nan
    s.head_angles[1] = np.inf
    out, _ = Shaper().update(0.0, s)
    assert np.all(np.isfinite(out.vector()))


def test_status_line_keeps_latency_samples_bounded_when_quiet():
    from bridge.pipeline import Stats, StatusLine
    status, stats = StatusLine(enabled=False), Stats()
    status._next = 0.0
    stats.latencies_ms.extend([1.0] * 1000)
    status.update(stats, True, "127.0.0.1:39539")
    assert stats.latencies_ms == []


def test_calibration_comes_before_the_filter_so_the_switch_is_smoothed():
    # The calibrator takes the head pose from its rest (the solver takes the
    # expression's measures from theirs): a resting turn of 10 degrees.
    shaper = Shaper(ShapeOptions())
    shaper.calibrator.start_capture(0.5)
    resting = face(jaw=0.3, yaw=10.0)
    t, sent = 0.0, []
    for _ in range(60):
        state, _ = shaper.update(t, resting)
        sent.append(state.head_angles[0])
        t += 1 / FPS
    done = 15   # 0.5 s window at 30 fps: frame 15 (t = 0.5) closes it and is the first calibrated one
    assert sent[done - 1] == pytest.approx(10.0)          # uncalibrated while capturing
    assert 0.0 < sent[done] < 10.0                          # filtered, not a jump to 0
    assert abs(sent[-1]) < 0.1


def test_status_line_shows_the_calibration_note_and_clears_for_log_lines():
    import io
    from bridge.pipeline import Stats, StatusLine

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    out = Terminal()
    status = StatusLine(enabled=True, stream=out)
    status._next = 0.0
    status.update(Stats(), True, "127.0.0.1:39539", "calibrating: hold a neutral face (1.4 s left)")
    assert out.getvalue().endswith("| calibrating: hold a neutral face (1.4 s left)")
    status.clear()
    assert out.getvalue().endswith("\r\x1b[2K")


def test_a_nan_value_does_not_poison_its_channel_for_the_rest_of_the_run():
    shaper = Shaper(ShapeOptions())
    t = 0.0
    for _ in range(10):
        shaper.update(t, face(jaw=0.5))
        t += 1 / FPS
    bad = face(jaw=0.5)
    bad.blendshapes[ARKIT_INDEX["jawOpen"]] = np.nan
    bad.head_angles[0] = np.inf
    state, tracking = shaper.update(t, bad)
    assert tracking and state.blendshape("jawOpen") == pytest.approx(0.5)   # held, not 0
    for _ in range(30):
        t += 1 / FPS
        state, _ = shaper.update(t, face(jaw=0.9, yaw=10.0))
    assert state.blendshape("jawOpen") > 0.85 and state.head_angles[0] > 9.0   # still follows the face


def test_a_frame_time_that_is_not_a_number_does_not_poison_the_filter():
    shaper = Shaper(ShapeOptions())
    for i in range(10):
        shaper.update(i / FPS, face(jaw=0.2))
    for t in (float("nan"), float("inf"), float("-inf")):
        state, _ = shaper.update(t, face(jaw=0.2))
        assert np.isfinite(state.vector()).all()
        state, _ = shaper.update(t, None)       # face-loss easing with such a time, too
        assert np.isfinite(state.vector()).all()
    for i in range(10, 60):
        state, _ = shaper.update(i / FPS, face(jaw=0.8))
    assert state.blendshape("jawOpen") > 0.75


def test_one_euro_keeps_the_last_value_of_a_non_finite_channel():
    f = OneEuroFilter()
    f(0.0, np.array([0.25, 0.5]))
    out = f(0.1, np.array([np.nan, 0.5]))
    assert out[0] == 0.25 and out[1] == 0.5
    assert np.array_equal(f(float("nan"), np.array([1.0, 1.0])), out)   # no time: no step
    fresh = OneEuroFilter()
    assert np.isfinite(fresh(0.0, np.array([np.inf, 1.0]))).all()
