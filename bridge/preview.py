"""The optional preview window: the frame with the mesh drawn over it and live
bars for the main blendshapes. OpenCV HighGUI; Esc or q closes it, c asks for a
new neutral-face calibration (the run loop picks the request up)."""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from bridge.state import ARKIT_INDEX

WINDOW = "facemocap-osc"
BARS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight",
        "mouthFunnel", "mouthPucker", "browInnerUp", "browDownLeft", "browDownRight")
QUIT_KEYS = (27, ord("q"), ord("Q"))
CALIBRATE_KEYS = (ord("c"), ord("C"))
NOTE_COLOUR = (0, 255, 255)   # BGR yellow: the calibration prompt must stand out


class PreviewError(Exception):
    """The window cannot be shown (no display): one line for the user."""


class Preview:
    def __init__(self):
        # OpenCV's Qt backend aborts the whole process when there is no display,
        # rather than raising, so look first.
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise PreviewError("cannot open the --preview window: no display (DISPLAY is not set)")
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise PreviewError("cannot open the --preview window: no display available") from None
        self._calibrate_requested = False

    def take_calibrate_request(self) -> bool:
        """True once after the user pressed c."""
        requested, self._calibrate_requested = self._calibrate_requested, False
        return requested

    def show(self, frame, landmarks, state, tracking: bool, fps: float, note: str = "") -> bool:
        """Draw one frame; False when the user closed the window or pressed Esc / q.
        `note`: the calibration prompt / result, drawn at the top right."""
        if frame.image is not None:
            canvas = frame.image.copy()
        else:
            canvas = np.zeros((frame.height or 480, frame.width or 640, 3), np.uint8)
        if landmarks is not None:
            for x, y in np.asarray(landmarks)[:, :2].astype(int):
                cv2.circle(canvas, (int(x), int(y)), 1, (0, 255, 0), -1, cv2.LINE_AA)
        for row, name in enumerate(BARS):
            value = float(state.blendshapes[ARKIT_INDEX[name]])
            y = 18 + row * 16
            cv2.rectangle(canvas, (110, y - 10), (110 + int(120 * value), y), (0, 200, 255), -1)
            cv2.putText(canvas, name, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        if note:
            cv2.putText(canvas, note, (240, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, NOTE_COLOUR, 1, cv2.LINE_AA)
        yaw, pitch, roll = state.head_angles
        cv2.putText(canvas, f"{fps:4.1f} fps  face {'yes' if tracking else 'no'}  "
                            f"yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}  (c: calibrate)",
                    (4, canvas.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow(WINDOW, canvas)
        key = cv2.waitKey(1) & 0xFF
        if key in CALIBRATE_KEYS:
            self._calibrate_requested = True
        closed = cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
        return key not in QUIT_KEYS and not closed

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)
