"""All four assets of the real clip, materialized once per test session with the real model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from assets import process_video_assets, videos_partitions
from bodyscript_pipeline.lake.partition_keys import partition_key_for
from bodyscript_pipeline.lake.paths import VideoLake
from bodyscript_pipeline.lake.sources import register_source
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.storage import local_path
from resources import PipelineResource

DEMO_FRAMES = 230  # the clip's real frame count, as ffprobe -count_frames reports it


@dataclass
class DemoRun:
    settings: Settings
    partition: str
    result: dg.ExecuteInProcessResult
    lake: VideoLake

    def path(self, uri: str) -> Path:
        path = local_path(uri)
        assert path is not None
        return path

    def metadata(self, asset: str) -> dict:
        (event,) = [
            e.materialization
            for e in self.result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(asset)
        ]
        return {k: v.value for k, v in event.metadata.items()}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, model_source: str, demo_video: Path) -> Iterator[DemoRun]:
    home = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BODYSCRIPT_HOME", str(home))
        patch.setenv("BODYSCRIPT_MODEL_SOURCE", model_source)
        patch.delenv("BODYSCRIPT_LAKE_URI", raising=False)
        settings = Settings.from_env()
        with dg.instance_for_test() as instance:
            key = partition_key_for(demo_video.name, identity=str(demo_video))
            instance.add_dynamic_partitions(videos_partitions.name, [key])
            register_source(settings.lake_uri, key, f"file://{demo_video}")
            result = dg.materialize(
                process_video_assets(settings),
                instance=instance,
                partition_key=key,
                resources={"pipeline": PipelineResource.from_settings(settings)},
            )
            yield DemoRun(settings, key, result, VideoLake(settings.lake_uri, key))
