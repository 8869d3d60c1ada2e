"""The per-person neutral (bridge.solve.neutral) and how the solver uses it."""

import numpy as np
import pytest

from bridge.demo_face import DemoFace, Expression
from bridge.solve import Solver, fusion, geometry
from bridge.solve.neutral import PRIOR_SAMPLES, SAMPLE_SECONDS, WINDOW_SECONDS, RestEstimator
from bridge.state import ARKIT_INDEX, ARKIT_NAMES

FACE = DemoFace()


def estimator(prior=0.0, quantile=0.5, low=-10.0, high=10.0, size=1):
    return RestEstimator(np.full(size, prior), quantile, low, high)


def feed(est, values, fps=30.0, start=0.0):
    t = start
    for v in values:
        est.update(t, np.atleast_1d(v))
        t += 1.0 / fps
    return t


def test_before_any_sample_the_rest_is_the_prior_within_its_bounds():
    assert estimator(prior=0.3).rest[0] == 0.3
    assert estimator(prior=0.3, high=0.2).rest[0] == 0.2


def test_the_estimate_takes_over_from_the_prior_as_samples_come():
    est = estimator(prior=0.0)
    feed(est, [1.0] * 15)            # 0.5 s at 30 fps: a sample every 0.1 s or so
    n = est.samples
    assert 4 <= n <= 5 and est.rest[0] == pytest.approx(n / (n + PRIOR_SAMPLES))
    assert not est.settled
    feed(est, [1.0] * 300, start=0.5)    # 10.5 s in all: 95 %
    assert est.rest[0] > 0.95 and est.settled


def test_a_blink_a_sentence_or_a_laugh_does_not_move_the_rest():
    est = estimator(quantile=0.2)
    expression = ([0.0] * 50 + [1.0] * 10) * 10    # open 1/6 of the time
    feed(est, expression)
    assert est.rest[0] == pytest.approx(0.0, abs=0.02)


def test_a_long_smile_becomes_the_rest_only_after_filling_most_of_the_window():
    est = estimator(quantile=0.35)
    t = feed(est, [0.0] * int(20 * 30))                 # 20 s neutral
    t = feed(est, [1.0] * int(20 * 30), start=t)        # then a 20 s smile
    assert est.rest[0] < 0.05                           # less than 65 % of the last minute
    feed(est, [1.0] * int(30 * 30), start=t)            # 50 s of smile in the last 60
    assert est.rest[0] > 0.95


def test_the_window_forgets_a_person_after_a_minute():
    est = estimator()
    t = feed(est, [5.0] * int(WINDOW_SECONDS * 30))
    feed(est, [-1.0] * int(WINDOW_SECONDS * 30 + 60), start=t)
    assert est.rest[0] == pytest.approx(-1.0, abs=0.05)


def test_time_going_backwards_starts_afresh():
    est = estimator(prior=0.0)
    feed(est, [1.0] * 300)
    feed(est, [0.0] * 3, start=0.0)      # the video looped
    assert est.samples == 1 and est.rest[0] == pytest.approx(0.0)


def test_a_sample_of_nan_leaves_that_measure_out():
    est = estimator(prior=0.5, size=2)
    t = 0.0
    for _ in range(100):
        est.update(t, np.array([1.0, np.nan]))
        t += SAMPLE_SECONDS
    assert est.rest[0] > 0.9 and est.rest[1] == 0.5


def test_the_estimate_stays_within_its_bounds():
    est = estimator(prior=0.3, low=0.15, high=0.45)
    feed(est, [0.0] * 300)
    assert est.rest[0] == 0.15


def test_shut_eyes_are_never_sampled_as_the_open_eyes_rest():
    m = list(geometry.PRIOR_VECTOR)
    m[geometry.M["eye_open_L"]] = 0.02
    sample = geometry.rest_sample(m)
    assert np.isnan(sample[geometry.M["eye_open_L"]]) and np.isfinite(sample[geometry.M["eye_open_R"]])


def smiling_face(smile=0.0, brows=0.0):
    return FACE.landmarks(Expression(smile=smile, brows_up=brows))


def test_a_person_whose_rest_face_smiles_reads_neutral_once_settled():
    """The automatic neutral: a resting half smile reads as a smile at first and 0 after a few
    seconds; a bigger smile still reads."""
    solver = Solver(blendshapes="solver")
    first = solver.solve(smiling_face(0.5, 0.4), time=0.0)
    assert max(first.blendshapes) > 0.3      # against the population's rest: not neutral
    t = 0.0
    for _ in range(150):                     # 5 s of the same face
        t += 1 / 30
        state = solver.solve(smiling_face(0.5, 0.4), time=t)
    assert max(state.blendshapes) <= 0.15, dict(zip(ARKIT_NAMES, np.round(state.blendshapes, 2)))
    bigger = solver.solve(smiling_face(1.0, 0.4), time=t + 1 / 30)
    assert bigger.blendshape("mouthSmileLeft") > 0.15   # the smile beyond the rest still reads


