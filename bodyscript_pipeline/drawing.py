"""Skeleton drawing: each person's bones in that person's colour, joints coloured by body side."""

from __future__ import annotations

import cv2
import numpy as np

from bodyscript_pipeline.pose_topology import CONNECTIONS, LANDMARK_NAMES, Side, side_of

# RGB colours of joints: left orange, right blue, centre white (the usual convention of pose tools).
SIDE_COLOURS: dict[Side, tuple[int, int, int]] = {
    Side.LEFT: (255, 140, 0),
    Side.RIGHT: (0, 150, 255),
    Side.CENTER: (235, 235, 235),
}
_POINT_COLOURS = [SIDE_COLOURS[side_of(name)] for name in LANDMARK_NAMES]


# RGB colours of people's bones, far from the joints' orange and blue and from each other.
PERSON_COLOURS: tuple[tuple[int, int, int], ...] = (
    (44, 190, 44),
    (220, 30, 60),
    (160, 90, 230),
    (250, 220, 30),
    (20, 210, 210),
    (240, 110, 200),
    (140, 86, 45),
    (150, 150, 150),
)


def person_colour(person: int) -> tuple[int, int, int]:
    """The RGB colour of a person id, the same in the overlay and the angle plots."""
    return PERSON_COLOURS[person % len(PERSON_COLOURS)]


def draw_skeletons(
    image: np.ndarray, people: np.ndarray, min_visibility: float, ids: np.ndarray | None = None
) -> np.ndarray:
    """Draw on ``image`` (RGB, modified in place) each person of ``people``: shape (persons, 33, 3) of
    normalized x, y and visibility, with their ``ids`` (default 0, 1, ...) as colour and label. Landmarks
    below ``min_visibility`` and their bones are not drawn."""
    height, width = image.shape[:2]
    scale = max(height, width) / 720.0
    thickness = max(2, round(3 * scale))
    radius = max(3, round(4 * scale))
    ids = np.arange(len(people)) if ids is None else ids
    for person, pid in zip(people, ids, strict=True):
        colour = person_colour(int(pid))
        pixels = np.column_stack([person[:, 0] * width, person[:, 1] * height]).round().astype(np.int32)
        visible = person[:, 2] >= min_visibility
        for a, b in CONNECTIONS:
            if visible[a] and visible[b]:
                cv2.line(image, tuple(pixels[a]), tuple(pixels[b]), colour, thickness, cv2.LINE_AA)
        for i in np.flatnonzero(visible):
            cv2.circle(image, tuple(pixels[i]), radius, _POINT_COLOURS[i], -1, cv2.LINE_AA)
        if visible.any():
            top = pixels[visible][np.argmin(pixels[visible][:, 1])]
            label = (int(top[0]) - radius * 2, max(int(top[1]) - radius * 3, radius * 4))
            cv2.putText(
                image, f"P{int(pid)}", label, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, thickness, cv2.LINE_AA
            )
    return image
