"""Photos are independent: every file of --images (and of an exported image folder)
gives exactly what it gives alone, whatever else is in the folder and in whatever
order; a photo without a face is neutral with tracking 0. --sequence gives a folder
the video treatment instead. And --blendshapes: fused by default, all three modes end
to end on the landmarker."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from support import MODEL_FILE, SHARED_DATA, backend_skip, tracker_command
from test_end_to_end import frames_from, run_tracker

from bridge import cli, export, sources, tracking
from bridge.pipeline import Limits, Output, run
from bridge.shape import ShapeOptions, Shaper
from bridge.state import ARKIT_NAMES, FaceState

FRAMES, STILLS = SHARED_DATA / "frames", SHARED_DATA / "stills"
D18 = SHARED_DATA / "video" / "liveportrait_d18.mp4"
# Different people and image sizes (480x480, 720x720, 512x512, 600x800).
PHOTOS = [FRAMES / "d18_f0080.png", STILLS / "liveportrait_d8.jpg", FRAMES / "d3_f0020.png",
          STILLS / "deepface_img11.jpg"]
MISSING = [str(p) for p in PHOTOS + [D18] if not p.is_file()]
needs_data = pytest.mark.skipif(bool(MISSING or backend_skip("landmarker")),
                                reason=f"shared test data absent: {MISSING}" if MISSING else
                                (backend_skip("landmarker") or ""))
MODEL = ["--model", str(MODEL_FILE)]


def photo_folder(folder, photos, *, blank_at: int | None = None):
    """photos copied into folder as 01_..., 02_..., in this order; a face-less grey
    image at position blank_at. Returns (folder, the files in order)."""
    folder.mkdir(parents=True)
    files = []
    for i, photo in enumerate(photos):
        if i == blank_at:
            files.append(folder / f"{len(files) + 1:02d}_blank.png")
            cv2.imwrite(str(files[-1]), np.full((300, 400, 3), 128, np.uint8))
        files.append(folder / f"{len(files) + 1:02d}_{photo.name}")
        shutil.copy(photo, files[-1])
    return folder, files


class Keep:
    """An encoder that keeps every frame's shaped state (float64) and tracking flag."""
    wants_landmarks = False

    def __init__(self):
        self.frames = []

    def encode(self, state, *, time, tracking, calibration_state):
        self.frames.append((state.vector().copy(), bool(tracking)))
        return []


class Nowhere:
    address = "nowhere"
    sent_datagrams = failed_datagrams = 0

    def send(self, datagrams):
        pass


def run_images(pattern, *, sequence=False, blendshapes="fused", neutral=None, mirror=False):
    """The live run's stages on --images: what goes out per file, unquantised."""
    source = sources.open_images(str(pattern), fps=30.0, sequence=sequence)
    tracker = tracking.open_tracker(tracking.Choice("landmarker", MODEL_FILE), static=source.static)
    shaper = Shaper(ShapeOptions(still=source.static, mirror=mirror))
    if neutral is not None:   # a --profile
        shaper.calibrator.neutral = neutral
    keep = Keep()
    try:
        run(source, tracker, shaper, outputs=[Output(keep, Nowhere())], blendshapes=blendshapes)
    finally:
        tracker.close()
        source.close()
    return keep.frames


@needs_data
def test_a_photo_folder_gives_each_file_exactly_what_it_gives_alone(tmp_path):
    folder, files = photo_folder(tmp_path / "photos", PHOTOS, blank_at=2)
    together = run_images(folder)
    alone = [run_images(f) for f in files]
    assert len(together) == len(files) == 5
    for name, got, (only,) in zip(files, together, alone):
        assert got[1] == only[1] and np.array_equal(got[0], only[0]), name.name
    blank = together[2]
    assert blank[1] is False and np.array_equal(blank[0], FaceState.neutral().vector())
    assert all(found for i, (_, found) in enumerate(together) if i != 2)
    # No hold of the face before the blank one, no easing after it: the photos differ.
    assert not np.array_equal(together[1][0], together[3][0])


