"""The fleet summary: one row per processed video, rebuilt from the lake's ``videos`` and ``video_metrics``."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from bodyscript_pipeline.analytics import connect
from bodyscript_pipeline.lake.parquet import write_table
from bodyscript_pipeline.lake.paths import fleet_summary_uri
from bodyscript_pipeline.lake.schemas import FLEET_SUMMARY

# The version of this step's code: raise it with any change to what the step writes. Its asset's version is
# this and the settings that determine the output (steps/versions.py).
CODE_VERSION = "1"

LOW_DETECTION_RATE = 0.8

# The select list follows the schema: each column is the video's own, except the person-0 knee ranges.
_KNEE_ROM = "max(m.range_of_motion_deg) FILTER (WHERE m.joint = '{}') AS {}_rom_deg"
_SELECT = {name: f"v.{name}" for name in FLEET_SUMMARY.names} | {
    f"{knee}_rom_deg": _KNEE_ROM.format(knee, knee) for knee in ("left_knee", "right_knee")
}
FLEET_SQL = f"""
SELECT {", ".join(_SELECT[name] for name in FLEET_SUMMARY.names)}
FROM videos AS v
LEFT JOIN video_metrics AS m ON m.video = v.video AND m.person = 0
GROUP BY ALL
ORDER BY v.video
"""  # noqa: S608 (every name comes from the schema)


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
