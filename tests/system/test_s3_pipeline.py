"""A whole run with the drop zone and the lake both on S3 (moto's server over HTTP): every output lands there."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets import process_video_assets
from bodyscript_pipeline.analytics import connect
from bodyscript_pipeline.settings import Settings
from bodyscript_pipeline.storage import read_bytes
from tests.resources.test_pipeline_resource import signed_for_its_host
from tests.support.s3_server import S3Server
from tests.support.sensor_harness import DROP_BUCKET, LAKE_BUCKET, harness_for
from tests.support.video_factory import clip_of

CLIP_FRAMES = 30


def test_drop_and_lake_on_s3(
    bodyscript_home: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch, demo_video: Path, tmp_path: Path
) -> None:
    clip = clip_of(demo_video, tmp_path / "clip.mp4", CLIP_FRAMES, size=(884, 496))
    public = f"http://localhost:{urlsplit(s3.endpoint).port}"  # browsers' name for the S3 the pods reach
    with harness_for(monkeypatch, s3, BODYSCRIPT_S3_PUBLIC_ENDPOINT=public) as harness:
        harness.put("athletes/demo.mp4", clip.read_bytes())
        source_etag = harness.client.head_object(Bucket=DROP_BUCKET, Key="incoming/athletes/demo.mp4")["ETag"]
        (request,) = harness.tick().run_requests
        key = request.partition_key
        result = dg.materialize(
            process_video_assets(Settings.from_env()),
            instance=harness.instance,
            partition_key=key,
            resources=harness.defs.resources,
            tags=request.tags,
        )
        assert result.success

        listed = harness.client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix="bodyscript/")
        stored = {item["Key"].removeprefix("bodyscript/") for item in listed["Contents"]}
        folder = f"video={key}"
        assert {
            f"sources/{folder}/source.json",
            f"frames/{folder}/index.parquet",
            f"frames/{folder}/probe.json",
            f"frames/{folder}/source.mp4",
            f"landmarks/{folder}/part-0.parquet",
            f"overlays/{folder}/overlay.mp4",
            f"overlays/{folder}/thumbnail.jpg",
            f"frame_metrics/{folder}/part-0.parquet",
            f"video_metrics/{folder}/part-0.parquet",
            f"videos/{folder}/part-0.parquet",
        } <= stored
        assert not (bodyscript_home.home / "lake").exists(), "nothing of the lake is written to local disk"

        # The source object is untouched.
        head = harness.client.head_object(Bucket=DROP_BUCKET, Key="incoming/athletes/demo.mp4")
        assert head["ETag"] == source_etag

        # Presigned, expiring links for the overlay, signed for the public endpoint: fetchable without credentials.
        (overlay_event,) = [
            e.materialization
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("overlays")
        ]
        link = overlay_event.metadata["uri_download"].value
        assert link.startswith(f"{public}/") and "X-Amz-Expires=86400" in link and "X-Amz-Signature=" in link
        assert signed_for_its_host(link, s3.env["AWS_SECRET_ACCESS_KEY"])
        with urllib.request.urlopen(link, timeout=10) as response:
            body = response.read()
        assert body[4:8] == b"ftyp"
        assert body == read_bytes(f"s3://{LAKE_BUCKET}/bodyscript/overlays/{folder}/overlay.mp4")

        # Credentials never reach the event log, metadata or errors.
        secret = s3.env["AWS_SECRET_ACCESS_KEY"]
        events = harness.instance.all_logs(result.run_id)
        assert events and not any(secret in repr(event) for event in events)

        # The lake answers queries where it is: DuckDB through fsspec, and Polars on the same file.
        lake = f"s3://{LAKE_BUCKET}/bodyscript"
        landmarks = pl.read_parquet(io.BytesIO(read_bytes(f"{lake}/landmarks/{folder}/part-0.parquet")))
        con = connect(lake)
        assert con.execute("SELECT count(*) FROM landmarks").fetchone()[0] == landmarks.height
        video, frames = con.execute("SELECT video, frame_count FROM videos").fetchone()
        assert (video, frames) == (key, CLIP_FRAMES)
        with pytest.raises(duckdb.PermissionException):  # the drop zone is not the lake
            con.execute(f"SELECT * FROM read_blob('s3://{DROP_BUCKET}/incoming/athletes/demo.mp4')").fetchall()
