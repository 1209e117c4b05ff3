"""One run per partition at a time, whoever launches it: a run that meets another run of its partition waits
for it before writing anything, and `bodyscript process` refuses a partition that a run is processing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg

from assets import process_video_assets, videos_partitions
from assets.partitions import PARTITION_TAG
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from resources import PipelineResource
from tests.support.video_factory import clip_of


def started_run(instance: dg.DagsterInstance, partition: str) -> dg.DagsterRun:
    """Another run of the partition, in progress (as a daemon-launched run would be)."""
    return instance.add_run(
        dg.DagsterRun(job_name="process_video", tags={PARTITION_TAG: partition}, status=dg.DagsterRunStatus.STARTED)
    )


def test_a_run_that_meets_another_run_of_its_partition_waits_for_it(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 20, size=(442, 248))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["busy"])
        register_source(bodyscript_home.lake_uri, "busy", f"file://{clip}")
        other = started_run(instance, "busy")
        ended: list[float] = []

        def end_other() -> None:
            time.sleep(4)
            ended.append(time.time())
            instance.report_run_failed(instance.get_run_by_id(other.run_id))

        threading.Thread(target=end_other, daemon=True).start()
        result = dg.materialize(
            process_video_assets(bodyscript_home),
            instance=instance,
            partition_key="busy",
            resources={"pipeline": PipelineResource.from_settings(bodyscript_home)},
        )
        assert result.success
        waits = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert [e.step_key for e in waits] == ["pose"], "the pose step waited, before writing anything"
        (frames,) = instance.fetch_materializations(dg.AssetKey("frames"), limit=5).records
        assert ended and frames.timestamp > ended[0], "frames were written only once the other run had ended"
    assert Path(VideoLake(bodyscript_home.lake_uri, "busy").frame_index.removeprefix("file://")).is_file()


def test_cli_refuses_a_partition_that_a_run_is_processing(
    bodyscript_home: Settings, demo_video: Path, tmp_path: Path
) -> None:
    clip = clip_of(demo_video, tmp_path / "clip.mp4", 5, size=(64, 48))
    home = bodyscript_home.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["taken"])
        other = started_run(instance, "taken")
    cli = Path(sys.executable).with_name("bodyscript")
    done = subprocess.run(
        [str(cli), "process", str(clip), "--partition", "taken"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"partition taken is already being processed by run {other.run_id}" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not Path(VideoLake(bodyscript_home.lake_uri, "taken").frame_index.removeprefix("file://")).exists()