def captured_neutral():
    """A neutral captured as a --calibrate run captures one (from the demo face)."""
    shaper = Shaper()
    shaper.calibrator.start_capture(0.5)
    run(sources.open_demo(fps=30.0, paced=False), tracking.Tracker(), shaper, outputs=[Output(Keep(), Nowhere())],
        limits=Limits(frames=45))
    assert shaper.calibrator.neutral is not None
    return shaper.calibrator.neutral


@needs_data
def test_with_a_profile_and_mirror_each_photo_is_still_its_own(tmp_path):
    neutral = captured_neutral()
    folder, files = photo_folder(tmp_path / "photos", PHOTOS[:3], blank_at=1)
    together = run_images(folder, neutral=neutral, mirror=True)
    for got, f in zip(together, files):
        (only,) = run_images(f, neutral=neutral, mirror=True)
        assert got[1] == only[1] and np.array_equal(got[0], only[0]), f.name
    assert not np.array_equal(together[0][0], run_images(files[0], mirror=True)[0][0])   # the profile applies


@needs_data
def test_the_order_of_the_files_changes_no_files_result(tmp_path):
    forward = run_images(photo_folder(tmp_path / "a", PHOTOS, blank_at=1)[0])
    backward = run_images(photo_folder(tmp_path / "b", PHOTOS[::-1], blank_at=3)[0])
    # forward: p0 blank p1 p2 p3; backward: p3 p2 p1 blank p0
    for i, j in ((0, 4), (1, 3), (2, 2), (3, 1), (4, 0)):
        assert forward[i][1] == backward[j][1] and np.array_equal(forward[i][0], backward[j][0]), (i, j)


def export_json(inputs, out, *extra):
    model = [] if "facemesh" in extra else MODEL
    assert export.main([*map(str, inputs), "-o", str(out), "--format", "json", "--quiet", *model, *extra]) == 0
    return json.loads(out.read_text())


def values(record: dict) -> dict:
    """A JSON export's frame without its number and time (they depend on the position)."""
    return {k: v for k, v in record.items() if k not in ("frame", "time")}


@needs_data
def test_export_of_a_photo_folder_and_glob_match_each_file_alone(tmp_path):
    folder, files = photo_folder(tmp_path / "photos", PHOTOS, blank_at=2)
    doc = export_json([folder], tmp_path / "all.json")
    globbed = export_json([folder / "*.*"], tmp_path / "glob.json")
    assert doc["frameCount"] == 5 and doc["faceCount"] == 4 and doc["blendshapes"] == "fused"
    assert globbed["frames"] == doc["frames"]
    for record, f in zip(doc["frames"], files):
        (only,) = export_json([f], tmp_path / f"{f.stem}.json")["frames"]
        assert values(record) == values(only), f.name
    assert not doc["frames"][2]["found"] and set(doc["frames"][2]["blendshapes"].values()) == {0.0}


def decoded_frames(folder, count: int):
    """The first `count` frames of d18 as lossless PNGs: the video's own pixels."""
    folder.mkdir()
    cap = cv2.VideoCapture(str(D18))
    for i in range(count):
        ok, image = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"d18_{i:04d}.png"), image)
    cap.release()
    return folder


@needs_data
def test_sequence_is_the_video_treatment_and_photos_are_not(tmp_path):
    folder = decoded_frames(tmp_path / "d18", 40)
    video = export_json([D18], tmp_path / "video.json")
    sequence = export_json([folder], tmp_path / "sequence.json", "--sequence", "--fps", "30")
    photos = export_json([folder], tmp_path / "photos.json")
    assert len(sequence["frames"]) == len(photos["frames"]) == 40
    # The frames of one video, as a video: its rows exactly (tracking mode, filter, lid history).
    assert sequence["frames"] == video["frames"][:40]
    # As photos the rows are unsmoothed, so they differ; each is its own photo's result.
    jaw = lambda doc: np.array([f["blendshapes"]["jawOpen"] for f in doc["frames"]])   # noqa: E731
    assert not np.allclose(jaw(sequence), jaw(photos), atol=1e-3)
    assert np.abs(np.diff(jaw(photos))).sum() > np.abs(np.diff(jaw(sequence))).sum()
    (only,) = export_json([folder / "d18_0030.png"], tmp_path / "one.json")["frames"]
    assert values(photos["frames"][30]) == values(only)


