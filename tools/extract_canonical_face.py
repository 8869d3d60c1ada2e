"""Regenerate bridge/data/canonical_face.npz from MediaPipe's Face Landmarker bundle.

The neutral face the solver and the demo face measure against is MediaPipe's own
canonical face model (Apache-2.0, 468 vertices, centimetres, subject frame: X own
left, Y up, Z towards the camera) with the Procrustes weights MediaPipe uses for
its rigid head fit. The 10 iris points (468-477) are not in the model: they are
placed where real Face Mesh output puts them on a face looking straight ahead
(between the eye corners, IRIS_REST_HEIGHT eye widths above them) with a typical
iris radius, in refine_landmarks order (centre, +X, +Y, -X, -Y).

    python tools/extract_canonical_face.py ../shared/data/models/face_landmarker.task
"""

import sys
import zipfile
from pathlib import Path

import numpy as np
from mediapipe.tasks.cc.vision.face_geometry.proto import geometry_pipeline_metadata_pb2

# Eye contours (subject's right eye, then left) whose mean is the iris centre.
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# Measured on real Face Mesh output; bridge.solve uses the same rest height.
IRIS_RADIUS_OF_EYE_WIDTH = 0.23
IRIS_REST_HEIGHT = 0.05


def main(task_path: str) -> None:
    with zipfile.ZipFile(task_path) as bundle:
        raw = bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
    meta = geometry_pipeline_metadata_pb2.GeometryPipelineMetadata()
    meta.ParseFromString(raw)
    vertices = np.array(meta.canonical_mesh.vertex_buffer, dtype=np.float64).reshape(-1, 5)[:, :3]
    points = [vertices]
    for ring, (outer, inner) in ((RIGHT_EYE_RING, (33, 133)), (LEFT_EYE_RING, (263, 362))):
        width = np.linalg.norm(vertices[outer] - vertices[inner])
        centre = (vertices[outer] + vertices[inner]) / 2.0
        centre[1] += IRIS_REST_HEIGHT * width
        centre[2] = vertices[list(ring), 2].mean()
        r = IRIS_RADIUS_OF_EYE_WIDTH * width
        offsets = np.array([[0, 0, 0], [r, 0, 0], [0, r, 0], [-r, 0, 0], [0, -r, 0]])
        points.append(centre + offsets)
    face = np.concatenate(points).astype(np.float32)
    weights = np.zeros(len(face), dtype=np.float32)
    for basis in meta.procrustes_landmark_basis:
        weights[basis.landmark_id] = basis.weight
    out = Path(__file__).resolve().parent.parent / "bridge" / "data" / "canonical_face.npz"
    np.savez_compressed(out, points=face, procrustes_weights=weights)
    print(f"wrote {out}: {face.shape[0]} points, {int((weights > 0).sum())} weighted")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/models/face_landmarker.task")
