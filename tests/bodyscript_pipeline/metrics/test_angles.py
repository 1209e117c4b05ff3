"""Joint angles, angular velocities and summaries against hand-computed geometry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bodyscript_pipeline.lake.parquet import read_table, write_table
from bodyscript_pipeline.lake.schemas import FRAME_METRICS, LANDMARKS, VIDEO_METRICS
from bodyscript_pipeline.metrics.angles import (
    DetectionCounter,
    DetectionSummary,
    JointStatistics,
    angular_velocity,
    frame_metrics,
    interior_angle_deg,
    joint_angles,
)
from bodyscript_pipeline.skeleton.joints import JOINT_NAMES, angle_column, velocity_column
from bodyscript_pipeline.skeleton.landmarks import LANDMARK_ID, LANDMARK_NAMES, NUM_LANDMARKS

Point = tuple[float, float]


def _points(*xy: Point) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64)


def spread_pose() -> np.ndarray:
    """33 distinct pixel positions on a grid, so no joint is degenerate before a test places its landmarks."""
    i = np.arange(NUM_LANDMARKS)
    return np.column_stack([10.0 + 30.0 * (i % 6), 10.0 + 30.0 * (i // 6)])


def place(pose: np.ndarray, **landmarks: Point) -> np.ndarray:
    pose = pose.copy()
    for name, xy in landmarks.items():
        pose[LANDMARK_ID[name]] = xy
    return pose


def flexed_leg(knee: Point, flexion_deg: float, length: float = 40.0) -> dict[str, Point]:
    """Pixel positions of left hip, knee and ankle with the given knee flexion (thigh straight up from the knee)."""
    theta = math.radians(flexion_deg)
    kx, ky = knee
    return {
        "left_hip": (kx, ky - length),
        "left_knee": (kx, ky),
        "left_ankle": (kx + length * math.sin(theta), ky + length * math.cos(theta)),
    }


# --- interior_angle_deg -------------------------------------------------------------------------------------


def test_interior_angle_known_triangles() -> None:
    a = _points((1, 0), (1, 0), (1, 0), (1, 1), (0, 5), (3, 4))
    vertex = _points((0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0))
    c = _points((0, 1), (-1, 0), (1, 0), (1, 0), (0, -2), (4, -3))
    angles = interior_angle_deg(a, vertex, c)
    assert angles == pytest.approx([90.0, 180.0, 0.0, 45.0, 180.0, 90.0], abs=1e-9)


def test_interior_angle_is_translation_invariant_and_symmetric() -> None:
    a, vertex, c = _points((13, 7)), _points((10, 7)), _points((10 + 3 * 0.5, 7 + 3 * math.sqrt(3) / 2))
    assert interior_angle_deg(a, vertex, c) == pytest.approx([60.0])
    assert interior_angle_deg(c, vertex, a) == pytest.approx([60.0])


def test_interior_angle_degenerate_is_nan() -> None:
    a = _points((0, 0), (1, 1), (2, 2))
    vertex = _points((0, 0), (1, 1), (0, 0))
    c = _points((1, 0), (1, 1), (1, 1))
    angles = interior_angle_deg(a, vertex, c)
    assert np.isnan(angles[0])
    assert np.isnan(angles[1])
    assert angles[2] == pytest.approx(0.0)


# --- joint_angles -------------------------------------------------------------------------------------------


def test_joint_angles_hand_computed() -> None:
    base = spread_pose()
    poses = [
        # 0: right-angle knee, right-angle hip, shoulder arm along the trunk, straight elbow, neutral ankle
        place(
            base,
            left_shoulder=(100, 0),
            left_elbow=(100, 30),
            left_wrist=(100, 60),
            left_hip=(100, 100),
            left_knee=(100, 150),
            left_ankle=(150, 150),
            left_foot_index=(150, 120),
        ),
        # 1: straight leg, thigh in line with the trunk, horizontal arm, right-angle elbow, dorsiflexed foot
        place(
            base,
            left_shoulder=(100, 0),
            left_elbow=(140, 0),
            left_wrist=(140, 40),
            left_hip=(100, 100),
            left_knee=(100, 150),
            left_ankle=(100, 200),
            left_foot_index=(130, 170),
        ),
        # 2: 45° elbow flexion, plantarflexed foot (interior 135 => -45), arm raised to 135°
        place(
            base,
            left_shoulder=(100, 0),
            left_elbow=(140, -40),
            left_wrist=(180, -40),
            left_hip=(100, 100),
            left_knee=(100, 150),
            left_ankle=(100, 200),
            left_foot_index=(130, 230),
        ),
    ]
    xy = np.stack(poses)
    visibility = np.ones((3, NUM_LANDMARKS))

    angles = joint_angles(xy, visibility, 0.5)

    assert set(angles) == set(JOINT_NAMES)
    assert angles["left_knee"] == pytest.approx([90.0, 0.0, 0.0], abs=1e-9)
    assert angles["left_hip"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert angles["left_shoulder"] == pytest.approx([0.0, 90.0, 135.0], abs=1e-9)
    assert angles["left_elbow"] == pytest.approx([0.0, 90.0, 45.0], abs=1e-9)
    assert angles["left_ankle"] == pytest.approx([0.0, 45.0, -45.0], abs=1e-9)
    for name in JOINT_NAMES:
        assert angles[name].shape == (3,)
        assert np.isfinite(angles[name]).all(), name


def test_joint_angles_hip_flexion() -> None:
    pose = place(spread_pose(), left_shoulder=(0, 0), left_hip=(0, 100), left_knee=(50, 100))
    pose = place(pose, right_shoulder=(200, 0), right_hip=(200, 100), right_knee=(200 + 30, 100 + 30))
    angles = joint_angles(pose[None], np.ones((1, NUM_LANDMARKS)), 0.5)
    assert angles["left_hip"] == pytest.approx([90.0])
    assert angles["right_hip"] == pytest.approx([45.0])


def test_joint_angles_right_side_uses_right_landmarks() -> None:
    pose = place(
        spread_pose(),
        left_hip=(0, 0),
        left_knee=(0, 50),
        left_ankle=(0, 100),
        right_hip=(100, 0),
        right_knee=(100, 50),
        right_ankle=(50, 50),
    )
    angles = joint_angles(pose[None], np.ones((1, NUM_LANDMARKS)), 0.5)
    assert angles["left_knee"] == pytest.approx([0.0], abs=1e-9)
    assert angles["right_knee"] == pytest.approx([90.0])


@pytest.mark.parametrize("landmark", ["left_hip", "left_knee", "left_ankle"])
def test_joint_angles_low_visibility_gives_nan(landmark: str) -> None:
    pose = place(spread_pose(), **flexed_leg((100, 100), 90.0))
    xy = np.stack([pose, pose])
    visibility = np.ones((2, NUM_LANDMARKS))
    visibility[1, LANDMARK_ID[landmark]] = 0.49

    angles = joint_angles(xy, visibility, 0.5)

    assert angles["left_knee"][0] == pytest.approx(90.0)
    assert np.isnan(angles["left_knee"][1])
    # Joints that do not use the hidden landmark are unaffected.
    assert np.isfinite(angles["right_knee"]).all()
    assert np.isfinite(angles["right_elbow"]).all()


def test_joint_angles_visibility_threshold_is_inclusive() -> None:
    pose = place(spread_pose(), **flexed_leg((100, 100), 30.0))
    visibility = np.full((1, NUM_LANDMARKS), 0.5)
    angles = joint_angles(pose[None], visibility, 0.5)
    assert angles["left_knee"] == pytest.approx([30.0])


# --- frame_metrics ------------------------------------------------------------------------------------------

Person = np.ndarray  # (33, 3): normalized x, y and visibility


def landmarks_table(frames: Sequence[tuple[int, int, Sequence[Person | None]]], shuffle: bool = False) -> pa.Table:
    """A ``landmarks`` table: per frame (frame_index, timestamp_ms, people), person ids by position in
    ``people`` (None: that id is absent); a frame without people gets one all-null row, as the pose step writes."""
    rows: list[dict[str, object]] = []
    for frame_index, timestamp_ms, people in frames:
        if all(landmarks is None for landmarks in people):
            rows.append({"frame_index": frame_index, "timestamp_ms": timestamp_ms})
            continue
        for person, landmarks in enumerate(people):
            if landmarks is None:
                continue
            for landmark_id, (x, y, visibility) in enumerate(landmarks):
                rows.append(
                    {
                        "frame_index": frame_index,
                        "timestamp_ms": timestamp_ms,
                        "person": person,
                        "landmark_id": landmark_id,
                        "landmark": LANDMARK_NAMES[landmark_id],
                        "x": float(x),
                        "y": float(y),
                        "z": 0.0,
                        "visibility": float(visibility),
                        "presence": float(visibility),
                        "world_x": 0.0,
                        "world_y": 0.0,
                        "world_z": 0.0,
                    }
                )
    if shuffle:
        order = np.random.default_rng(7).permutation(len(rows))
        rows = [rows[i] for i in order]
    return pa.Table.from_pylist(rows, schema=LANDMARKS)


def normalized_person(pixels: np.ndarray, width: int, height: int, visibility: float = 1.0) -> Person:
    person = np.empty((NUM_LANDMARKS, 3))
    person[:, 0] = pixels[:, 0] / width
    person[:, 1] = pixels[:, 1] / height
    person[:, 2] = visibility
    return person


def column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False).astype(np.float64)


def test_frame_metrics_angles_are_in_pixel_space() -> None:
    width, height = 200, 100
    # In pixels: knee at (100, 50), hip up-left and ankle up-right at 45°: a right angle at the knee.
    pixels = place(spread_pose(), left_hip=(60, 10), left_knee=(100, 50), left_ankle=(140, 10))
    person = normalized_person(pixels, width, height)
    person[LANDMARK_ID["right_ankle"], 2] = 0.1  # hides the right knee and right ankle angles

    # The same normalized coordinates, measured naively, make a 53.13° interior angle: flexion 126.87°.
    hip, knee, ankle = (person[LANDMARK_ID[n], None, :2] for n in ("left_hip", "left_knee", "left_ankle"))
    naive_flexion = 180.0 - float(interior_angle_deg(hip, knee, ankle)[0])
    assert naive_flexion == pytest.approx(180.0 - math.degrees(math.acos(0.6)), abs=1e-3)
    assert abs(naive_flexion - 90.0) > 30

    table = landmarks_table([(0, 0, [person]), (1, 40, [person]), (2, 80, []), (3, 120, [person])])

    metrics = frame_metrics(table, width, height, 0.5)

    assert metrics.schema.equals(FRAME_METRICS)
    assert metrics["frame_index"].to_pylist() == [0, 1, 3]  # the undetected frame has no row
    assert metrics["timestamp_ms"].to_pylist() == [0, 40, 120]
    assert metrics["person"].to_pylist() == [0, 0, 0]
    assert column(metrics, angle_column("left_knee")) == pytest.approx([90.0] * 3, abs=1e-3)
    assert metrics[angle_column("right_knee")].null_count == 3
    assert metrics[angle_column("right_ankle")].null_count == 3
    assert metrics[angle_column("left_elbow")].null_count == 0
    # Velocity: frames 0 and 1 are adjacent and still; frame 3 follows the undetected frame 2, alone.
    velocity = metrics[velocity_column("left_knee")].to_pylist()
    assert velocity[0] == pytest.approx(0.0, abs=1e-2)
    assert velocity[1] == pytest.approx(0.0, abs=1e-2)
    assert velocity[2] is None


def test_frame_metrics_two_people_shuffled_rows() -> None:
    width, height = 320, 180
    times = [0, 33, 66, 150, 170]
    frames: list[tuple[int, int, list[Person]]] = []
    for i, t in enumerate(times):
        moving = place(spread_pose(), **flexed_leg((100, 100), 10.0 + 0.05 * t))  # 50 deg/s
        still = place(spread_pose() + 5.0, **flexed_leg((200, 100), 30.0))
        frames.append((i, t, [normalized_person(moving, width, height), normalized_person(still, width, height)]))

    metrics = frame_metrics(landmarks_table(frames, shuffle=True), width, height, 0.5)

    assert metrics["frame_index"].to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert metrics["person"].to_pylist() == [0, 1] * 5
    assert metrics["timestamp_ms"].to_pylist() == [t for t in times for _ in range(2)]
    knee = column(metrics, angle_column("left_knee"))
    knee_velocity = column(metrics, velocity_column("left_knee"))
    assert knee[0::2] == pytest.approx([10.0 + 0.05 * t for t in times], abs=1e-3)
    assert knee[1::2] == pytest.approx([30.0] * 5, abs=1e-3)
    assert knee_velocity[0::2] == pytest.approx([50.0] * 5, abs=0.05)
    assert knee_velocity[1::2] == pytest.approx([0.0] * 5, abs=0.05)


def test_frame_metrics_of_more_than_255_people_round_trip(tmp_path: Path) -> None:
    """Track ids are uint16 in every table: a video with 300 tracks keeps each id through a write and a read."""
    width, height = 320, 180
    person = normalized_person(spread_pose(), width, height)
    table = landmarks_table([(0, 0, [person] * 300), (1, 40, [person] * 300)])

    metrics = frame_metrics(table, width, height, 0.5)
    uri = f"file://{tmp_path}/frame_metrics.parquet"
    write_table("frame_metrics", uri, metrics)
    stored = read_table(uri)

    assert stored.schema.remove_metadata().equals(FRAME_METRICS)
    assert stored["person"].to_pylist() == list(range(300)) * 2
    assert stored["frame_index"].to_pylist() == [0] * 300 + [1] * 300
    assert column(stored, velocity_column("left_knee")) == pytest.approx([0.0] * 600, abs=1e-3)


def test_frame_metrics_velocity_does_not_link_different_people() -> None:
    """Person 0 in frames 0-2 and person 1 in frames 3-4: adjacent frame numbers, but not one track."""
    width, height = 200, 200

    def leg(flexion: float) -> Person:
        return normalized_person(place(spread_pose(), **flexed_leg((100, 100), flexion)), width, height)

    table = landmarks_table(
        [
            (0, 0, [leg(10.0)]),
            (1, 100, [leg(20.0)]),
            (2, 200, [leg(30.0)]),
            (3, 300, [None, leg(80.0)]),
            (4, 400, [None, leg(80.0)]),
        ]
    )

    metrics = frame_metrics(table, width, height, 0.5)

    assert metrics["frame_index"].to_pylist() == [0, 1, 2, 3, 4]
    assert metrics["person"].to_pylist() == [0, 0, 0, 1, 1]
    assert column(metrics, angle_column("left_knee")) == pytest.approx([10.0, 20.0, 30.0, 80.0, 80.0], abs=1e-3)
    assert column(metrics, velocity_column("left_knee")) == pytest.approx([100.0, 100.0, 100.0, 0.0, 0.0], abs=0.1)


def test_frame_metrics_rejects_incomplete_pose() -> None:
    person = normalized_person(spread_pose(), 200, 200)
    table = landmarks_table([(0, 0, [person])]).slice(0, NUM_LANDMARKS - 1)
    with pytest.raises(ValueError, match="33 landmarks"):
        frame_metrics(table, 200, 200, 0.5)


# --- angular_velocity ---------------------------------------------------------------------------------------


def test_angular_velocity_linear_angle_over_irregular_timestamps() -> None:
    t = np.array([0, 33, 66, 150, 170, 300, 301])
    angle = 20.0 + 0.05 * t  # 50 degrees per second
    velocity = angular_velocity(np.arange(len(t)), t, angle)
    assert velocity == pytest.approx([50.0] * len(t))


def test_angular_velocity_central_and_one_sided_at_gaps() -> None:
    frame_index = np.array([0, 1, 2, 5, 6])
    t = np.array([0, 100, 200, 500, 600])
    angle = np.array([0.0, 10.0, 30.0, 40.0, 100.0])
    velocity = angular_velocity(frame_index, t, angle)
    # 0: forward (10-0)/0.1; 1: central (30-0)/0.2; 2: backward (30-10)/0.1 (not (40-10)/0.4 across the gap);
    # 3: forward (100-40)/0.1 (not (100-30)/0.4); 4: backward (100-40)/0.1.
    assert velocity == pytest.approx([100.0, 150.0, 200.0, 600.0, 600.0])


def test_angular_velocity_nan_angle_breaks_links() -> None:
    frame_index = np.arange(5)
    t = np.array([0, 50, 100, 150, 200])
    angle = np.array([0.0, 5.0, np.nan, 20.0, 30.0])
    velocity = angular_velocity(frame_index, t, angle)
    assert velocity[[0, 1, 3, 4]] == pytest.approx([100.0, 100.0, 200.0, 200.0])
    assert np.isnan(velocity[2])


def test_angular_velocity_lone_frames_are_nan() -> None:
    assert np.isnan(angular_velocity(np.array([7]), np.array([233]), np.array([42.0]))).all()
    assert angular_velocity(np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([])).shape == (0,)
    # Three frames, none adjacent to another.
    isolated = angular_velocity(np.array([0, 2, 4]), np.array([0, 66, 133]), np.array([1.0, 2.0, 3.0]))
    assert np.isnan(isolated).all()


# --- video_metrics ------------------------------------------------------------------------------------------


def frame_metrics_table(
    person: list[int], angles: dict[str, list[float | None]], velocities: dict[str, list[float | None]]
) -> pa.Table:
    n = len(person)
    data: dict[str, list[object]] = {
        "frame_index": list(range(n)),
        "timestamp_ms": [40 * i for i in range(n)],
        "person": list(person),
    }
    for name in JOINT_NAMES:
        data[angle_column(name)] = list(angles.get(name, [None] * n))
    for name in JOINT_NAMES:
        data[velocity_column(name)] = list(velocities.get(name, [None] * n))
    return pa.table(data, schema=FRAME_METRICS)


def test_video_metrics_by_hand() -> None:
    frames = frame_metrics_table(
        person=[0, 0, 0, 0, 1, 1],
        angles={
            "left_knee": [10.0, 40.0, None, 16.0, 5.0, 7.0],
            "right_elbow": [None, None, None, None, 100.0, None],
        },
        velocities={"left_knee": [300.0, -450.0, None, 10.0, None, None]},
    )

    statistics = JointStatistics()
    statistics.add(frames)
    result = statistics.table()

    assert result.schema.equals(VIDEO_METRICS)
    assert result.num_rows == 2 * len(JOINT_NAMES)
    rows = {(r["person"], r["joint"]): r for r in result.to_pylist()}
    assert rows[(0, "left_knee")] == pytest.approx(
        {
            "person": 0,
            "joint": "left_knee",
            "valid_frames": 3,
            "min_deg": 10.0,
            "max_deg": 40.0,
            "range_of_motion_deg": 30.0,
            "mean_deg": 22.0,  # (10 + 40 + 16) / 3; the median would be 16
            "max_abs_velocity_deg_s": 450.0,
        }
    )
    assert rows[(1, "left_knee")] == pytest.approx(
        {
            "person": 1,
            "joint": "left_knee",
            "valid_frames": 2,
            "min_deg": 5.0,
            "max_deg": 7.0,
            "range_of_motion_deg": 2.0,
            "mean_deg": 6.0,
            "max_abs_velocity_deg_s": None,
        }
    )
    assert rows[(1, "right_elbow")]["valid_frames"] == 1
    assert rows[(1, "right_elbow")]["range_of_motion_deg"] == pytest.approx(0.0)
    never = rows[(0, "right_elbow")]
    assert never["valid_frames"] == 0
    assert never["min_deg"] is None
    assert never["max_deg"] is None
    assert never["range_of_motion_deg"] is None
    assert never["mean_deg"] is None


# --- DetectionCounter ---------------------------------------------------------------------------------------


def counted(landmarks: pa.Table, window: int) -> DetectionSummary:
    """The summary of ``landmarks`` added to a DetectionCounter as the metrics step adds them: in windows of
    ``window`` frames, each frame in one window only."""
    counter = DetectionCounter()
    frame = landmarks["frame_index"]
    for start in range(0, pc.max(frame).as_py() + 1, window):
        counter.add(landmarks.filter(pc.and_(pc.greater_equal(frame, start), pc.less(frame, start + window))))
    return counter.summary()


@pytest.mark.parametrize("window", [1, 2, 1000])
def test_detection_summary_counts_null_rows_as_frames(window: int) -> None:
    person = normalized_person(spread_pose(), 300, 300, visibility=0.8)
    other = normalized_person(spread_pose(), 300, 300, visibility=0.2)
    table = landmarks_table([(0, 0, [person]), (1, 33, []), (2, 66, [person, other]), (3, 100, []), (4, 133, [])])

    summary = counted(table, window)

    assert summary.frames == 5
    assert summary.detected_frames == 2
    assert summary.detection_rate == pytest.approx(0.4)
    # 66 landmarks at 0.8, 33 at 0.2.
    assert summary.mean_visibility == pytest.approx((66 * 0.8 + 33 * 0.2) / 99, abs=1e-6)
    assert summary.p10_visibility == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("window", [1, 1000])
def test_detection_summary_without_detections(window: int) -> None:
    table = landmarks_table([(0, 0, []), (1, 33, []), (2, 66, [])])
    summary = counted(table, window)
    assert summary.frames == 3
    assert summary.detected_frames == 0
    assert summary.detection_rate == 0.0
    assert summary.mean_visibility is None
    assert summary.p10_visibility is None


def test_visibility_quantile_from_counts_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    values = np.round(rng.uniform(0, 1, 5000) * 16) / 16  # few distinct values, as stored
    counter = DetectionCounter()
    for chunk in np.array_split(np.arange(500), 7):  # 10 landmarks per frame, frames split over windows
        rows = [(f, v) for f in chunk for v in values[f * 10 : f * 10 + 10]]
        counter.add(
            pa.table(
                {"frame_index": [f for f, _ in rows], "person": [0] * len(rows), "visibility": [v for _, v in rows]}
            )
        )
    summary = counter.summary()
    assert summary.frames == summary.detected_frames == 500
    assert summary.p10_visibility == pytest.approx(float(np.quantile(values, 0.1)))
    assert summary.mean_visibility == pytest.approx(float(values.mean()))
