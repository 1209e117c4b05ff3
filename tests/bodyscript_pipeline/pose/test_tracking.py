"""Person ids stay with the same person: synthetic landmark tracks that cross, hide and reappear."""

from __future__ import annotations

import numpy as np

from bodyscript_pipeline.pose.tracking import PersonTracker
from bodyscript_pipeline.skeleton.landmarks import NUM_LANDMARKS

WIDTH, HEIGHT = 1280, 720
_RNG = np.random.default_rng(7)
_SHAPE = _RNG.uniform(-1, 1, size=(NUM_LANDMARKS, 2)) * np.array([40, 120])  # a fixed body, pixels


def pose_at(cx: float, cy: float, noise: float = 2.0, visibility: float = 0.9) -> np.ndarray:
    """A pose (33, 3) of normalized x, y and visibility centred at pixel (cx, cy), with pixel jitter."""
    pixels = _SHAPE + np.array([cx, cy]) + _RNG.normal(0, noise, size=(NUM_LANDMARKS, 2))
    pose = np.empty((NUM_LANDMARKS, 3))
    pose[:, 0] = pixels[:, 0] / WIDTH
    pose[:, 1] = pixels[:, 1] / HEIGHT
    pose[:, 2] = visibility
    return pose


def run(tracker: PersonTracker, frames: list[list[tuple[str, np.ndarray]]]) -> dict[str, list[int]]:
    """Feed frames of (true name, pose), shuffled within each frame as the landmarker would; return each
    true person's ids over time."""
    ids: dict[str, list[int]] = {}
    for f, people in enumerate(frames):
        order = _RNG.permutation(len(people))
        shuffled = [people[i] for i in order]
        assigned = tracker.assign(f, np.array([p for _, p in shuffled]).reshape(-1, NUM_LANDMARKS, 3))
        for (name, _), pid in zip(shuffled, assigned, strict=True):
            ids.setdefault(name, []).append(pid)
    return ids


def test_two_people_crossing_keep_their_ids() -> None:
    """A walks right, B walks left; they pass through each other (full overlap) mid-way."""
    frames = []
    for f in range(120):
        a = pose_at(200 + 8 * f, 360)
        b = pose_at(1150 - 8 * f, 360)
        frames.append([("a", a), ("b", b)])
    ids = run(PersonTracker(WIDTH, HEIGHT, max_gap=15), frames)
    assert len(set(ids["a"])) == 1 and len(set(ids["b"])) == 1, ids
    assert ids["a"][0] != ids["b"][0]


def test_crossing_at_different_speeds_and_heights() -> None:
    frames = []
    for f in range(100):
        a = pose_at(100 + 11 * f, 300 + f)
        b = pose_at(1000 - 5 * f, 420 - f)
        frames.append([("a", a), ("b", b)])
    ids = run(PersonTracker(WIDTH, HEIGHT, max_gap=15), frames)
    assert len(set(ids["a"])) == 1 and len(set(ids["b"])) == 1, ids


def test_short_gap_keeps_the_id_and_a_long_gap_does_not() -> None:
    """A is hidden for 8 frames (within max_gap) while moving: same id after. Hidden for 40: a new id."""
    frames: list[list[tuple[str, np.ndarray]]] = []
    for f in range(100):
        people = [("b", pose_at(1000, 400))]
        if not (30 <= f < 38) and not (60 <= f < 100 - 10):
            people.append(("a", pose_at(150 + 4 * f, 350)))
        frames.append(people)
    ids = run(PersonTracker(WIDTH, HEIGHT, max_gap=15), frames)
    a = ids["a"]
    before_short, after_short = a[:30], a[30:52]  # frames 0-29, then 38-59
    assert set(before_short) == set(after_short) and len(set(before_short)) == 1
    assert a[-1] not in set(before_short), "after 30 hidden frames (max_gap 15) the person gets a new id"
    assert len(set(ids["b"])) == 1


def test_new_people_get_new_ids_and_ids_are_never_shared_in_a_frame() -> None:
    tracker = PersonTracker(WIDTH, HEIGHT, max_gap=5)
    first = tracker.assign(0, np.array([pose_at(200, 360), pose_at(900, 360)]))
    second = tracker.assign(1, np.array([pose_at(902, 362), pose_at(202, 358), pose_at(600, 300)]))
    assert sorted(first) == [0, 1]
    assert second[:2] == [first[1], first[0]]
    assert second[2] == 2 and tracker.next_id == 3
    crowded = tracker.assign(2, np.array([pose_at(600, 300), pose_at(600, 300), pose_at(600, 300)]))
    assert len(set(crowded)) == 3


def test_invisible_landmarks_do_not_decide_the_match() -> None:
    """Only landmarks seen in both frames count: garbage in hidden landmarks does not break the track."""
    tracker = PersonTracker(WIDTH, HEIGHT, max_gap=5)
    pose = pose_at(400, 360)
    (pid,) = tracker.assign(0, pose[None])
    moved = pose_at(404, 360)
    moved[:10, :2] = 0.99  # hidden landmarks far away
    moved[:10, 2] = 0.05
    assert tracker.assign(1, moved[None]) == [pid]
