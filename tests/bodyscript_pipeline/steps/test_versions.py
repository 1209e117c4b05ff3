"""Versions change exactly with what determines them; the dependencies match the asset graph; the README's
staleness table is the one rendered from the declarations."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bodyscript_pipeline.lake.schemas import LINEAGE_SETTINGS
from bodyscript_pipeline.settings import SETTINGS, Setting, Settings
from bodyscript_pipeline.steps.lineage import lineage_field, lineage_settings
from bodyscript_pipeline.steps.versions import (
    CODE_VERSIONS,
    DEPENDS_ON,
    VIDEO_ASSETS,
    asset_version,
    determining,
    downstream,
    effective_settings,
    staleness_table,
)
from tests.support.lineage_lake import LITE_MODEL
from tests.support.repo import REPO

RUN = [s for s in SETTINGS if s.scope == "run"]
DEPLOYMENT = [s for s in SETTINGS if s.scope == "deployment"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path)})


def other_value(setting: Setting, value: Any) -> Any:
    """A valid value of ``setting`` other than ``value``."""
    if setting.env == "BODYSCRIPT_MODEL_SHA256":
        return LITE_MODEL
    if setting.kind == "flag":
        return not value
    if setting.kind == "choice":
        return next(choice for choice in setting.choices if choice != value)
    if setting.kind in ("number", "integer"):
        step = 1 if setting.kind == "integer" else 0.125
        high = setting.high if setting.high is not None else float("inf")
        return value + step if value + step <= high else value - step
    if isinstance(value, Path):
        return value / "elsewhere"
    return f"{value or ''}-elsewhere"


def with_value(settings: Settings, setting: Setting, value: Any) -> Settings:
    group, _, attr = setting.attr.rpartition(".")
    if not group:
        return dataclasses.replace(settings, **{attr: value})
    return dataclasses.replace(settings, **{group: dataclasses.replace(getattr(settings, group), **{attr: value})})


def versions(settings: Settings) -> dict[str, str]:
    return {asset: asset_version(asset, settings) for asset in VIDEO_ASSETS}


@pytest.mark.parametrize("setting", RUN, ids=lambda s: s.env)
def test_a_run_setting_changes_exactly_the_versions_of_its_declared_assets(
    settings: Settings, setting: Setting
) -> None:
    assert setting.assets, f"{setting.env}: a run setting declares the assets it determines"
    changed = with_value(settings, setting, other_value(setting, setting.value_in(settings)))
    before, after = versions(settings), versions(changed)
    assert {asset for asset in VIDEO_ASSETS if before[asset] != after[asset]} == set(setting.assets)
    for asset in setting.assets:
        assert setting.env in determining(asset)
        assert effective_settings(asset, changed)[setting.env] == setting.value_in(changed)


@pytest.mark.parametrize("setting", DEPLOYMENT, ids=lambda s: s.env)
def test_a_deployment_setting_changes_no_version(settings: Settings, setting: Setting) -> None:
    assert not setting.assets
    changed = with_value(settings, setting, other_value(setting, setting.value_in(settings)))
    assert versions(changed) == versions(settings)


def test_a_version_is_the_step_code_version_and_a_digest_of_the_determining_values(settings: Settings) -> None:
    for asset in VIDEO_ASSETS:
        code, digest = asset_version(asset, settings).split(".")
        assert code == CODE_VERSIONS[asset] and len(digest) == 12
    assert determining("frames") == ()
    assert effective_settings("clean_landmarks", settings)["BODYSCRIPT_SMOOTH_CUTOFF_HZ"] == 6.0
    with pytest.raises(KeyError, match="not a per-video asset"):
        determining("fleet_summary")


def test_the_dependencies_are_the_asset_graphs() -> None:
    from assets.video_specs import VIDEO_SPECS

    graph = {spec.key.to_user_string(): {dep.asset_key.to_user_string() for dep in spec.deps} for spec in VIDEO_SPECS}
    assert set(graph) == set(VIDEO_ASSETS)
    for asset in VIDEO_ASSETS:
        assert graph[asset] - {"source_video"} == set(DEPENDS_ON[asset]), asset
    assert downstream(("clean_landmarks",)) == ("metrics", "exports")
    assert downstream(("frames",)) == VIDEO_ASSETS[1:]
    assert downstream(("overlays",)) == ()


def test_the_lineage_struct_has_a_typed_field_per_run_setting(settings: Settings) -> None:
    assert [f.name for f in LINEAGE_SETTINGS] == [lineage_field(s.env) for s in RUN]
    kinds = {"number": pa.float64(), "integer": pa.int64(), "flag": pa.bool_(), "choice": pa.string()}
    for setting in RUN:
        field = LINEAGE_SETTINGS.field(lineage_field(setting.env))
        assert field.type == kinds.get(setting.kind, pa.string()), setting.env
    assert lineage_field("BODYSCRIPT_SMOOTH_CUTOFF_HZ") == "smooth_cutoff_hz"
    values = lineage_settings("clean_landmarks", settings)
    assert values["smooth_cutoff_hz"] == 6.0 and values["quality_max_filled"] == 0.25
    assert values["model_sha256"] is None, "the model does not determine the cleaned layer itself"
    assert lineage_settings("frames", settings) == dict.fromkeys(values)


def readme_staleness_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Versions, staleness and lineage\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_staleness_table_is_rendered_from_the_declarations() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.index("\n## Settings\n") < readme.index("\n## Versions, staleness and lineage\n")
    after_settings = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[1]
    assert after_settings.startswith("Versions, staleness and lineage\n"), "the section follows the settings"
    table = staleness_table()
    assert table in readme_staleness_section(), "README.md's staleness table is stale: paste staleness_table() there"
    for setting in RUN:
        assert f"| `{setting.env}` |" in table
    for name in ("BODYSCRIPT_REPROCESS", "BODYSCRIPT_REPROCESS_MAX_RUNS", "BODYSCRIPT_REPROCESS_INTERVAL_S"):
        assert f"`{name}`" in readme_staleness_section()
