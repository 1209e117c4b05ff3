"""Settings fail closed: an invalid or contradictory value stops start-up with one line naming the variable. Each
is declared once (variable, attribute, reader, default, doc, scope), and the README's table is rendered from that."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from bodyscript_pipeline import storage
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.settings import SCOPES, SETTINGS, Settings, settings_table
from tests.support.repo import REPO


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
        ("BODYSCRIPT_RETENTION_PARTITION_BATCH", "0", "at least 1"),
        ("BODYSCRIPT_PRIORITY_TIERS", "vip/=gold", "`<folder>/=<tier>` pairs"),
        ("BODYSCRIPT_PRIORITY_TIERS", "vip=premium", "`premium`, `standard`, `batch`"),
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


def attributes(value: Any, prefix: str = "") -> list[str]:
    """Every attribute path of a settings object, nested groups (``limits.max_bytes``) included."""
    found = []
    for member in fields(value):
        inner = getattr(value, member.name)
        found += attributes(inner, f"{prefix}{member.name}.") if is_dataclass(inner) else [prefix + member.name]
    return found


def test_every_attribute_has_exactly_one_declaration() -> None:
    declared = Counter(setting.attr for setting in SETTINGS)
    assert [attr for attr, count in declared.items() if count > 1] == []
    assert sorted(declared) == sorted(attributes(Settings.from_env({})))
    names = Counter(setting.env for setting in SETTINGS)
    assert [name for name, count in names.items() if count > 1] == []


def test_unset_variables_give_the_declared_defaults() -> None:
    found = Settings.from_env({})
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        values[setting.attr] = setting.default_for(values)
        assert setting.value_in(found) == values[setting.attr], setting.env


def test_blank_variables_are_unset() -> None:
    assert Settings.from_env({setting.env: "  " for setting in SETTINGS}) == Settings.from_env({})


def test_every_setting_is_of_the_deployment_or_of_the_run() -> None:
    assert SCOPES == ("deployment", "run")
    assert {setting.scope for setting in SETTINGS} == set(SCOPES)
    run = {setting.attr for setting in SETTINGS if setting.scope == "run"}
    assert {"model_variant", "model_sha256", "num_poses", "quality.max_filled", "blur_faces"} <= run
    assert not run & {"home", "lake_uri", "executor", "limits.max_bytes", "pose_workers", "retention_days"}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind in ("number", "integer")], ids=lambda s: s.env)
def test_an_invalid_number_is_refused_in_the_words_of_the_docs(tmp_path: Path, setting: Any) -> None:
    with pytest.raises(BodyscriptError) as raised:
        settings(tmp_path, **{setting.env: "x"})
    assert str(raised.value) == f"{setting.env}='x': use {setting.accepted()}"


def readme_settings_table() -> dict[str, str]:
    """The README's settings table: each row's variable and default."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {row[0].removeprefix("| ").strip("`"): row[1] for row in rows}


def test_the_readme_table_is_rendered_from_the_declarations() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "README.md's settings table is stale: paste settings_table() there"
    documented = readme_settings_table()
    for setting in SETTINGS:
        assert documented.get(setting.env) == setting.shown_default(), setting.env
    declared = {setting.env for setting in SETTINGS}
    assert [name for name in documented if name.startswith("BODYSCRIPT_") and name not in declared] == []


def test_the_public_endpoint_defaults_to_the_endpoint_storage_uses(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL_S3": " ", "AWS_ENDPOINT_URL": " http://minio:9000 "}
    assert storage.s3_endpoint_url(env) == "http://minio:9000"
    assert settings(tmp_path, **env).s3_public_endpoint == storage.s3_endpoint_url(env)
    assert storage.s3_endpoint_url({}) is None
