"""Render `FaceSpec` faces with Blender (bpy as a module), Cycles on the CPU, headless.

One scene is built once per process (`Renderer`): the ICT mesh built straight from the
OBJ's polygons (so vertex order = shapes.npz order; the OBJ importer may drop or reorder
vertices), painted with a per-vertex colour attribute, a three-point light rig, a mid-grey
world, the "Standard" view transform and a webcam-like camera. Each spec only rewrites the
vertex positions (``foreach_set``) and renders.

Output, in a cache folder: ``<hash>.png`` and ``<hash>.json`` (the spec, the render
settings, the renderer version, seconds taken). The hash covers the spec's geometry, the
settings and `RENDERER_VERSION`; a spec already rendered is skipped.

Painting (all per vertex, from the neutral mesh, so the paint moves with the shapes):
* skin everywhere on the face and head; lips inside the 68-landmark outer lip contour
  (48-59); brows a band under the brow landmarks (17-26); eye sockets pink; mouth socket
  dark; gums; teeth off-white.
* eyeballs: white, with a brown iris (22 deg about the eye's axis, darker limbus ring) and a
  black pupil (8 deg) painted on the sclera shell, which covers ICT's own iris mesh. The
  eye's axis = centre -> cornea apex.
* lid margins: the face vertices within LASH_RADIUS of the eyeball centre, dark on the
  upper lid (stands in for the lashes), a little darker on the lower one.
* lashes, eye occlusion, eye blend and lacrimal fluid layers are left out (their polygons
  are not built; their vertices stay, unused): without transparency textures they render
  as thick black/grey films.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

from bench.truth.faces import (ARKIT_NAMES, DATA_DIR, EYEBALL, RANGES, FaceSpec, build_vertices, load_obj_faces,
                               load_shapes, spec_hash)

RENDERER_VERSION = "truth-render-4"
DEFAULT_CACHE = Path(__file__).resolve().parent / "cache"

HIDDEN_GROUPS = ("M_EyeLashes", "M_EyeOcclusion", "M_EyeBlend", "M_LacrimalFluid")

# linear RGB
SKIN = (0.60, 0.36, 0.27)
LIPS = (0.42, 0.13, 0.12)
BROW = (0.045, 0.028, 0.02)
EYE_SOCKET = (0.50, 0.22, 0.20)
MOUTH = (0.10, 0.02, 0.02)
GUMS = (0.45, 0.12, 0.12)
TEETH = (0.75, 0.72, 0.62)
SCLERA = (0.78, 0.75, 0.72)
IRIS = (0.16, 0.08, 0.035)
LIMBUS = (0.05, 0.03, 0.02)
PUPIL = (0.005, 0.005, 0.005)
LASH = (0.03, 0.02, 0.015)
LOWER_LID = (0.30, 0.16, 0.13)
LASH_RADIUS = 1.65          # cm from the eyeball centre: the lid margin

IRIS_DEG, LIMBUS_DEG, PUPIL_DEG = 30.0, 26.0, 11.0


@dataclass(frozen=True)
class RenderSettings:
    size: int = 384
    samples: int = 16
    denoise: bool = True
    threads: int = 2
    # 60 deg = bridge.solve.geometry.CAMERA_FOV_DEGREES, the webcam the solver assumes (with
    # 30 deg the gaze read ~3 deg lower); at 0.25 m the face (chin-hairline) is ~45 % of the height
    camera_distance: float = 0.25     # m from the tip of the nose
    fov_deg: float = 60.0             # vertical = horizontal (square image)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- painting (numpy)

def _inside_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), bool)
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi = poly[i]
        xj, yj = poly[j]
        cross = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi + 1e-12) + xi)
        inside ^= cross
        j = i
    return inside


def _polyline_distance(pts: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D distance of pts to a polyline, and the position along it (0..1)."""
    best = np.full(len(pts), np.inf)
    along = np.zeros(len(pts))
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    total = lengths.sum()
    start = 0.0
    for k in range(len(line) - 1):
        a, b = line[k], line[k + 1]
        ab = b - a
        t = np.clip(((pts - a) @ ab) / (ab @ ab), 0, 1)
        d = np.linalg.norm(pts - (a + t[:, None] * ab), axis=1)
        better = d < best
        best[better] = d[better]
        along[better] = (start + t[better] * lengths[k]) / total
        start += lengths[k]
    return best, along


