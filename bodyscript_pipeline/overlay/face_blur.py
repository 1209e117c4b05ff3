"""Face blur for what is drawn: each detected person's head region, placed from their own pose landmarks.

The region is a square around the head. Its side comes from the body, the largest of shoulder width, ear to
ear and torso length (each times a head-to-body proportion), so it holds the whole head in profile too,
where the shoulders and ears nearly meet in the image. Its centre: the visible face landmarks (nose, eyes,
ears, mouth); where none is visible, above the shoulder midpoint along the torso, in a larger box; where no
shoulder is visible either, the model's own guess of the face. Only the region is blurred (scaled down to a
few samples across and back up), so its cost does not grow with the frame: a fraction of a millisecond.
"""

from __future__ import annotations

import cv2
import numpy as np

from bodyscript_pipeline.overlay.drawing import Yuv420p

FACE = np.arange(11)  # nose, eyes (inner, centre, outer), ears, mouth corners
LEFT_EAR, RIGHT_EAR = 7, 8
SHOULDERS = np.array([11, 12])
HIPS = np.array([23, 24])

# Head box side per body measure: a head is about 0.6 shoulder widths, 1.6 ear distances and 0.45 torso
# lengths tall, and the box is about 1.6 times that, so it holds the head wherever it turns.
SIDE_PER_SHOULDER_WIDTH = 1.0
SIDE_PER_EAR_DISTANCE = 2.5
SIDE_PER_TORSO = 0.7
SIDE_PER_FACE_EXTENT = 2.0  # of the visible face landmarks' own spread
MIN_SIDE_FRACTION = 0.02  # of the frame's long side: a distant person's head still gets a box
# Without a visible face, the box is centred this far above the shoulder midpoint (along the torso), and made
# larger: a head leaning forward, as in walking or bending, lies up to a third of the torso ahead of the neck.
NECK_PER_TORSO = 0.3
NECK_PER_SHOULDER_WIDTH = 0.6
UNSEEN_FACE_SCALE = 1.7
SAMPLES_ACROSS = 3  # the blurred box keeps this many samples along each side: a face is a blur of its colours


def head_boxes(people: np.ndarray, width: int, height: int, min_visibility: float) -> np.ndarray:
    """Each person's head box in pixels, (persons, 4) of x0, y0, x1, y1 (x1, y1 exclusive), clipped to the
    frame; empty boxes where a head lies outside it. ``people``: (persons, 33, 3) of normalized x, y and
    visibility, landmarks below ``min_visibility`` not trusted."""
    boxes = np.zeros((len(people), 4), dtype=np.int64)
    floor = MIN_SIDE_FRACTION * max(width, height)
    for k, person in enumerate(people):
        centre, side = _head(person[:, :2] * (width, height), person[:, 2] >= min_visibility)
        half = max(side, floor) / 2
        x0, y0 = np.floor(centre - half)
        x1, y1 = np.ceil(centre + half)
        boxes[k] = np.clip([x0, y0, x1, y1], 0, [width, height, width, height]) if np.isfinite(centre).all() else 0
    return boxes


def _head(points: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, float]:
    """The head's centre (pixels) and box side of one person's landmark ``points``."""
    shoulders = points[SHOULDERS[visible[SHOULDERS]]]
    hips = points[HIPS[visible[HIPS]]]
    shoulder_width = _distance(*shoulders) if len(shoulders) == 2 else 0.0
    torso = _distance(shoulders.mean(axis=0), hips.mean(axis=0)) if len(shoulders) and len(hips) else 0.0
    ears = _distance(points[LEFT_EAR], points[RIGHT_EAR]) if visible[[LEFT_EAR, RIGHT_EAR]].all() else 0.0
    side = max(SIDE_PER_SHOULDER_WIDTH * shoulder_width, SIDE_PER_EAR_DISTANCE * ears, SIDE_PER_TORSO * torso)
    face = points[FACE[visible[FACE]]]
    if not len(face) and len(shoulders):
        up = shoulders.mean(axis=0) - hips.mean(axis=0) if torso > 0 else np.array([0.0, -1.0])
        neck = max(NECK_PER_TORSO * torso, NECK_PER_SHOULDER_WIDTH * shoulder_width)
        return shoulders.mean(axis=0) + up / np.linalg.norm(up) * neck, UNSEEN_FACE_SCALE * side
    if not len(face):
        face = points[FACE]  # the model's guess, where neither a face landmark nor a shoulder is visible
    low, high = face.min(axis=0), face.max(axis=0)
    return (low + high) / 2, max(side, SIDE_PER_FACE_EXTENT * float((high - low).max()))


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b)))


def blur_boxes(plane: np.ndarray, boxes: np.ndarray, shrink: int = 1) -> None:
    """Blur each box of ``boxes`` (pixels of the full-size frame; ``shrink``: this plane's subsampling, 2
    for yuv420p chroma) in ``plane``, in place: scaled down to ``SAMPLES_ACROSS`` samples per side by area
    averaging, then back up bilinearly, which leaves only a smooth gradient."""
    for x0, y0, x1, y1 in boxes // shrink:
        region = plane[y0:y1, x0:x1]
        if region.shape[0] < 2 or region.shape[1] < 2:
            continue
        across = (min(SAMPLES_ACROSS, region.shape[1]), min(SAMPLES_ACROSS, region.shape[0]))
        small = cv2.resize(region, across, interpolation=cv2.INTER_AREA)
        region[:] = cv2.resize(small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_LINEAR)


def blur_faces_yuv420p(planes: Yuv420p, people: np.ndarray, min_visibility: float) -> np.ndarray:
    """Blur every person's head box in a frame's yuv420p planes, modified in place; returns the boxes (see
    :func:`head_boxes`)."""
    height, width = planes.luma.shape
    boxes = head_boxes(people, width, height, min_visibility)
    if not len(boxes):
        return boxes
    blur_boxes(planes.luma, boxes)
    # Chroma boxes rounded outwards, so they cover the luma box's every pixel.
    outer = np.column_stack([boxes[:, :2] // 2 * 2, (boxes[:, 2:] + 1) // 2 * 2])
    blur_boxes(planes.u, outer, shrink=2)
    blur_boxes(planes.v, outer, shrink=2)
    return boxes
