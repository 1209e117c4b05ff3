"""Settings fail closed: an invalid or contradictory value stops start-up with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), **env})


@pytest.mark.parametrize("value", ["on", "ON", "yes", "1", "true"])
def test_dry_run_spellings_that_mean_yes_are_a_dry_run(tmp_path: Path, value: str) -> None:
    assert settings(tmp_path, BODYSCRIPT_RETENTION_DRY_RUN=value).retention_dry_run is True


@pytest.mark.parametrize("value", ["off", "no", "0", "false"])
def test_dry_run_spellings_that_mean_no(tmp_path: Path, value: str) -> None:
    assert settings(tmp_path, BODYSCRIPT_RETENTION_DRY_RUN=value).retention_dry_run is False


@pytest.mark.parametrize(
    ("name", "value", "accepts"),
    [
        ("BODYSCRIPT_RETENTION_DRY_RUN", "ture", "use true or false"),
        ("BODYSCRIPT_RETENTION_DAYS", "0", "at least 1"),
        ("BODYSCRIPT_RETENTION_DAYS", "-3", "at least 1"),
        ("BODYSCRIPT_RUN_RETENTION_DAYS", "0", "at least 1"),
        ("BODYSCRIPT_RETENTION_MODE", "shred", "delete, archive"),
        ("BODYSCRIPT_POSE_WORKERS", "0", "at least 1"),
        ("BODYSCRIPT_POSE_WORKERS", "two", "whole number"),
        ("BODYSCRIPT_MAX_PIXELS", "-1", "at least 1"),
        ("BODYSCRIPT_MAX_BYTES", "1e99x", "whole number"),
        ("BODYSCRIPT_MIN_VISIBILITY", "1.5", "from 0 to 1"),
        ("BODYSCRIPT_MIN_VISIBILITY", "nan", "from 0 to 1"),
        ("BODYSCRIPT_SCAN_PAGE_SIZE", "5000", "from 1 to 1000"),
        ("BODYSCRIPT_SENSOR_INTERVAL_S", "0", "at least 1"),
        ("BODYSCRIPT_QUOTA_GLOBAL_PER_HOUR", "-1", "at least 0"),
        ("BODYSCRIPT_PRESIGN_EXPIRY_S", "9999999", "from 1 to 604800"),
        ("BODYSCRIPT_POSE_TILES", "many", "or auto"),
        ("BODYSCRIPT_MODEL_SHA256", "abc", "64 hex digits"),
        ("BODYSCRIPT_LAKE_URI", "http://example.com/lake", "s3://bucket/prefix"),
        ("BODYSCRIPT_DROP_URI", "s3://", "s3://bucket/prefix"),
    ],
)
def test_invalid_values_stop_with_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, accepts: str
) -> None:
    with pytest.raises(BodyscriptError) as raised:
        settings(tmp_path, **{name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}="), message
    assert accepts in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("drop", "lake"),
    [
        ("{home}/lake/incoming", "{home}/lake"),  # the drop zone inside the lake: outputs would be ingested again
        ("{home}/drop", "{home}/drop/lake"),
        ("{home}/same", "{home}/same"),
        ("s3://bucket/lake/drop", "s3://bucket/lake"),
    ],
)
def test_drop_zone_and_lake_may_not_contain_each_other(tmp_path: Path, drop: str, lake: str) -> None:
    with pytest.raises(BodyscriptError, match="neither may lie inside the other"):
        settings(
            tmp_path, BODYSCRIPT_DROP_URI=drop.format(home=tmp_path), BODYSCRIPT_LAKE_URI=lake.format(home=tmp_path)
        )


def test_neighbouring_names_are_not_nested(tmp_path: Path) -> None:
    found = settings(tmp_path, BODYSCRIPT_DROP_URI=f"{tmp_path}/lake-drop", BODYSCRIPT_LAKE_URI=f"{tmp_path}/lake")
    assert found.drop_uri == f"file://{tmp_path}/lake-drop"


def test_the_code_location_refuses_to_load_with_one_line(tmp_path: Path) -> None:
    """What `make dev` and the daemon see: the definitions module fails to import, naming the variable."""
    env = {**os.environ, "BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_RETENTION_DRY_RUN": "maybe"}
    done = subprocess.run(
        [sys.executable, "-c", "import bodyscript_pipeline.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "BODYSCRIPT_RETENTION_DRY_RUN='maybe': use true or false" in last, last