def vertex_colours(data_dir=None) -> np.ndarray:
    """(V, 3) linear RGB per vertex."""
    s = load_shapes(data_dir)
    v = s.neutral
    lm_idx = json.load(open(Path(data_dir or DATA_DIR) / "vertex_indices.json"))["idx_to_landmark_verts"]
    lm = v[np.array(lm_idx)]
    col = np.tile(np.array(SKIN), (len(v), 1))

    def rng(name):
        a, b = RANGES[name]
        return slice(a, b)

    col[rng("eye_socket_left")] = EYE_SOCKET
    col[rng("eye_socket_right")] = EYE_SOCKET
    col[rng("mouth_socket")] = MOUTH
    col[rng("gums_tongue")] = GUMS
    col[rng("teeth")] = TEETH

    face = np.arange(*RANGES["face"])
    fv = v[face]
    # lips: inside the outer lip contour, on the front of the face
    lip_poly = lm[48:60, :2]
    front = fv[:, 2] > lm[48:60, 2].min() - 1.5
    lips = _inside_polygon(fv[:, :2], lip_poly) & front
    col[face[lips]] = LIPS
    # brows: a band under the brow landmark line, thinner towards the tails
    for brow in (lm[17:22], lm[22:27]):
        line = brow[:, :2] - np.array([0.0, 0.3])
        d, along = _polyline_distance(fv[:, :2], line)
        # 'along' runs outer->inner for 17-21 and inner->outer for 22-26: make it outer->inner
        if abs(brow[0, 0]) < abs(brow[-1, 0]):
            along = 1 - along
        half = 0.22 + 0.23 * along                        # cm: outer tail 0.22, inner head 0.45
        near = (d < half) & (np.abs(fv[:, 2] - np.interp(fv[:, 0], *np.sort(brow[:, [0, 2]], axis=0).T)) < 1.5)
        near &= fv[:, 2] > brow[:, 2].min() - 2.0
        col[face[near]] = BROW

    # lash lines: the lashes are not rendered, so darken the lid margins (the face vertices
    # touching the eyeball): the upper one dark like lashes, the lower one a little
    for side, centre in s.eyeball_centres.items():
        d = fv - centre
        r = np.linalg.norm(d, axis=1)
        ang = np.degrees(np.arccos(np.clip(d[:, 2] / r, -1, 1)))
        margin = (r < LASH_RADIUS) & (ang < 60)
        col[face[margin & (d[:, 1] > -0.2)]] = LASH
        col[face[margin & (d[:, 1] <= -0.2)]] = LOWER_LID

    # eyes: paint the sclera shell about the eye's axis; ICT's iris mesh lies under it
    for side, (lo, hi) in EYEBALL.items():
        centre = s.eyeball_centres[side]
        ball = v[lo:hi] - centre
        sclera = ball[:770]
        axis = sclera[np.argmax(np.linalg.norm(sclera, axis=1))]
        axis = axis / np.linalg.norm(axis)
        ang = np.degrees(np.arccos(np.clip((ball @ axis) / np.linalg.norm(ball, axis=1), -1, 1)))
        c = np.tile(np.array(SCLERA), (hi - lo, 1))
        c[ang < IRIS_DEG] = LIMBUS
        c[ang < LIMBUS_DEG] = IRIS
        c[ang < PUPIL_DEG] = PUPIL
        c[770:] = IRIS                                    # the hidden iris mesh
        col[lo:hi] = c
    return col


# --------------------------------------------------------------------------- the scene (bpy)

