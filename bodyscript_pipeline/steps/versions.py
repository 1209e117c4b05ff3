"""What determines each per-video asset's output, and so its version: the code version of its step and the values
of the run settings declared to determine it (``Setting.assets``). The version is what Dagster records as the
asset's code version and what the lake's lineage records beside the values themselves (steps/lineage.py): a
change to either makes the asset stale, and everything downstream of it (steps/staleness.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType

from bodyscript_pipeline.settings import SETTINGS, Settings
from bodyscript_pipeline.steps import clean_landmarks, exports, frames, landmarks, metrics, overlays

# The per-video assets in dependency order, each with its step's code version.
CODE_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        "frames": frames.CODE_VERSION,
        "landmarks": landmarks.CODE_VERSION,
        "overlays": overlays.CODE_VERSION,
        "clean_landmarks": clean_landmarks.CODE_VERSION,
        "metrics": metrics.CODE_VERSION,
        "exports": exports.CODE_VERSION,
    }
)


VIDEO_ASSETS = tuple(CODE_VERSIONS)


# What each per-video asset is made from (the Dagster asset graph has the same edges; a test keeps them equal).
DEPENDS_ON: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "frames": (),
        "landmarks": ("frames",),
        "overlays": ("landmarks",),
        "clean_landmarks": ("landmarks",),
        "metrics": ("landmarks", "clean_landmarks"),
        "exports": ("clean_landmarks", "metrics"),
    }
)


def determining(asset: str) -> tuple[str, ...]:
    """The variables of the settings that determine ``asset``'s output, in declaration order."""
    if asset not in CODE_VERSIONS:
        raise KeyError(f"{asset}: not a per-video asset ({', '.join(VIDEO_ASSETS)})")
    return tuple(s.env for s in SETTINGS if asset in s.assets)


def effective_settings(asset: str, settings: Settings) -> dict[str, object]:
    """The values, by variable, of the settings that determine ``asset``: what its lineage records."""
    by_env = {s.env: s for s in SETTINGS}
    return {env: _plain(by_env[env].value_in(settings)) for env in determining(asset)}


def asset_version(asset: str, settings: Settings) -> str:
    """``<code version>.<digest of the determining settings' values>``: equal exactly when the step's code and
    every value that determines its output are equal."""
    values = json.dumps(effective_settings(asset, settings), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(values.encode()).hexdigest()[:12]
    return f"{CODE_VERSIONS[asset]}.{digest}"


def _plain(value: object) -> object:
    """The value as JSON holds it (numbers as numbers; anything else, e.g. a path, as its text)."""
    return value if isinstance(value, bool | int | float | str | None) else str(value)


def downstream(assets: set[str] | frozenset[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The per-video assets made, directly or not, from any of ``assets`` (not those themselves), in order."""
    found = set(assets)
    for asset in VIDEO_ASSETS:  # dependency order: an asset's inputs come before it
        if any(dep in found for dep in DEPENDS_ON[asset]):
            found.add(asset)
    return tuple(a for a in VIDEO_ASSETS if a in found and a not in assets)


def staleness_table() -> str:
    """The markdown table: each change, the assets it makes stale, and those downstream of them that follow."""

    def row(change: str, assets: tuple[str, ...]) -> str:
        after = downstream(assets)
        return f"| {change} | {_names(assets)} | {_names(after) if after else 'nothing'} |"

    rows = [
        "| change | makes stale | and so, downstream |",
        "|---|---|---|",
        row("the source video's new version", ("frames",)),
        *(row(f"`{s.env}`", tuple(a for a in VIDEO_ASSETS if a in s.assets)) for s in SETTINGS if s.scope == "run"),
        *(row(f"`CODE_VERSION` of `bodyscript_pipeline/steps/{asset}.py`", (asset,)) for asset in VIDEO_ASSETS),
        "| any `deployment` setting | nothing | nothing |",
    ]
    return "\n".join(rows)


def _names(assets: tuple[str, ...]) -> str:
    return ", ".join(f"`{asset}`" for asset in assets)
