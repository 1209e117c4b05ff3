"""Launch-time configuration: the UI has no authentication of its own, so run config offers nothing that could
redirect writes, swap the model, lift the input limits or change where pods and pickles come from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bodyscript_pipeline.definitions import PROCESS_VIDEO_JOB, build_definitions
from bodyscript_pipeline.settings import Settings


def job_for(tmp_path: Path, **env: str) -> dg.JobDefinition:
    settings = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), **env})
    return build_definitions(settings).resolve_job_def(PROCESS_VIDEO_JOB)


@pytest.mark.parametrize(
    "config",
    [
        {"resources": {"pipeline": {"config": {"lake_uri": "file:///tmp/elsewhere"}}}},
        {"resources": {"pipeline": {"config": {"model_source": "https://attacker.example/model.task"}}}},
        {"resources": {"pipeline": {"config": {"model_sha256": "0" * 64}}}},
        {"resources": {"pipeline": {"config": {"max_pixels": 10**12, "max_bytes": 10**15}}}},
        {"resources": {"pipeline": {"config": {"home": "/"}}}},
        {"resources": {"pipeline": {"config": {"pose_workers": 512}}}},
        {"resources": {"io_manager": {"config": {"base_dir": "/tmp/planted-pickles"}}}},
    ],
)
def test_deployment_settings_cannot_be_overridden_at_launch(tmp_path: Path, config: dict[str, Any]) -> None:
    with pytest.raises(dg.DagsterInvalidConfigError, match="unexpected config entr"):
        dg.validate_run_config(job_for(tmp_path), config)


def test_k8s_pods_take_their_settings_from_the_deployment_only(tmp_path: Path) -> None:
    job = job_for(tmp_path, BODYSCRIPT_EXECUTOR="k8s")
    dg.validate_run_config(job, {})
    for config in ({"env_vars": ["BODYSCRIPT_LAKE_URI=s3://other"]}, {"job_image": "attacker/image"}):
        with pytest.raises(dg.DagsterInvalidConfigError, match="unexpected config entr"):
            dg.validate_run_config(job, {"execution": {"config": config}})


def test_an_overriding_launch_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """A real launch: refused as a whole, nothing written anywhere."""
    elsewhere = tmp_path / "elsewhere"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", ["clip-0123456789abcdef"])
        with pytest.raises(dg.DagsterInvalidConfigError):
            job_for(tmp_path).execute_in_process(
                run_config={"resources": {"pipeline": {"config": {"lake_uri": f"file://{elsewhere}"}}}},
                instance=instance,
                partition_key="clip-0123456789abcdef",
            )
        assert not instance.get_runs()
    assert not elsewhere.exists()