class Renderer:
    """One Blender scene; ``render(spec, out_dir)`` -> (png path, seconds or None if cached)."""

    def __init__(self, settings: RenderSettings | None = None, data_dir=None):
        import bpy  # noqa: F401  (imported here so faces.py & co. work without bpy)
        self.bpy = bpy
        self.settings = settings or RenderSettings()
        self.data_dir = data_dir
        self.shapes = load_shapes(data_dir)
        self._build_scene()

    # -- setup
    def _material(self, name, roughness, specular=0.5, coat=0.0):
        bpy = self.bpy
        m = bpy.data.materials.new(name)
        m.use_nodes = True
        nt = m.node_tree
        bsdf = nt.nodes.get("Principled BSDF")
        attr = nt.nodes.new("ShaderNodeAttribute")
        attr.attribute_name = "Col"
        nt.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
        bsdf.inputs["Roughness"].default_value = roughness
        if "Specular IOR Level" in bsdf.inputs:
            bsdf.inputs["Specular IOR Level"].default_value = specular
        if coat and "Coat Weight" in bsdf.inputs:
            bsdf.inputs["Coat Weight"].default_value = coat
            bsdf.inputs["Coat Roughness"].default_value = 0.05
        return m

    def _build_scene(self):
        bpy = self.bpy
        st = self.settings
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene

        # mesh straight from the OBJ's polygons
        faces = [(g, f) for g, f in load_obj_faces(self.data_dir) if g not in HIDDEN_GROUPS]
        groups = {"M_Face": "skin", "M_BackHead": "skin", "M_GumsTongue": "mouth",
                  "M_Teeth": "teeth", "M_ScleraLeft": "eye", "M_IrisLeft": "eye",
                  "M_ScleraRight": "eye", "M_IrisRight": "eye"}
        mats = {"skin": self._material("skin", 0.5, 0.4),
                "mouth": self._material("mouth", 0.4, 0.5),
                "teeth": self._material("teeth", 0.3, 0.5),
                "eye": self._material("eye", 0.08, 0.5, coat=0.0)}
        order = list(mats)
        mesh = bpy.data.meshes.new("ict_head")
        v0 = self.shapes.neutral
        mesh.from_pydata(v0.tolist(), [], [f for _, f in faces])
        for m in order:
            mesh.materials.append(mats[m])
        mesh.polygons.foreach_set("material_index", [order.index(groups[g]) for g, _ in faces])
        mesh.polygons.foreach_set("use_smooth", [True] * len(faces))
        col = np.c_[vertex_colours(self.data_dir), np.ones(len(v0))].astype(np.float32)
        ca = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
        ca.data.foreach_set("color", col.ravel())
        mesh.update()
        obj = bpy.data.objects.new("head", mesh)
        obj.scale = (0.01, 0.01, 0.01)        # ICT cm -> Blender m; the ICT frame is kept (+y up)
        scene.collection.objects.link(obj)
        self.mesh = mesh

        # camera on the +z axis looking along -z (identity rotation), at nose-tip + distance
        nose_z = v0[:, 2].max() * 0.01
        cam_data = bpy.data.cameras.new("cam")
        cam_data.sensor_fit = "VERTICAL"
        cam_data.angle = math.radians(st.fov_deg)
        cam_data.clip_start, cam_data.clip_end = 0.05, 20.0
        cam = bpy.data.objects.new("cam", cam_data)
        cam.location = (0.0, 0.015, nose_z + st.camera_distance)
        scene.collection.objects.link(cam)
        scene.camera = cam

        # three-point lights (ICT frame: +x = subject's left = image right)
        target = np.array([0.0, 0.02, 0.05])

        def light(name, kind, energy, loc, size=None):
            ld = bpy.data.lights.new(name, kind)
            ld.energy = energy
            if size is not None:
                ld.size = size
            lo = bpy.data.objects.new(name, ld)
            lo.location = loc
            d = target - np.array(loc)
            # point the light's -Z at the target
            from mathutils import Vector
            lo.rotation_euler = Vector(d.tolist()).to_track_quat("-Z", "Y").to_euler()
            scene.collection.objects.link(lo)

        light("key", "AREA", 22.0, (-0.55, 0.40, 0.80), size=0.6)
        light("fill", "AREA", 8.0, (0.70, 0.05, 0.75), size=0.8)
        light("rim", "AREA", 20.0, (0.25, 0.60, -0.60), size=0.5)

        world = bpy.data.worlds.new("grey")
        world.use_nodes = True
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (0.18, 0.18, 0.18, 1.0)
        bg.inputs["Strength"].default_value = 1.0
        scene.world = world

        r = scene.render
        r.engine = "CYCLES"
        r.resolution_x = r.resolution_y = st.size
        r.resolution_percentage = 100
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        r.threads_mode = "FIXED"
        r.threads = st.threads
        r.use_persistent_data = True
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        c = scene.cycles
        c.device = "CPU"
        c.samples = st.samples
        c.use_adaptive_sampling = True
        c.use_denoising = st.denoise
        if st.denoise:
            try:
                c.denoiser = "OPENIMAGEDENOISE"
            except TypeError:
                pass
        c.max_bounces = 4
        c.diffuse_bounces = 2
        c.glossy_bounces = 2
        c.transmission_bounces = 0
        c.transparent_max_bounces = 2
        c.caustics_reflective = c.caustics_refractive = False
        c.seed = 0
        self.scene = scene

    # -- per spec
    def settings_dict(self) -> dict:
        d = self.settings.to_dict()
        d["blender"] = self.bpy.app.version_string
        d.pop("threads")                     # does not change the image
        return d

    def hash(self, spec: FaceSpec) -> str:
        return spec_hash(spec, self.settings_dict(), RENDERER_VERSION)

    def set_face(self, spec: FaceSpec) -> None:
        v = build_vertices(spec, self.shapes).astype(np.float32)
        self.mesh.vertices.foreach_set("co", v.ravel())
        self.mesh.update()

    def render(self, spec: FaceSpec, out_dir: str | os.PathLike = DEFAULT_CACHE, force: bool = False):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        h = self.hash(spec)
        png, meta = out / f"{h}.png", out / f"{h}.json"
        if png.is_file() and meta.is_file() and not force:
            return png, None
        t0 = time.perf_counter()
        self.set_face(spec)
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=out)
        os.close(fd)
        self.scene.render.filepath = tmp
        self.bpy.ops.render.render(write_still=True)
        os.replace(tmp, png)
        seconds = time.perf_counter() - t0
        doc = {"hash": h, "spec": spec.to_dict(), "arkit": dict(zip(ARKIT_NAMES, spec.arkit_vector().tolist())),
               "effective_weights": spec.effective_weights(),
            "settings": self.settings_dict(), "renderer": RENDERER_VERSION,
            "seconds": round(seconds, 2), "image": png.name}
        meta.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return png, seconds
