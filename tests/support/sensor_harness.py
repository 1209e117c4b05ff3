"""Ticks the drop-zone sensor like the daemon does, against a real instance and S3 endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pytest

from bodyscript_pipeline.definitions import build_definitions
from bodyscript_pipeline.settings import Settings
from sensors import DROP_ZONE_SENSOR
from tests.support.s3_server import S3Server

DROP_BUCKET = "drop"
LAKE_BUCKET = "lake"


@dataclass
class SensorHarness:
    """Ticks the sensor like the daemon does: applies partition requests, keeps the cursor, dedups run keys."""

    instance: dg.DagsterInstance
    defs: dg.Definitions
    client: Any
    cursor: str | None = None
    run_keys: list[str] = field(default_factory=list)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=DROP_BUCKET, Key=f"incoming/{key}", Body=body)

    def tick(self) -> dg.SensorResult:
        sensor = self.defs.resolve_sensor_def(DROP_ZONE_SENSOR)
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.defs.resources
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        self.run_keys.extend(r.run_key for r in result.run_requests or [])
        return result


@contextmanager
def harness_for(monkeypatch: pytest.MonkeyPatch, s3: S3Server, **env: str) -> Iterator[SensorHarness]:
    client = s3.client()
    client.create_bucket(Bucket=DROP_BUCKET)
    client.create_bucket(Bucket=LAKE_BUCKET)
    monkeypatch.setenv("BODYSCRIPT_DROP_URI", f"s3://{DROP_BUCKET}/incoming")
    monkeypatch.setenv("BODYSCRIPT_LAKE_URI", f"s3://{LAKE_BUCKET}/bodyscript")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with dg.instance_for_test() as instance:
        yield SensorHarness(instance, build_definitions(Settings.from_env()), client)
