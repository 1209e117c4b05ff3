"""The fleet summary: one row per processed video, rebuilt from the lake's ``videos`` and ``video_metrics``."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from bodyscript_pipeline.analytics import connect
from bodyscript_pipeline.lake import fleet_summary_uri
from bodyscript_pipeline.parquet_io import write_table
from bodyscript_pipeline.schemas import FLEET_SUMMARY

LOW_DETECTION_RATE = 0.8

FLEET_SQL = """
SELECT v.video, v.source_uri, v.frame_count, v.duration_s, v.detection_rate, v.mean_visibility,
       max(m.range_of_motion_deg) FILTER (WHERE m.joint = 'left_knee') AS left_knee_rom_deg,
       max(m.range_of_motion_deg) FILTER (WHERE m.joint = 'right_knee') AS right_knee_rom_deg,
       v.pose_frames_per_s, v.processed_at_ms
FROM videos AS v
LEFT JOIN video_metrics AS m ON m.video = v.video AND m.person = 0
GROUP BY ALL
ORDER BY v.video
"""


@dataclass(frozen=True)
class FleetSummary:
    uri: str
    table: pa.Table

    @property
    def videos(self) -> int:
        return self.table.num_rows

    @property
    def frames(self) -> int:
        return int(sum(self.table["frame_count"].to_pylist()))

    @property
    def low_detection_videos(self) -> list[str]:
        rows = zip(self.table["video"].to_pylist(), self.table["detection_rate"].to_pylist(), strict=True)
        return [video for video, rate in rows if rate < LOW_DETECTION_RATE]


def build_fleet_summary(lake_uri: str) -> FleetSummary:
    table = connect(lake_uri).sql(FLEET_SQL).to_arrow_table().cast(FLEET_SUMMARY)
    uri = fleet_summary_uri(lake_uri)
    write_table("fleet_summary", uri, table)
    return FleetSummary(uri, table)
