"""Person ids that stay with the same person across frames.

The landmarker numbers the people of each frame in no stable order. ``PersonTracker`` links each frame's
poses to tracks by their landmarks: each track predicts where its landmarks will be (last position plus its
smoothed per-frame motion times the frames elapsed), and a pose joins the track whose prediction it is
closest to, measured as the mean distance over landmarks seen in both, divided by the track's body size.
Pairs are taken best first (each track and pose at most once). A track not seen for up to ``max_gap``
frames is kept, so a person hidden for a moment gets their id back (re-identification after short gaps);
the allowed distance grows with the gap because the prediction gets less certain. Poses left unmatched
start new tracks with the next id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MATCH_DISTANCE = 0.5  # mean landmark distance in body sizes for a pose to continue a track seen last frame
GAP_DISTANCE_GROWTH = 0.1  # allowed distance grows by this much per missed frame
MAX_MATCH_DISTANCE = 1.5
MOTION_SMOOTHING = 0.5  # weight of the newest motion in the per-frame velocity estimate
SEEN_VISIBILITY = 0.3  # landmarks below this visibility are not used for matching


@dataclass
class Track:
    id: int
    points: np.ndarray  # (33, 2) pixel positions at ``last_frame``
    seen: np.ndarray  # (33,) which of those were visible
    velocity: np.ndarray  # (2,) pixels per frame
    last_frame: int
    size: float  # body size in pixels (diagonal of the visible landmarks' box)

    def predict(self, frame_index: int) -> np.ndarray:
        return self.points + self.velocity * (frame_index - self.last_frame)


class PersonTracker:
    """Assigns track ids to each frame's poses, frames given in increasing order."""

    def __init__(self, width: int, height: int, max_gap: int) -> None:
        self._scale = np.array([width, height], dtype=np.float64)
        self.max_gap = max(0, max_gap)
        self._tracks: list[Track] = []
        self.next_id = 0

    def assign(self, frame_index: int, poses: np.ndarray) -> list[int]:
        """Ids for ``poses`` (persons, 33, 3): normalized x, y and visibility, in the order given."""
        self._tracks = [t for t in self._tracks if frame_index - t.last_frame <= self.max_gap + 1]
        points = poses[:, :, :2].astype(np.float64) * self._scale
        seen = poses[:, :, 2] >= SEEN_VISIBILITY
        pairs = []
        for ti, track in enumerate(self._tracks):
            gap = frame_index - track.last_frame
            limit = min(MATCH_DISTANCE + GAP_DISTANCE_GROWTH * (gap - 1), MAX_MATCH_DISTANCE)
            predicted = track.predict(frame_index)
            for pi in range(len(poses)):
                distance = _pose_distance(predicted, track.seen, points[pi], seen[pi], track.size)
                if distance <= limit:
                    pairs.append((distance, ti, pi))
        ids: list[int | None] = [None] * len(poses)
        used_tracks: set[int] = set()
        for _, ti, pi in sorted(pairs):
            if ti in used_tracks or ids[pi] is not None:
                continue
            used_tracks.add(ti)
            ids[pi] = self._tracks[ti].id
            self._update(self._tracks[ti], frame_index, points[pi], seen[pi])
        for pi, assigned in enumerate(ids):
            if assigned is None:
                ids[pi] = self.next_id
                self._tracks.append(
                    Track(
                        self.next_id, points[pi], seen[pi], np.zeros(2), frame_index, _body_size(points[pi], seen[pi])
                    )
                )
                self.next_id += 1
        return [int(i) for i in ids if i is not None]

    def _update(self, track: Track, frame_index: int, points: np.ndarray, seen: np.ndarray) -> None:
        both = track.seen & seen
        if both.any():
            step = (points[both] - track.points[both]).mean(axis=0) / (frame_index - track.last_frame)
            track.velocity = (1 - MOTION_SMOOTHING) * track.velocity + MOTION_SMOOTHING * step
        track.points, track.seen, track.last_frame = points, seen, frame_index
        track.size = _body_size(points, seen) or track.size


def _body_size(points: np.ndarray, seen: np.ndarray) -> float:
    visible = points[seen] if seen.sum() >= 2 else points
    span = visible.max(axis=0) - visible.min(axis=0)
    return float(max(np.hypot(*span), 1.0))


def _pose_distance(a: np.ndarray, a_seen: np.ndarray, b: np.ndarray, b_seen: np.ndarray, size: float) -> float:
    both = a_seen & b_seen
    if both.sum() < 3:
        both = np.ones(len(a), dtype=bool)
    return float(np.linalg.norm(a[both] - b[both], axis=1).mean() / size)