@needs_data
def test_the_live_run_streams_each_photo_as_it_streams_alone(tmp_path):
    folder, files = photo_folder(tmp_path / "photos", PHOTOS[:3], blank_at=1)
    proc, datagrams = run_tracker("--images", str(folder), *MODEL)
    assert proc.returncode == 0, proc.stderr
    together = frames_from(datagrams)
    assert [f["ok"][3] for f in together] == [1, 0, 1, 1]
    for got, f in zip(together, files):
        proc, datagrams = run_tracker("--images", str(f), *MODEL)
        (only,) = frames_from(datagrams)
        assert (got["ok"], got["blend"], got["bones"]) == (only["ok"], only["blend"], only["bones"]), f.name


@pytest.mark.parametrize("args, expected", [
    (["--demo", "--sequence"], "--sequence is for --images"),
    (["--video", str(D18), "--sequence"], "--sequence is for --images"),
    (["--images", str(FRAMES), "--calibrate", "2"], "--calibrate needs a sequence of frames"),
    (["--images", str(FRAMES), "--adaptive-range"], "--adaptive-range needs a sequence of frames"),
    (["--images", str(FRAMES), "--control-port", "39999"], "--control-port needs a sequence of frames"),
    (["--demo", "--blendshapes", "model"], "--demo gives landmarks, not images: it takes no --blendshapes model"),
])
def test_options_photos_cannot_take_are_one_line_and_exit_2(args, expected, capsys):
    assert cli.main([*args, "--quiet"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("facemocap-osc: error: ") and expected in lines[0], lines


@needs_data
def test_export_sequence_of_a_video_or_take_is_one_line_and_exit_2(tmp_path, capsys):
    folder, _ = photo_folder(tmp_path / "photos", PHOTOS[:1])
    assert export.main([str(folder), str(D18), "-o", str(tmp_path / "out"), "--format", "csv",
                        "--sequence", *MODEL]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"facemocap-osc export: error: --sequence is for image folders or globs (one video's "
                     f"frames); '{D18}' is a video"]
    assert not (tmp_path / "out").exists()


@needs_data
def test_the_sequence_flag_with_images_runs_as_a_video(tmp_path):
    folder = decoded_frames(tmp_path / "d18", 10)
    source = sources.open_images(str(folder), sequence=True)
    assert source.static is False
    source.close()
    proc, datagrams = run_tracker("--images", str(folder), "--sequence", "--fps", "25", *MODEL)
    assert proc.returncode == 0, proc.stderr
    frames = frames_from(datagrams)
    assert [f["t"] for f in frames] == pytest.approx([i / 25 for i in range(10)])


def test_a_still_shaper_passes_each_state_through_and_carries_nothing_over():
    jaw = ARKIT_NAMES.index("jawOpen")
    a, b = FaceState.neutral(), FaceState.neutral()
    a.blendshapes[jaw], a.head_angles = 0.9, np.array([20.0, -5.0, 3.0])
    b.blendshapes[jaw], b.head_angles = 0.1, np.array([-10.0, 0.0, 0.0])
    b.blendshapes[0] = np.nan   # filled from neutral, never from the photo before
    shaper = Shaper(ShapeOptions(still=True))
    first, found_a = shaper.update(0.0, a)
    blank, found_blank = shaper.update(1 / 30, None)
    second, found_b = shaper.update(2 / 30, b)
    assert (found_a, found_blank, found_b) == (True, False, True)
    assert np.array_equal(first.vector(), a.sanitized().vector())
    assert np.array_equal(blank.vector(), FaceState.neutral().vector())   # no hold of the face before
    expected = b.vector()
    expected[0] = 0.0
    assert np.array_equal(second.vector(), FaceState.from_vector(expected).sanitized().vector())
    # The same state in the filtered shaper comes out smoothed towards the one before.
    smoothed = Shaper()
    smoothed.update(0.0, a)
    assert smoothed.update(1 / 30, b)[0].blendshapes[jaw] > 0.1
    with pytest.raises(ValueError, match="adaptive range needs a sequence"):
        Shaper(ShapeOptions(still=True, adaptive_range=True))


def test_a_recalibration_request_during_photos_is_ignored_with_a_line(caplog):
    class Control:
        address = "127.0.0.1:39540"
        asked = False

        def poll(self):
            if self.asked:
                return None
            self.asked = True
            return type("Request", (), {"seconds": 1.0})()

    shaper = Shaper(ShapeOptions(still=True))
    keep = Keep()
    with caplog.at_level("INFO", logger="facemocap"):
        run(sources.open_demo(paced=False), tracking.Tracker(), shaper, outputs=[Output(keep, Nowhere())],
            control=Control(), limits=Limits(frames=3))
    assert not shaper.calibrator.capturing and shaper.calibrator.vmc_state == 3
    assert [r.message for r in caplog.records if "ignored" in r.message] == [
        "recalibration asked by the control port 127.0.0.1:39540 ignored: photos are each their own, "
        "there is no neutral face to capture from them"]
    assert len(keep.frames) == 3 and all(found for _, found in keep.frames)


# --------------------------------------------------------------------------- --blendshapes


def test_blendshapes_default_is_fused_live_and_in_export():
    assert cli.build_parser().parse_args([]).blendshapes == "fused"
    assert export.build_parser().parse_args(["x.mp4", "-o", "x.csv", "--format", "csv"]).blendshapes == "fused"


@needs_data
def test_each_blendshapes_mode_runs_end_to_end_on_the_landmarker(tmp_path):
    folder, files = photo_folder(tmp_path / "photos", PHOTOS[:2])
    docs = {mode: export_json([folder], tmp_path / f"{mode}.json", "--blendshapes", mode)
            for mode in ("fused", "solver", "model")}
    assert export_json([folder], tmp_path / "default.json")["frames"] == docs["fused"]["frames"]
    for mode, doc in docs.items():
        assert (doc["backend"], doc["blendshapes"], doc["faceCount"]) == ("landmarker", mode, 2)
    # model: MediaPipe's own scores, as the landmarker gives them for that photo.
    with tracking.open_tracker(tracking.Choice("landmarker", MODEL_FILE), static=True) as tracker, \
            sources.open_images(str(files[0])) as source:
        scores = tracker.track(next(iter(source))).blendshapes
    model = docs["model"]["frames"][0]["blendshapes"]
    for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight", "browInnerUp"):
        assert model[name] == pytest.approx(scores[name], abs=1e-6), name
    # solver: geometry only, not the model's scores.
    solver = docs["solver"]["frames"][0]["blendshapes"]
    assert any(abs(solver[n] - scores[n]) > 0.05 for n in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight"))
    # The live run takes the three modes too (and says nothing about them on the landmarker).
    for mode in ("fused", "solver", "model"):
        proc, datagrams = run_tracker("--images", str(files[0]), "--blendshapes", mode, *MODEL,
                                      "--preset", "vmc-perfect-sync")
        assert proc.returncode == 0 and "Face Mesh" not in proc.stderr, proc.stderr
        (frame,) = frames_from(datagrams)
        if mode == "model":
            assert frame["blend"]["JawOpen"] == pytest.approx(scores["jawOpen"], abs=1e-6)


@needs_data
@pytest.mark.skipif(bool(backend_skip("facemesh")), reason=backend_skip("facemesh") or "")
def test_fused_on_face_mesh_is_the_solver_said_once(tmp_path):
    folder, _ = photo_folder(tmp_path / "photos", PHOTOS[:2])
    proc, _ = run_tracker("--images", str(folder), "--backend", "facemesh")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "has no blendshape scores" in line]
    assert len(said) == 1 and "--blendshapes fused" in said[0]
    fused = export_json([folder], tmp_path / "fused.json", "--backend", "facemesh")
    solver = export_json([folder], tmp_path / "solver.json", "--backend", "facemesh", "--blendshapes", "solver")
    assert fused["blendshapes"] == solver["blendshapes"] == "solver" and fused["frames"] == solver["frames"]
