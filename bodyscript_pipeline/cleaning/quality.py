"""Pose quality scores of a video and of each person in it, and the thresholds that gate them.

| score             | video (``person`` null)                          | person                                   |
|-------------------|--------------------------------------------------|------------------------------------------|
| ``frames``        | frames of the video                              | frames from first to last detection      |
| ``detection_rate``| frames with anyone detected / frames             | frames detected / ``frames``             |
| ``mean_visibility``| mean visibility of every detected landmark      | the same, this person                    |
| ``jitter_px``     | RMS distance, in pixels, between raw and smoothed positions of visible landmarks (pooled) |  |
| ``filled_fraction``| filled person-frames / (detected + filled)      | frames filled / ``frames``               |

Jitter is what the low-pass filter removes: noise, plus any real motion faster than the cut-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from bodyscript_pipeline.lake.schemas import TableRow


@dataclass(frozen=True)
class QualityThresholds:
    """Below ``min_detection_rate`` or ``min_visibility`` a video's pose data is not trusted (blocking);
    above ``max_jitter_px`` or ``max_filled`` it is flagged (warning)."""

    min_detection_rate: float = 0.5
    min_visibility: float = 0.5
    max_jitter_px: float = 20.0
    max_filled: float = 0.25

    def blocking_failures(self, video: QualityScores | Mapping[str, Any]) -> list[str]:
        scores = QualityScores.of(video)
        reasons = []
        if scores.detection_rate < self.min_detection_rate:
            reasons.append(f"detection rate {scores.detection_rate:.1%} is below {self.min_detection_rate:.1%}")
        visibility = scores.mean_visibility
        if visibility is not None and visibility < self.min_visibility:
            reasons.append(f"mean visibility {visibility:.2f} is below {self.min_visibility:.2f}")
        return reasons

    def warnings(self, video: QualityScores | Mapping[str, Any]) -> list[str]:
        scores = QualityScores.of(video)
        reasons = []
        jitter = scores.jitter_px
        if jitter is not None and jitter > self.max_jitter_px:
            reasons.append(f"jitter {jitter:.1f} px is above {self.max_jitter_px:.1f} px")
        if scores.filled_fraction > self.max_filled:
            reasons.append(f"{scores.filled_fraction:.1%} of person-frames are filled, above {self.max_filled:.1%}")
        return reasons


@dataclass(frozen=True)
class QualityScores(TableRow):
    """One row of the ``quality`` table: the scores of a video (``person`` None) or of one person in it."""

    TABLE: ClassVar[str] = "quality"

    person: int | None
    frames: int
    detected_frames: int
    detection_rate: float
    mean_visibility: float | None
    jitter_px: float | None
    filled_fraction: float

    @classmethod
    def of(cls, scores: QualityScores | Mapping[str, Any]) -> QualityScores:
        """The scores themselves, or read from their dict view (``to_row()``, as the Dagster layer holds them)."""
        return scores if isinstance(scores, QualityScores) else cls.from_row(scores)


@dataclass
class _Person:
    first: int = -1
    last: int = -1
    detected: int = 0
    filled: int = 0
    visibility_sum: float = 0.0
    visibility_count: int = 0
    jitter_sq_sum: float = 0.0
    jitter_count: int = 0


@dataclass
class QualityAccumulator:
    """Scores gathered window by window, so a long video is never held whole."""

    frames: int = 0
    frames_detected: int = 0
    people: dict[int, _Person] = field(default_factory=dict)

    def add(
        self,
        person: int,
        detected_frames: np.ndarray,
        filled_frames: int,
        visibility: np.ndarray,
        jitter_px: np.ndarray,
    ) -> None:
        """One person's share of a window: the frames they were detected in, how many were filled, the
        visibility of their detected landmarks, and raw-to-smoothed distances of visible ones."""
        p = self.people.setdefault(person, _Person())
        if len(detected_frames):
            p.first = int(detected_frames.min()) if p.first < 0 else min(p.first, int(detected_frames.min()))
            p.last = max(p.last, int(detected_frames.max()))
        p.detected += len(detected_frames)
        p.filled += filled_frames
        p.visibility_sum += float(visibility.sum())
        p.visibility_count += visibility.size
        p.jitter_sq_sum += float(np.square(jitter_px).sum())
        p.jitter_count += jitter_px.size

    def scores(self) -> list[QualityScores]:
        """The video's scores, then each person's in id order."""
        rows = [self._video_scores()]
        for person, p in sorted(self.people.items()):
            span = p.last - p.first + 1 if p.detected else 0
            rows.append(
                QualityScores(
                    person=person,
                    frames=span,
                    detected_frames=p.detected,
                    detection_rate=p.detected / span if span else 0.0,
                    mean_visibility=p.visibility_sum / p.visibility_count if p.visibility_count else None,
                    jitter_px=float(np.sqrt(p.jitter_sq_sum / p.jitter_count)) if p.jitter_count else None,
                    filled_fraction=p.filled / span if span else 0.0,
                )
            )
        return rows

    def table(self) -> pa.Table:
        return QualityScores.table(self.scores())

    def _video_scores(self) -> QualityScores:
        people = self.people.values()
        vis_n = sum(p.visibility_count for p in people)
        jit_n = sum(p.jitter_count for p in people)
        person_frames = sum(p.detected + p.filled for p in people)
        return QualityScores(
            person=None,
            frames=self.frames,
            detected_frames=self.frames_detected,
            detection_rate=self.frames_detected / self.frames if self.frames else 0.0,
            mean_visibility=sum(p.visibility_sum for p in people) / vis_n if vis_n else None,
            jitter_px=float(np.sqrt(sum(p.jitter_sq_sum for p in people) / jit_n)) if jit_n else None,
            filled_fraction=sum(p.filled for p in people) / person_frames if person_frames else 0.0,
        )
