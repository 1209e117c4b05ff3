"""Skeleton drawing: bones and joints of each person, gated by visibility and coloured by body side."""

from __future__ import annotations

import cv2
import numpy as np

from bodyscript_pipeline.pose_topology import CONNECTIONS, LANDMARK_NAMES, Side, connection_side, side_of

# RGB colours: left orange, right blue, centre white (the usual convention of pose tools).
SIDE_COLOURS: dict[Side, tuple[int, int, int]] = {
    Side.LEFT: (255, 140, 0),
    Side.RIGHT: (0, 150, 255),
    Side.CENTER: (235, 235, 235),
}
_POINT_COLOURS = [SIDE_COLOURS[side_of(name)] for name in LANDMARK_NAMES]
_BONE_COLOURS = [SIDE_COLOURS[connection_side(a, b)] for a, b in CONNECTIONS]


def draw_skeletons(image: np.ndarray, people: np.ndarray, min_visibility: float) -> np.ndarray:
    """Draw on ``image`` (RGB, modified in place) each person of ``people``: shape (persons, 33, 3) of
    normalized x, y and visibility. Landmarks below ``min_visibility`` and their bones are not drawn."""
    height, width = image.shape[:2]
    scale = max(height, width) / 720.0
    thickness = max(2, round(3 * scale))
    radius = max(3, round(4 * scale))
    for person in people:
        pixels = np.column_stack([person[:, 0] * width, person[:, 1] * height]).round().astype(np.int32)
        visible = person[:, 2] >= min_visibility
        for (a, b), colour in zip(CONNECTIONS, _BONE_COLOURS, strict=True):
            if visible[a] and visible[b]:
                cv2.line(image, tuple(pixels[a]), tuple(pixels[b]), colour, thickness, cv2.LINE_AA)
        for i in np.flatnonzero(visible):
            cv2.circle(image, tuple(pixels[i]), radius, _POINT_COLOURS[i], -1, cv2.LINE_AA)
    return image
