"""Skeleton drawing: each person's bones in that person's colour, joints coloured by body side.

One geometry (:func:`_shapes`), two renderers: on an RGB image, and straight on a frame's yuv420p planes
(luma at full size, chroma at half), which spares the overlay two colour conversions per frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from bodyscript_pipeline.skeleton.landmarks import CONNECTIONS, LANDMARK_NAMES, Side, side_of

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


@dataclass(frozen=True)
class _Shape:
    kind: str  # "line", "dot" or "text"
    points: tuple[tuple[int, int], ...]
    colour: tuple[int, int, int]
    size: int  # line thickness, dot radius, or text thickness
    text: str = ""
    scale: float = 0.0


def _shapes(
    people: np.ndarray, ids: np.ndarray | None, width: int, height: int, min_visibility: float
) -> Iterator[_Shape]:
    scale = max(height, width) / 720.0
    thickness = max(2, round(3 * scale))
    radius = max(3, round(4 * scale))
    for k, person in enumerate(people):
        pid = None if ids is None else int(ids[k])
        colour = person_colour(pid or 0)
        pixels = np.column_stack([person[:, 0] * width, person[:, 1] * height]).round().astype(np.int32)
        visible = person[:, 2] >= min_visibility
        for a, b in CONNECTIONS:
            if visible[a] and visible[b]:
                yield _Shape("line", (tuple(pixels[a]), tuple(pixels[b])), colour, thickness)
        for i in np.flatnonzero(visible):
            yield _Shape("dot", (tuple(pixels[i]),), _POINT_COLOURS[i], radius)
        if pid is not None and visible.any():
            top = pixels[visible][np.argmin(pixels[visible][:, 1])]
            at = (int(top[0]) - radius * 2, max(int(top[1]) - radius * 3, radius * 4))
            yield _Shape("text", (at,), colour, thickness, f"P{pid}", 0.6 * scale)


def _draw(plane: np.ndarray, shape: _Shape, colour: tuple[int, ...] | int, shrink: int = 1) -> None:
    points = [(x // shrink, y // shrink) for x, y in shape.points]
    size = max(1, shape.size // shrink)
    if shape.kind == "line":
        cv2.line(plane, points[0], points[1], colour, size, cv2.LINE_AA)
    elif shape.kind == "dot":
        cv2.circle(plane, points[0], size, colour, -1, cv2.LINE_AA)
    else:
        cv2.putText(
            plane, shape.text, points[0], cv2.FONT_HERSHEY_SIMPLEX, shape.scale / shrink, colour, size, cv2.LINE_AA
        )


def draw_skeletons(
    image: np.ndarray, people: np.ndarray, min_visibility: float, ids: np.ndarray | None = None
) -> np.ndarray:
    """Draw on ``image`` (RGB, modified in place) each person of ``people``: shape (persons, 33, 3) of
    normalized x, y and visibility, with their ``ids`` as colour and label (``None``: person 0's colour and
    no label, for one person per frame). Landmarks below ``min_visibility`` and their bones are not drawn."""
    height, width = image.shape[:2]
    for shape in _shapes(people, ids, width, height, min_visibility):
        _draw(image, shape, shape.colour)
    return image


def rgb_to_yuv(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, as FFmpeg converts RGB to yuv420p by default."""
    r, g, b = colour
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return round(y), round(u), round(v)


def draw_skeletons_yuv420p(
    planes: np.ndarray, people: np.ndarray, min_visibility: float, ids: np.ndarray | None = None
) -> np.ndarray:
    """:func:`draw_skeletons` on a frame's yuv420p planes, shape (height * 3 / 2, width) with even width and
    height (as PyAV returns them), modified in place."""
    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    luma = planes[:height]
    chroma = planes[height:].reshape(2, height // 2, width // 2)
    for shape in _shapes(people, ids, width, height, min_visibility):
        y, u, v = rgb_to_yuv(shape.colour)
        _draw(luma, shape, y)
        _draw(chroma[0], shape, u, shrink=2)
        _draw(chroma[1], shape, v, shrink=2)
    return planes
