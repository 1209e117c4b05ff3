"""Skeleton drawing: each person's bones in that person's colour, joints coloured by body side.

One geometry (:func:`_people`), two renderers: on an RGB image, and straight on a frame's yuv420p planes
(luma at full size, chroma at half), which spares the overlay two colour conversions per frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

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
_BONES = np.array(CONNECTIONS, dtype=np.intp)

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
class _Person:
    """What is drawn of one person, in pixels: bones (segments of two points) in one colour, dots in their
    side's colour, and an optional label."""

    bones: np.ndarray  # (bones, 2, 2) int32
    colour: tuple[int, int, int]
    thickness: int
    dots: tuple[tuple[tuple[int, int], tuple[int, int, int]], ...]
    radius: int
    label: tuple[str, tuple[int, int], float] | None  # text, where, font scale


def _people(
    people: np.ndarray, ids: np.ndarray | None, width: int, height: int, min_visibility: float
) -> Iterator[_Person]:
    scale = max(height, width) / 720.0
    thickness = max(2, round(3 * scale))
    radius = max(3, round(4 * scale))
    for k, person in enumerate(people):
        pid = None if ids is None else int(ids[k])
        pixels = np.column_stack([person[:, 0] * width, person[:, 1] * height]).round().astype(np.int32)
        visible = person[:, 2] >= min_visibility
        bones = _BONES[visible[_BONES[:, 0]] & visible[_BONES[:, 1]]]
        dots = tuple(((int(pixels[i, 0]), int(pixels[i, 1])), _POINT_COLOURS[i]) for i in np.flatnonzero(visible))
        label = None
        if pid is not None and visible.any():
            top = pixels[visible][np.argmin(pixels[visible][:, 1])]
            at = (int(top[0]) - radius * 2, max(int(top[1]) - radius * 3, radius * 4))
            label = (f"P{pid}", at, 0.6 * scale)
        yield _Person(pixels[bones], person_colour(pid or 0), thickness, dots, radius, label)


def _render(
    plane: np.ndarray, person: _Person, colour_of: Callable[[tuple[int, int, int]], Any], shrink: int = 1
) -> None:
    """Draw ``person`` on one plane (``shrink``: its pixels per image pixel, 2 for chroma) with each RGB colour
    as ``colour_of`` gives it for that plane. The bones go in one call: the same pixels as a line each."""
    if len(person.bones):
        cv2.polylines(
            plane, list(person.bones // shrink), False, colour_of(person.colour), max(1, person.thickness // shrink),
            cv2.LINE_AA,
        )  # fmt: skip
    radius = max(1, person.radius // shrink)
    for (x, y), colour in person.dots:
        cv2.circle(plane, (x // shrink, y // shrink), radius, colour_of(colour), -1, cv2.LINE_AA)
    if person.label is not None:
        text, (x, y), font_scale = person.label
        cv2.putText(
            plane, text, (x // shrink, y // shrink), cv2.FONT_HERSHEY_SIMPLEX, font_scale / shrink,
            colour_of(person.colour), max(1, person.thickness // shrink), cv2.LINE_AA,
        )  # fmt: skip


def draw_skeletons(
    image: np.ndarray, people: np.ndarray, min_visibility: float, ids: np.ndarray | None = None
) -> np.ndarray:
    """Draw on ``image`` (RGB, modified in place) each person of ``people``: shape (persons, 33, 3) of
    normalized x, y and visibility, with their ``ids`` as colour and label (``None``: person 0's colour and
    no label, for one person per frame). Landmarks below ``min_visibility`` and their bones are not drawn."""
    height, width = image.shape[:2]
    for person in _people(people, ids, width, height, min_visibility):
        _render(image, person, _same)
    return image


def _same(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return colour


@functools.cache
def rgb_to_yuv(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, as FFmpeg converts RGB to yuv420p by default."""
    r, g, b = colour
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return round(y), round(u), round(v)


class Yuv420p(NamedTuple):
    """A frame's yuv420p planes as arrays, drawn on in place: luma at full size, the two chroma planes at half
    (views into one frame's memory)."""

    luma: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def of(cls, planes: np.ndarray) -> Yuv420p:
        """Views of stacked planes, shape (height * 3 / 2, width) with even width and height, as PyAV's
        ``to_ndarray`` returns them."""
        height, width = planes.shape[0] * 2 // 3, planes.shape[1]
        chroma = planes[height:].reshape(2, height // 2, width // 2)
        return cls(planes[:height], chroma[0], chroma[1])


def draw_skeletons_yuv420p(
    planes: Yuv420p, people: np.ndarray, min_visibility: float, ids: np.ndarray | None = None
) -> Yuv420p:
    """:func:`draw_skeletons` on a frame's yuv420p planes, modified in place."""
    height, width = planes.luma.shape
    for person in _people(people, ids, width, height, min_visibility):
        _render(planes.luma, person, lambda colour: rgb_to_yuv(colour)[0])
        _render(planes.u, person, lambda colour: rgb_to_yuv(colour)[1], shrink=2)
        _render(planes.v, person, lambda colour: rgb_to_yuv(colour)[2], shrink=2)
    return planes
