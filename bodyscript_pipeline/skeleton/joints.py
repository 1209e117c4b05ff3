"""Joint angle definitions: the one place that says which landmarks make each angle, and its convention.

Every angle starts from the *interior* angle at the vertex landmark B between the rays B->A and B->C,
measured in pixel space (normalized x times frame width, y times frame height) so that non-square frames
do not distort it, in degrees within [0, 180]. Each joint then maps it to the clinical zero that
Sports2D and goniometry use:

| joint    | A, B (vertex), C       | value                        | 0 means                         |
|----------|------------------------|------------------------------|---------------------------------|
| knee     | hip, knee, ankle       | flexion = 180 - interior     | leg straight                    |
| hip      | shoulder, hip, knee    | flexion = 180 - interior     | thigh in line with the trunk    |
| ankle    | knee, ankle, foot_index| dorsiflexion = 90 - interior | foot square to the shin         |
| shoulder | hip, shoulder, elbow   | elevation = interior         | upper arm along the trunk       |
| elbow    | shoulder, elbow, wrist | flexion = 180 - interior     | arm straight                    |

Negative ankle values are plantarflexion.
Angles are unsigned in the image plane (2D); they do not tell flexion from hyperextension.
Angular velocity is the time derivative in degrees per second, from true frame timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

from bodyscript_pipeline.skeleton.landmarks import LANDMARK_ID


@dataclass(frozen=True)
class Joint:
    name: str
    a: int
    vertex: int
    c: int
    offset: float
    sign: float

    def from_interior(self, interior_deg: float) -> float:
        return self.offset + self.sign * interior_deg


def _joint(name: str, a: str, b: str, c: str, offset: float, sign: float) -> list[Joint]:
    return [
        Joint(f"{side}_{name}", LANDMARK_ID[f"{side}_{a}"], LANDMARK_ID[f"{side}_{b}"], LANDMARK_ID[f"{side}_{c}"],
              offset, sign)
        for side in ("left", "right")
    ]  # fmt: skip


JOINTS: tuple[Joint, ...] = tuple(
    _joint("knee", "hip", "knee", "ankle", 180.0, -1.0)
    + _joint("hip", "shoulder", "hip", "knee", 180.0, -1.0)
    + _joint("ankle", "knee", "ankle", "foot_index", 90.0, -1.0)
    + _joint("shoulder", "hip", "shoulder", "elbow", 0.0, 1.0)
    + _joint("elbow", "shoulder", "elbow", "wrist", 180.0, -1.0)
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)


def angle_column(joint: str) -> str:
    return f"{joint}_angle_deg"


def velocity_column(joint: str) -> str:
    return f"{joint}_velocity_deg_s"
