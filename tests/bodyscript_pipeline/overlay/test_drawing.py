"""Skeleton drawing, on RGB and on yuv420p planes, against hand-placed landmarks."""

from __future__ import annotations

import cv2
import numpy as np

from bodyscript_pipeline.overlay.drawing import (
    SIDE_COLOURS,
    Yuv420p,
    draw_skeletons,
    draw_skeletons_yuv420p,
    person_colour,
)
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_ID, LANDMARK_NAMES, NUM_LANDMARKS, Side, side_of


def grid_person(visibility: float) -> np.ndarray:
    """One person, landmarks on a 6x6 grid of normalized positions, far enough apart that joints do not overlap."""
    i = np.arange(NUM_LANDMARKS)
    person = np.empty((1, NUM_LANDMARKS, 3))
    person[0, :, 0] = 0.1 + 0.16 * (i % 6)
    person[0, :, 1] = 0.1 + 0.16 * (i // 6)
    person[0, :, 2] = visibility
    return person


def noise_image(size: int = 200) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 100, size=(size, size, 3), dtype=np.uint8)


def test_draw_skeletons_visible_person_marks_each_landmark() -> None:
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    people = grid_person(1.0)

    result = draw_skeletons(image, people, 0.5)

    assert result is image
    for i, name in enumerate(LANDMARK_NAMES):
        x, y = round(people[0, i, 0] * 200), round(people[0, i, 1] * 200)
        assert tuple(image[y, x]) == SIDE_COLOURS[side_of(name)], name
    assert (image.sum(axis=2) > 0).mean() > 0.02


def test_draw_skeletons_invisible_person_changes_nothing() -> None:
    image = noise_image()
    before = image.copy()
    draw_skeletons(image, grid_person(0.0), 0.5)
    draw_skeletons(image, grid_person(0.49), 0.5)
    assert np.array_equal(image, before)


def test_draw_skeletons_bone_colours_by_person() -> None:
    people = np.zeros((1, NUM_LANDMARKS, 3))
    ends = {
        "left_hip": (0.2, 0.2),
        "left_knee": (0.2, 0.8),
        "right_hip": (0.8, 0.2),
        "right_knee": (0.8, 0.8),
    }
    for name, (x, y) in ends.items():
        people[0, LANDMARK_ID[name]] = (x, y, 1.0)
    image = noise_image()
    before = image.copy()

    draw_skeletons(image, people, 0.5, ids=np.array([3]))

    # Every bone of one person has that person's colour; the joints keep their side's colour.
    assert tuple(image[100, 40]) == person_colour(3)  # middle of left hip -> left knee
    assert tuple(image[100, 160]) == person_colour(3)  # middle of right hip -> right knee
    assert tuple(image[40, 100]) == person_colour(3)  # middle of left hip -> right hip
    assert tuple(image[160, 40]) == SIDE_COLOURS[Side.LEFT]  # the left knee's joint
    assert person_colour(3) != person_colour(4) and person_colour(3) == person_colour(3 + 8)
    # Far from any drawn landmark or bone the image is untouched.
    assert np.array_equal(image[:25, :], before[:25, :])
    assert np.array_equal(image[100, 60:140], before[100, 60:140])


def test_draw_skeletons_bone_needs_both_ends_visible() -> None:
    people = np.zeros((1, NUM_LANDMARKS, 3))
    people[0, LANDMARK_ID["left_hip"]] = (0.2, 0.2, 1.0)
    people[0, LANDMARK_ID["left_knee"]] = (0.2, 0.8, 0.3)
    image = noise_image()
    before = image.copy()

    draw_skeletons(image, people, 0.5)

    assert tuple(image[40, 40]) == SIDE_COLOURS[Side.LEFT]  # the visible hip's joint
    assert np.array_equal(image[60:, :], before[60:, :])  # no bone, no knee


def test_draw_skeletons_on_yuv420p_planes_matches_rgb() -> None:
    """The overlay's fast path draws on the decoder's yuv420p planes; converted to RGB it shows the same
    skeleton in the same colours as drawing on RGB (within chroma subsampling at edges)."""
    import av

    people = grid_person(1.0)
    rgb = np.full((200, 320, 3), 90, np.uint8)
    draw_skeletons(rgb, people, 0.5, ids=np.array([2]))
    planes = av.VideoFrame.from_ndarray(np.full((200, 320, 3), 90, np.uint8), format="rgb24").to_ndarray(
        format="yuv420p"
    )
    draw_skeletons_yuv420p(Yuv420p.of(planes), people, 0.5, ids=np.array([2]))
    back = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24").astype(int)
    drawn = np.abs(rgb.astype(int) - 90).sum(axis=2) > 60
    assert drawn.mean() > 0.02
    interior = drawn & np.roll(drawn, 2, 0) & np.roll(drawn, -2, 0) & np.roll(drawn, 2, 1) & np.roll(drawn, -2, 1)
    assert np.median(np.abs(back[interior] - rgb[interior].astype(int))) < 20
    near = cv2.dilate(drawn.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(back[~near] - 90).max() <= 3, "away from the skeleton the frame is untouched"
