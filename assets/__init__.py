"""The per-video asset graph: ``source_video`` -> ``frames`` -> ``landmarks`` -> ``overlays``, and
``landmarks`` -> ``clean_landmarks`` (quality checks) -> ``metrics`` -> ``exports``, computed in two steps
(``pose`` and ``derived``; under Kubernetes the graph of assets/pose_ranges.py); ``fleet_summary`` and
``lake_compaction`` span every video.

One module per asset or step: source_video.py, video_specs.py (the per-video specs and checks), pose.py,
derived.py, pose_ranges.py, fleet_summary.py; and what they share: partitions.py, jobs.py, pods.py (where each
step's pod runs), runs.py (what every step does around its work), metadata.py (what the UI shows).

Specs, keys, step names, partitions and the job do not depend on settings and are module constants. The
assets definitions carry their pods' settings in their op tags, so they are built from the ``Settings`` they
are given (``*_asset(settings)``, ``process_video_assets(settings)``), by
``bodyscript_pipeline.definitions.build_definitions``; nothing here reads the environment."""

import dagster as dg

from assets.derived import DERIVED_STEP, derived_asset
from assets.fleet_summary import FLEET_SUMMARY_KEY, fleet_summary_asset
from assets.jobs import PROCESS_VIDEO_JOB, process_video_job
from assets.lake_compaction import LAKE_COMPACTION_KEY, lake_compaction_asset
from assets.partitions import videos_partitions
from assets.pose import POSE_STEP, pose_asset
from assets.source_video import source_video
from assets.video_specs import VIDEO_ASSET_KEYS
from bodyscript_pipeline.settings import Settings


def process_video_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The per-video assets as the local executors run them: the ``pose`` and ``derived`` steps."""
    return [pose_asset(settings), derived_asset(settings)]


__all__ = [
    "DERIVED_STEP",
    "FLEET_SUMMARY_KEY",
    "LAKE_COMPACTION_KEY",
    "POSE_STEP",
    "PROCESS_VIDEO_JOB",
    "VIDEO_ASSET_KEYS",
    "derived_asset",
    "fleet_summary_asset",
    "lake_compaction_asset",
    "pose_asset",
    "process_video_assets",
    "process_video_job",
    "source_video",
    "videos_partitions",
]