def test_photos_are_read_against_the_prior_and_keep_no_state():
    """adapt=False and no capture times: the same photo gives the same values, whatever came before."""
    face = smiling_face(0.5, 0.4)
    alone = Solver(blendshapes="solver", adapt=False).solve(face).blendshapes
    solver = Solver(blendshapes="solver", adapt=False)
    for other in (smiling_face(1.0), smiling_face(0.0, 1.0), face):
        last = solver.solve(other).blendshapes
    assert np.array_equal(last, alone)


def test_an_explicit_neutral_replaces_the_estimate():
    from bridge.calibrate import Neutral

    solver = Solver(blendshapes="solver")
    rest = Solver(blendshapes="solver").solve(smiling_face(0.5, 0.4)).measures
    solver.set_neutral(Neutral(rest, None, np.zeros(3), np.zeros(3)))
    state = solver.solve(smiling_face(0.5, 0.4), time=0.0)
    assert max(state.blendshapes) < 0.02
    solver.set_neutral(None)     # back to the estimate
    assert solver.rests()[0] is solver.geometry_rest.rest


# --- fusion ---------------------------------------------------------------------------


def scores(**values):
    return {n: values.get(n, 0.0) for n in ARKIT_NAMES if n != "tongueOut"}


def test_fusion_weights_are_documented_per_channel_and_cover_every_channel():
    assert fusion.MODEL_WEIGHT.shape == (len(ARKIT_NAMES),)
    assert set(np.unique(fusion.MODEL_WEIGHT)) <= {0.0, 0.5, 1.0}
    for name in ("eyeBlinkLeft", "eyeWideRight", "cheekPuff", "noseSneerLeft", "jawLeft", "jawForward", "tongueOut",
                 "browDownLeft"):
        assert fusion.MODEL_WEIGHT[ARKIT_INDEX[name]] == 0.0, name
    for name in ("mouthPucker", "mouthPressLeft", "mouthRollUpper"):
        assert fusion.MODEL_WEIGHT[ARKIT_INDEX[name]] == 1.0, name


def test_fused_geometry_led_channels_ignore_the_model_and_model_led_ones_follow_it():
    face = FACE.landmarks(Expression())
    geo = Solver(blendshapes="solver", adapt=False).solve(face).blendshapes
    fused = Solver(blendshapes="fused", adapt=False).solve(
        face, scores=scores(eyeBlinkLeft=0.9, mouthPucker=0.8, jawOpen=0.6)).blendshapes
    assert fused[ARKIT_INDEX["eyeBlinkLeft"]] == geo[ARKIT_INDEX["eyeBlinkLeft"]]
    assert fused[ARKIT_INDEX["mouthPucker"]] == pytest.approx(0.8)
    assert fused[ARKIT_INDEX["jawOpen"]] == pytest.approx(0.5 * 0.6 + 0.5 * geo[ARKIT_INDEX["jawOpen"]])


def test_fused_without_scores_is_the_geometric_path():
    face = FACE.landmarks(Expression(jaw=0.5))
    geo = Solver(blendshapes="solver").solve(face, time=0.0).blendshapes
    fused = Solver(blendshapes="fused").solve(face, time=0.0).blendshapes
    assert np.array_equal(geo, fused)


def test_a_score_that_is_not_a_number_keeps_the_geometric_value():
    face = FACE.landmarks(Expression())
    geo = Solver(blendshapes="solver", adapt=False).solve(face).blendshapes
    bad = scores(mouthPucker=float("nan"), browDownLeft="x", jawOpen=float("inf"))
    fused = Solver(blendshapes="fused", adapt=False).solve(face, scores=bad).blendshapes
    for name in ("mouthPucker", "browDownLeft", "jawOpen"):
        assert fused[ARKIT_INDEX[name]] == geo[ARKIT_INDEX[name]], name


def test_the_models_rest_is_this_persons():
    """A person whose resting smile the model reads as 0.4 reads 0 once settled; 1 stays 1."""
    solver = Solver(blendshapes="fused")
    face = FACE.landmarks(Expression())
    t = 0.0
    for _ in range(600):          # 20 s: the estimate at 97 %
        state = solver.solve(face, time=t, scores=scores(mouthPressLeft=0.3))
        t += 1 / 30
    assert state.blendshape("mouthPressLeft") < 0.02
    assert solver.solve(face, time=t, scores=scores(mouthPressLeft=1.0)).blendshape("mouthPressLeft") == \
        pytest.approx(1.0)


def test_model_mode_gives_the_models_scores_as_they_are():
    face = FACE.landmarks(Expression())
    state = Solver(blendshapes="model").solve(face, time=0.0, scores=scores(mouthSmileLeft=0.33, eyeBlinkLeft=0.7))
    assert state.blendshape("mouthSmileLeft") == pytest.approx(0.33)
    assert state.blendshape("eyeBlinkLeft") == pytest.approx(0.7)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="blendshapes must be one of"):
        Solver(blendshapes="both")
