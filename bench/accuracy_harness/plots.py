"""One PNG per clip: every output over time on the plotted channels, with the
labelled frames marked; drawn with OpenCV (no plotting library needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bridge.state import ARKIT_INDEX

PLOT_CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft")
# BGR per output key; the model is drawn first and thickest, so the others show on top.
COLORS = {"model": (190, 110, 30), "fused": (40, 40, 220), "geometric-landmarker": (0, 150, 255),
          "geometric-facemesh": (60, 170, 60)}
THICKNESS = {"model": 3, "fused": 2}
# Drawing order: the model underneath, fused on top (it often equals another output).
LAYER = {"model": 0, "fused": 2}
COLOR_GRID = (225, 225, 225)
COLOR_AXIS = (90, 90, 90)
COLOR_TEXT = (30, 30, 30)
COLOR_LABEL = (150, 150, 150)
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
LEFT, RIGHT, TOP, PANEL_H, GAP, BOTTOM = 78, 24, 76, 140, 28, 50
TITLE_Y, LEGEND_Y = 24, 52


def _nice_step(span: float, ticks: int) -> float:
    raw = max(span, 1e-9) / max(ticks, 1)
    mag = 10 ** math.floor(math.log10(raw))
    return next((m * mag for m in (1, 2, 5) if raw <= m * mag), 10 * mag)


def _segments(xs: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
    """Runs of finite points as polylines (a gap = no face)."""
    segs, cur = [], []
    for x, y in zip(xs, ys):
        if np.isfinite(y):
            cur.append((int(round(x)), int(round(y))))
        elif cur:
            segs.append(cur)
            cur = []
    if cur:
        segs.append(cur)
    return [np.array(s, np.int32).reshape(-1, 1, 2) for s in segs]


def _legend(img, entries: list[tuple[str, tuple]], width: int) -> None:
    import cv2

    x = width - RIGHT
    for label, color in reversed(entries):
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.5, 1)
        x -= tw
        cv2.putText(img, label, (x, LEGEND_Y), FONT, 0.5, COLOR_TEXT, 1, cv2.LINE_AA)
        cv2.line(img, (x - 34, LEGEND_Y - 5), (x - 6, LEGEND_Y - 5), color, 3, cv2.LINE_AA)
        x -= 34 + 24


def _panel(img, y0: int, name: str, x_px: np.ndarray, series: list, labelled: list[int], width: int) -> None:
    import cv2

    y1 = y0 + PANEL_H
    to_y = lambda v: y1 - np.asarray(v, float) * PANEL_H  # noqa: E731   (the channels run 0..1)
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        yy = int(round(float(to_y(v))))
        cv2.line(img, (LEFT, yy), (width - RIGHT, yy), COLOR_GRID, 1)
        label = f"{v:g}"
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.42, 1)
        cv2.putText(img, label, (LEFT - 9 - tw, yy + th // 2), FONT, 0.42, COLOR_TEXT, 1, cv2.LINE_AA)
    n = len(x_px)
    step = _nice_step(n, 12)
    xt = 0.0
    while xt < n:
        xx = int(round(x_px[int(xt)]))
        cv2.line(img, (xx, y1), (xx, y1 + 5), COLOR_AXIS, 1)
        label = f"{int(xt)}"
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.42, 1)
        cv2.putText(img, label, (xx - tw // 2, y1 + 8 + th), FONT, 0.42, COLOR_TEXT, 1, cv2.LINE_AA)
        xt += step
    for frame in labelled:      # the labelled frames: dashed verticals
        if frame < n:
            xx = int(round(x_px[frame]))
            for yy in range(y0, y1, 8):
                cv2.line(img, (xx, yy), (xx, min(yy + 4, y1)), COLOR_LABEL, 1)
    cv2.rectangle(img, (LEFT, y0), (width - RIGHT, y1), COLOR_AXIS, 1)
    cv2.putText(img, name, (LEFT + 6, y0 + 17), FONT, 0.52, COLOR_TEXT, 1, cv2.LINE_AA)
    for values, color, thick in series:
        ys = np.clip(to_y(values), y0, y1)
        ys[~np.isfinite(np.asarray(values, float))] = np.nan
        segs = _segments(x_px[: len(ys)], ys)
        cv2.polylines(img, [s for s in segs if len(s) > 1], False, color, thick, cv2.LINE_AA)
        for s in segs:
            if len(s) == 1:
                cv2.circle(img, tuple(int(c) for c in s[0, 0]), 1, color, -1)


def plot_clip(path: Path, title: str, outputs: list, series: dict, labelled: list[int], width: int = 1500) -> None:
    """`outputs`: [Output] in drawing order; `series`: output key -> (n, 52) shapes."""
    import cv2

    order = sorted(outputs, key=lambda o: LAYER.get(o.key, 1))
    height = TOP + len(PLOT_CHANNELS) * (PANEL_H + GAP) - GAP + BOTTOM
    img = np.full((height, width, 3), 255, np.uint8)
    n = max(len(series[o.key]) for o in outputs)
    x_px = LEFT + np.arange(n) * (width - LEFT - RIGHT - 1) / max(n - 1, 1)
    cv2.putText(img, title, (LEFT, TITLE_Y), FONT, 0.6, COLOR_TEXT, 1, cv2.LINE_AA)
    _legend(img, [(o.title, COLORS[o.key]) for o in outputs] + [("labelled frame", COLOR_LABEL)], width)
    for p, name in enumerate(PLOT_CHANNELS):
        k = ARKIT_INDEX[name]
        lines = [(series[o.key][:, k], COLORS[o.key], THICKNESS.get(o.key, 1)) for o in order]
        _panel(img, TOP + p * (PANEL_H + GAP), name, x_px, lines, labelled, width)
    cv2.putText(img, "frame", (width // 2 - 20, height - 10), FONT, 0.5, COLOR_TEXT, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")
