"""Settings read from environment variables, with defaults that work on a laptop.

Each setting is declared once, in :data:`SETTINGS`: its variable, the attribute it fills, how it is read (with its
bounds or choices), its default, one line of documentation and its scope (``deployment``: where data lives and how
things run; ``run``: what determines a run's outputs). :meth:`Settings.from_env` reads them in that order, and
:func:`settings_table` renders them as the table of the README's "Settings" section (a test keeps the two equal).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import SplitResult, urlsplit

from bodyscript_pipeline.cleaning.quality import QualityThresholds
from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.overlay.size import MAX_RESOLUTION
from bodyscript_pipeline.pose.model import MODEL_VARIANTS
from bodyscript_pipeline.pose.service import PoseService
from bodyscript_pipeline.storage import s3_endpoint_url
from bodyscript_pipeline.video.limits import Limits

EXECUTORS = ("in_process", "multiprocess", "k8s")
METRICS_LANDMARKS = ("cleaned", "raw")
# Run priorities, Dagster's ``dagster/priority`` run tag (the run queue starts the highest first): a drop's run has
# the priority of its top-level drop folder's tier (BODYSCRIPT_PRIORITY_TIERS, else ``DEFAULT_TIER``), and
# reprocessing runs have one below every tier.
TIER_PRIORITIES: Mapping[str, int] = {"premium": 10, "standard": 0, "batch": -10}
DEFAULT_TIER = "standard"
REPROCESS_PRIORITY = -20
PriorityTiers = tuple[tuple[str, str], ...]  # (top-level drop folder, tier), in the order given
Scope = Literal["deployment", "run"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
Kind = Literal["text", "path", "uri", "number", "integer", "flag", "choice"]
Values = Mapping[str, Any]  # the settings read so far, by attribute path: what derived defaults and checks use
Reader = Callable[[Mapping[str, str], "Setting", Values], Any]


@dataclass(frozen=True)
class Setting:
    """One setting. ``default`` is its value when the variable is unset or blank, or a function of the settings
    declared before it. The docs show that value, followed by ``note`` where given, or ``shown`` instead where the
    value alone would not say it (a derived, empty or coded default). ``read`` replaces the reader of ``kind``
    where a setting needs more; ``accepts`` then says what it takes."""

    env: str
    attr: str  # the attribute of Settings it fills; "limits.max_bytes": Settings.limits.max_bytes
    scope: Scope
    doc: str
    default: Any
    kind: Kind = "text"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    also: str = ""  # what else an integer accepts, e.g. "or auto"
    read: Reader | None = None
    accepts: str = ""
    shown: str = ""
    note: str = ""
    assets: tuple[str, ...] = ()  # run scope: the per-video assets whose output it determines (their version)

    def default_for(self, values: Values) -> Any:
        return self.default(values) if callable(self.default) else self.default

    def value(self, env: Mapping[str, str], values: Values) -> Any:
        """The value ``env`` gives this setting; fails closed with one line naming the variable."""
        return (self.read or _READERS[self.kind])(env, self, values)

    def value_in(self, settings: Settings) -> Any:
        return functools.reduce(getattr, self.attr.split("."), settings)

    def accepted(self) -> str:
        """What the variable accepts, in the words of its error message."""
        if self.accepts:
            return self.accepts
        if self.kind == "choice":
            return ", ".join(f"`{choice}`" for choice in self.choices)
        if self.kind in ("number", "integer"):
            what = "a number" if self.kind == "number" else "a whole number"
            return " ".join(part for part in (what, _bounds(self.low, self.high), self.also) if part)
        return _KIND_ACCEPTS[self.kind]

    def shown_default(self) -> str:
        if self.shown:
            return self.shown
        if callable(self.default) or self.default in (None, ""):
            raise ValueError(f"{self.env}: a derived or empty default needs `shown`")
        value = self.default
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        return f"`{text}` ({self.note})" if self.note else f"`{text}`"


# Readers: unset or blank means the declared default; anything else is the value, or one line naming the variable.


def _raw(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


def _text(env: Mapping[str, str], setting: Setting, values: Values) -> str:
    return _raw(env, setting.env) or setting.default_for(values)


def _path(env: Mapping[str, str], setting: Setting, values: Values) -> Path:
    raw = _raw(env, setting.env)
    return setting.default_for(values) if raw is None else Path(raw).expanduser().resolve()


def _number(env: Mapping[str, str], setting: Setting, values: Values) -> float:
    raw = _raw(env, setting.env)
    if raw is None:
        return setting.default_for(values)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low, high = setting.low, setting.high
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise BodyscriptError(f"{setting.env}={raw!r}: use {setting.accepted()}")
    return value


def _integer(env: Mapping[str, str], setting: Setting, values: Values) -> int:
    raw = _raw(env, setting.env)
    if raw is None:
        return setting.default_for(values)
    try:
        value: int | None = int(raw)
    except ValueError:
        value = None
    low, high = setting.low, setting.high
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        raise BodyscriptError(f"{setting.env}={raw!r}: use {setting.accepted()}")
    return value


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    if low is not None:
        return f"of at least {low:g}"
    return f"of at most {high:g}" if high is not None else ""


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], setting: Setting, values: Values) -> bool:
    raw = _raw(env, setting.env)
    if raw is None:
        return setting.default_for(values)
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise BodyscriptError(f"{setting.env}={raw!r}: use true or false (also 1/0, yes/no, on/off)")


def _choice(env: Mapping[str, str], setting: Setting, values: Values) -> str:
    value = (_raw(env, setting.env) or setting.default_for(values)).lower()
    if value not in setting.choices:
        raise BodyscriptError(f"{setting.env}={value!r}: choose one of {', '.join(setting.choices)}")
    return value


def _uri(env: Mapping[str, str], setting: Setting, values: Values) -> str:
    raw = _raw(env, setting.env)
    return setting.default_for(values) if raw is None else _location(setting.env, raw)


def _location(name: str, location: str) -> str:
    """Plain paths become absolute ``file://`` URIs; ``file://`` and ``s3://`` URIs are kept as given."""
    if "://" not in location:
        return _file_uri(Path(location))
    if location.startswith("file://"):
        return _file_uri(Path(location.removeprefix("file://")))
    if location.startswith("s3://") and location.removeprefix("s3://").strip("/"):
        return location.rstrip("/")
    raise BodyscriptError(f"{name}={location!r}: use a local path, a file:// URI or an s3://bucket/prefix URI")


def _file_uri(path: Path) -> str:
    return "file://" + str(path.expanduser().resolve())


_READERS: dict[str, Reader] = {
    "text": _text,
    "path": _path,
    "uri": _uri,
    "number": _number,
    "integer": _integer,
    "flag": _flag,
    "choice": _choice,
}
_KIND_ACCEPTS = {
    "text": "text",
    "path": "a path",
    "uri": "a path, a `file://` URI or an `s3://bucket/prefix` URI",
    "flag": "`true` or `false`",
}

# Readers of single settings: derived defaults and checks across settings.

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(env: Mapping[str, str], setting: Setting, values: Values) -> str:
    sha256 = (_raw(env, setting.env) or setting.default_for(values)).lower()
    if not _SHA256.fullmatch(sha256):
        raise BodyscriptError(f"{setting.env}={sha256!r}: use the model's SHA-256, 64 hex digits")
    return sha256


def _tiles(env: Mapping[str, str], setting: Setting, values: Values) -> int:
    raw = _raw(env, setting.env)
    return setting.default_for(values) if raw is None or raw.lower() == "auto" else _integer(env, setting, values)


def _drop_uri(env: Mapping[str, str], setting: Setting, values: Values) -> str:
    """The drop zone and the lake must not contain each other: the pipeline's own outputs would be ingested
    again, forever, or a drop would land among the lake's tables."""
    drop_uri, lake_uri = _uri(env, setting, values), values["lake_uri"]
    drop, lake = drop_uri.rstrip("/") + "/", lake_uri.rstrip("/") + "/"
    if drop.startswith(lake) or lake.startswith(drop):
        raise BodyscriptError(
            f"{setting.env}={drop_uri!r} and {_env_of('lake_uri')}={lake_uri!r}: neither may lie inside the "
            "other; use separate folders or prefixes"
        )
    return drop_uri


_PUBLIC_ACCEPTS = (
    "use the https:// URL where browsers reach S3 (http:// only on a loopback host: localhost, 127.0.0.1, ::1)"
)


def _public_endpoint(env: Mapping[str, str], setting: Setting, values: Values) -> str | None:
    """Where browsers reach S3; download links are presigned for this host, as SigV4 signs the host. Unset: the
    S3 endpoint the pipeline uses (AWS's own where none is set), checked only where links are made (an S3 lake)."""
    internal = s3_endpoint_url(env)
    raw = _raw(env, setting.env)
    if raw is None:
        if internal is None or not values["lake_uri"].startswith("s3://"):
            return internal
        if _browsable(urlsplit(internal)):
            return internal.rstrip("/")
        source = "AWS_ENDPOINT_URL_S3" if _raw(env, "AWS_ENDPOINT_URL_S3") == internal else "AWS_ENDPOINT_URL"
        raise BodyscriptError(
            f"{setting.env} is unset, so download links would point at {source}={internal!r}: {_PUBLIC_ACCEPTS}"
        )
    if not _browsable(urlsplit(raw)):
        raise BodyscriptError(f"{setting.env}={raw!r}: {_PUBLIC_ACCEPTS}")
    return raw.rstrip("/")


def _browsable(url: SplitResult) -> bool:
    """An origin a browser opens safely: HTTPS, or plain HTTP that never leaves the machine."""
    try:
        url.port  # noqa: B018 - raises on an invalid port
    except ValueError:
        return False
    plain = url.path in ("", "/") and not (url.query or url.fragment or url.username or url.password)
    if not plain or not url.hostname:
        return False
    return url.scheme == "https" or (url.scheme == "http" and _loopback(url.hostname))


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _step_records(env: Mapping[str, str], setting: Setting, values: Values) -> str:
    """Where step records (pickles: whoever writes them runs code in the next pod) live between pods: an S3
    prefix outside the lake, so that the lake's readers and writers cannot reach them. Unset: a sibling of the
    lake prefix, ``<lake prefix>-dagster-io``, in the lake's bucket."""
    name, lake_uri = setting.env, values["lake_uri"]
    raw = _raw(env, name)
    if raw is not None:
        if not raw.startswith("s3://"):
            raise BodyscriptError(f"{name}={raw!r}: use an s3://bucket/prefix URI outside the lake")
        uri = _location(name, raw)
    elif lake_uri.startswith("s3://") and "/" in lake_uri.removeprefix("s3://"):
        uri = f"{lake_uri}-dagster-io"
    elif lake_uri.startswith("s3://") and values["executor"] == "k8s":
        raise BodyscriptError(
            f"{name} is unset and the lake is the whole bucket {lake_uri}: set it to an s3:// prefix outside "
            "the lake, e.g. s3://<another bucket>/dagster-io"
        )
    else:
        return setting.default_for(values)
    for attr in ("lake_uri", "drop_uri"):
        records, around = uri.rstrip("/") + "/", values[attr].rstrip("/") + "/"
        if records.startswith(around) or around.startswith(records):
            raise BodyscriptError(
                f"{name}={uri!r} and {_env_of(attr)}={values[attr]!r}: neither may lie inside the other"
            )
    return uri


_TIERS_ACCEPTS = (
    "comma-separated `<folder>/=<tier>` pairs, a top-level drop folder and one of "
    f"{', '.join(f'`{tier}`' for tier in TIER_PRIORITIES)} (e.g. `vip/=premium,bulk/=batch`)"
)


def _priority_tiers(env: Mapping[str, str], setting: Setting, values: Values) -> PriorityTiers:
    """``vip/=premium,bulk/=batch``: each named top-level drop folder's tier; unnamed folders are standard."""
    raw = _raw(env, setting.env)
    if raw is None:
        return setting.default_for(values)
    tiers: dict[str, str] = {}
    for entry in raw.split(","):
        folder, sign, tier = (part.strip() for part in entry.partition("="))
        tier = tier.lower()
        name = folder.removesuffix("/")
        if not sign or not folder.endswith("/") or not name or "/" in name:
            raise BodyscriptError(f"{setting.env}={raw!r}: {entry.strip()!r} is not a pair; use {_TIERS_ACCEPTS}")
        if tier not in TIER_PRIORITIES:
            raise BodyscriptError(f"{setting.env}={raw!r}: {tier!r} is no tier; use {_TIERS_ACCEPTS}")
        if name in tiers:
            raise BodyscriptError(f"{setting.env}={raw!r}: {folder} is given twice; use {_TIERS_ACCEPTS}")
        tiers[name] = tier
    return tuple(tiers.items())


def _env_of(attr: str) -> str:
    return next(setting.env for setting in SETTINGS if setting.attr == attr)


_LIMITS = Limits()  # the input limits' defaults live with the limits
_QUALITY = QualityThresholds()  # and the quality thresholds' with the checks

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "BODYSCRIPT_HOME",
        "home",
        "deployment",
        "root of all local state: lake, drop folder, model cache, Dagster home",
        lambda _: Path(".bodyscript").resolve(),
        "path",
        shown="`./.bodyscript`",
    ),
    Setting(
        "BODYSCRIPT_LAKE_URI",
        "lake_uri",
        "deployment",
        "where results go",
        lambda values: _file_uri(values["home"] / "lake"),
        "uri",
        shown="`file://$BODYSCRIPT_HOME/lake`",
    ),
    Setting(
        "BODYSCRIPT_DROP_URI",
        "drop_uri",
        "deployment",
        "where videos are dropped; neither it nor the lake may lie inside the other",
        lambda values: _file_uri(values["home"] / "drop"),
        "uri",
        read=_drop_uri,
        shown="`file://$BODYSCRIPT_HOME/drop`",
    ),
    Setting(
        "BODYSCRIPT_MODEL",
        "model_variant",
        "run",
        "pose model variant",
        "full",
        "choice",
        choices=tuple(MODEL_VARIANTS),
        assets=("landmarks",),
    ),
    Setting(
        "BODYSCRIPT_MODEL_SOURCE",
        "model_source",
        "deployment",
        "path or URL to fetch the model from",
        lambda values: MODEL_VARIANTS[values["model_variant"]].url,
        shown="the official MediaPipe URL of that model",
    ),
    Setting(
        "BODYSCRIPT_MODEL_SHA256",
        "model_sha256",
        "run",
        "expected SHA-256 of the model (set it only for a custom model)",
        lambda values: MODEL_VARIANTS[values["model_variant"]].sha256,
        read=_sha256,
        accepts="64 hex digits",
        shown="the official hash of that model",
        assets=("landmarks",),
    ),
    Setting(
        "BODYSCRIPT_MIN_VISIBILITY",
        "min_visibility",
        "run",
        "landmarks below this visibility are neither drawn nor measured",
        0.5,
        "number",
        0.0,
        1.0,
        assets=("overlays", "clean_landmarks", "metrics"),
    ),
    Setting(
        "BODYSCRIPT_OVERLAY_MAX_RESOLUTION",
        "overlay_max_resolution",
        "run",
        "the overlay video's short side at most, in pixels (540p; a source a whole factor brings within 15 % of it "
        "is divided by that factor); `0` keeps the source's size",
        MAX_RESOLUTION,
        "integer",
        0,
        assets=("overlays",),
    ),
    Setting(
        "BODYSCRIPT_BLUR_FACES",
        "blur_faces",
        "run",
        "blur every detected person's head in the overlay and its thumbnail; `false` shows faces",
        True,
        "flag",
        assets=("overlays",),
    ),
    Setting(
        "DAGSTER_HOME",
        "dagster_home",
        "deployment",
        "Dagster instance; `dagster.yaml` from this repo is installed there",
        lambda values: (values["home"] / "dagster").resolve(),
        "path",
        shown="`$BODYSCRIPT_HOME/dagster`",
    ),
    Setting(
        "BODYSCRIPT_EXECUTOR",
        "executor",
        "deployment",
        "`in_process` (a run's steps in the run's process), `multiprocess` (a process per step), or `k8s` "
        "(a Kubernetes Job per step)",
        "in_process",
        "choice",
        choices=EXECUTORS,
    ),
    Setting(
        "BODYSCRIPT_POSE_DELEGATE",
        "pose_delegate",
        "deployment",
        "`gpu` asks for MediaPipe's GPU delegate; falls back to CPU with a warning (`pose_delegate` metadata says "
        "which ran)",
        "cpu",
        "choice",
        choices=("cpu", "gpu"),
    ),
    Setting(
        "BODYSCRIPT_K8S_GPU_NODE_SELECTOR",
        "k8s_gpu_node_selector",
        "deployment",
        "node selector of GPU step pods under `k8s`",
        "bodyscript.io/pool=gpu",
    ),
    Setting(
        "BODYSCRIPT_K8S_CPU_NODE_SELECTOR",
        "k8s_cpu_node_selector",
        "deployment",
        "node selector of CPU step pods under `k8s`",
        "bodyscript.io/pool=cpu",
    ),
    Setting(
        "BODYSCRIPT_K8S_GPU_TAINT",
        "k8s_gpu_taint",
        "deployment",
        "taint of the GPU pool that GPU step pods tolerate under `k8s`",
        "nvidia.com/gpu",
    ),
    Setting(
        "BODYSCRIPT_COST_CPU_POD_HOUR",
        "cost_cpu_pod_hour",
        "deployment",
        "price of a CPU pod hour behind the `estimated_cost` metadata",
        0.05,
        "number",
        0.0,
    ),
    Setting(
        "BODYSCRIPT_COST_GPU_POD_HOUR",
        "cost_gpu_pod_hour",
        "deployment",
        "price of a GPU pod hour behind the `estimated_cost` metadata",
        1.00,
        "number",
        0.0,
    ),
    Setting(
        "BODYSCRIPT_POSE_WORKERS",
        "pose_workers",
        "deployment",
        "parallel frame ranges of pose inference per video (one process each)",
        lambda _: os.cpu_count() or 1,
        "integer",
        1,
        shown="number of cores",
    ),
    Setting(
        "BODYSCRIPT_POSE_RANGE_FRAMES",
        "pose_range_frames",
        "deployment",
        "under `k8s`: frames per pose step, each its own GPU pod",
        9000,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_POSE_SERVICE_IDLE_S",
        "pose_service_idle_s",
        "deployment",
        "the warm pose service exits after this many seconds without work; `0`: no service, pose workers start "
        "with each step",
        300.0,
        "number",
        0.0,
    ),
    Setting(
        "BODYSCRIPT_NUM_POSES",
        "num_poses",
        "run",
        'most people found per frame; above 1, wide frames are covered by overlapping tiles (see "Several people")',
        1,
        "integer",
        1,
        32,
        assets=("landmarks", "overlays"),
    ),
    Setting(
        "BODYSCRIPT_POSE_TILES",
        "pose_tiles",
        "run",
        "tiles along the frame's long side (`auto`: one for one person, else enough square tiles)",
        0,  # 0: automatic
        "integer",
        1,
        16,
        also="or auto",
        read=_tiles,
        shown="`auto`",
        assets=("landmarks",),
    ),
    Setting(
        "BODYSCRIPT_TRACK_MAX_GAP",
        "track_max_gap",
        "run",
        "frames a person may be missing and still keep their id",
        15,
        "integer",
        0,
        assets=("landmarks",),
    ),
    Setting(
        "BODYSCRIPT_FILL_MAX_GAP",
        "fill_max_gap",
        "run",
        "longest gap (frames) the cleaned layer fills by interpolation; `0`: none",
        10,
        "integer",
        0,
        assets=("clean_landmarks",),
    ),
    Setting(
        "BODYSCRIPT_SMOOTH_CUTOFF_HZ",
        "smooth_cutoff_hz",
        "run",
        "cut-off of the cleaned layer's zero-phase Butterworth low-pass; `0`: no smoothing",
        6.0,
        "number",
        0.0,
        assets=("clean_landmarks",),
    ),
    Setting(
        "BODYSCRIPT_METRICS_LANDMARKS",
        "metrics_landmarks",
        "run",
        "which landmarks `metrics` measures (recorded in `videos.metrics_landmarks`)",
        "cleaned",
        "choice",
        choices=METRICS_LANDMARKS,
        assets=("metrics",),
    ),
    Setting(
        "BODYSCRIPT_QUALITY_MIN_DETECTION_RATE",
        "quality.min_detection_rate",
        "run",
        "below this detection rate, the blocking `pose_detection` check fails",
        _QUALITY.min_detection_rate,
        "number",
        0.0,
        1.0,
        assets=("clean_landmarks",),
    ),
    Setting(
        "BODYSCRIPT_QUALITY_MIN_VISIBILITY",
        "quality.min_visibility",
        "run",
        "below this mean visibility, the blocking `pose_detection` check fails",
        _QUALITY.min_visibility,
        "number",
        0.0,
        1.0,
        assets=("clean_landmarks",),
    ),
    Setting(
        "BODYSCRIPT_QUALITY_MAX_JITTER_PX",
        "quality.max_jitter_px",
        "run",
        "above this jitter, in pixels, the `pose_stability` check warns",
        _QUALITY.max_jitter_px,
        "number",
        0.0,
        assets=("clean_landmarks",),
    ),
    Setting(
        "BODYSCRIPT_QUALITY_MAX_FILLED",
        "quality.max_filled",
        "run",
        "above this fraction of filled person-frames, the `pose_stability` check warns",
        _QUALITY.max_filled,
        "number",
        0.0,
        1.0,
        assets=("clean_landmarks",),
    ),
    Setting(
        "BODYSCRIPT_MAX_BYTES",
        "limits.max_bytes",
        "deployment",
        "input limit: bytes of a video, checked before and while copying it",
        _LIMITS.max_bytes,
        "integer",
        1,
        note="8 GiB",
    ),
    Setting(
        "BODYSCRIPT_MAX_DURATION_S",
        "limits.max_duration_s",
        "deployment",
        "input limit: seconds of a video, checked on its header before decoding",
        _LIMITS.max_duration_s,
        "number",
        1.0,
        note="2 h",
    ),
    Setting(
        "BODYSCRIPT_MAX_PIXELS",
        "limits.max_pixels",
        "deployment",
        "input limit: pixels of one frame, checked on the header and on every decoded frame",
        _LIMITS.max_pixels,
        "integer",
        1,
        note="8192²",
    ),
    Setting(
        "BODYSCRIPT_MAX_FRAMES",
        "limits.max_frames",
        "deployment",
        "input limit: frames of a video, checked while decoding",
        _LIMITS.max_frames,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_MAX_TOTAL_PIXELS",
        "limits.max_total_pixels",
        "deployment",
        "input limit: pixels decoded over the whole video, estimated from the header and counted while decoding",
        _LIMITS.max_total_pixels,
        "integer",
        1,
        note="1080p × 60 fps × 2 h",
    ),
    Setting(
        "BODYSCRIPT_SENSOR_INTERVAL_S",
        "sensor_interval_s",
        "deployment",
        "seconds between drop-zone scans; the daemon looks at sensors every 5 s, so the default 4 scans at each look "
        "(5 would skip every other look that comes a moment early: 10 s between scans)",
        4,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_SCAN_MAX_PAGES",
        "scan_max_pages",
        "deployment",
        "listing pages per drop-zone scan",
        20,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_SCAN_PAGE_SIZE",
        "scan_page_size",
        "deployment",
        "objects per listing page (S3's maximum is 1000)",
        1000,
        "integer",
        1,
        1000,
    ),
    Setting(
        "BODYSCRIPT_SCAN_MAX_NEW",
        "scan_max_new",
        "deployment",
        "new videos taken per scan (the rest wait for the next)",
        100,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_SETTLE_S",
        "settle_s",
        "deployment",
        "a local file this many seconds old is taken; a younger one once two listings agree on its size and mtime",
        2.0,
        "number",
        0.0,
    ),
    Setting(
        "BODYSCRIPT_QUOTA_PER_HOUR",
        "quota_per_hour",
        "deployment",
        "new videos taken per top-level drop folder per hour",
        0,
        "integer",
        0,
        note="off",
    ),
    Setting(
        "BODYSCRIPT_QUOTA_GLOBAL_PER_HOUR",
        "quota_global_per_hour",
        "deployment",
        "new videos taken from the whole drop zone per hour",
        0,
        "integer",
        0,
        note="off",
    ),
    Setting(
        "BODYSCRIPT_PRIORITY_TIERS",
        "priority_tiers",
        "deployment",
        "the run-queue tier of each top-level drop folder's videos: `premium` runs start before `standard` ones, "
        "`batch` runs after them, and reprocessing runs after every tier (`dagster/priority` "
        f"{', '.join(str(priority) for priority in TIER_PRIORITIES.values())}, reprocessing {REPROCESS_PRIORITY}; "
        "tag `bodyscript/tier`)",
        (),
        read=_priority_tiers,
        accepts=_TIERS_ACCEPTS,
        shown=f"none: every folder `{DEFAULT_TIER}`",
    ),
    Setting(
        "BODYSCRIPT_RETENTION_DAYS",
        "retention_days",
        "deployment",
        "derived artifacts older than this many days are removed by retention",
        30.0,
        "number",
        1.0,
    ),
    Setting(
        "BODYSCRIPT_RETENTION_MODE",
        "retention_mode",
        "deployment",
        "what retention does with old derived artifacts: `delete`, or `archive` (move under `<lake>/archive/`)",
        "delete",
        "choice",
        choices=("delete", "archive"),
    ),
    Setting(
        "BODYSCRIPT_RETENTION_DRY_RUN",
        "retention_dry_run",
        "deployment",
        "retention only reports what it would remove",
        False,
        "flag",
    ),
    Setting(
        "BODYSCRIPT_RUN_RETENTION_DAYS",
        "run_retention_days",
        "deployment",
        "Dagster run records older than this many days are purged",
        90.0,
        "number",
        1.0,
    ),
    Setting(
        "BODYSCRIPT_RETENTION_PARTITION_BATCH",
        "retention_partition_batch",
        "deployment",
        "most video partitions one `retention` run removes from the `videos` partition set (videos processed and "
        "untouched for `BODYSCRIPT_RETENTION_DAYS`; their lineage stays in the lake); the rest go in the next runs",
        5000,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_COMPACTION_MIN_VIDEOS",
        "compaction_min_videos",
        "deployment",
        "the hourly `lake_compaction` merges the lake's per-video Parquet files into large files sorted by video once "
        "at least this many videos have per-video files; `0` never compacts",
        100,
        "integer",
        0,
    ),
    Setting(
        "BODYSCRIPT_REPROCESS",
        "reprocess",
        "deployment",
        "`true`: the `reprocess_sensor` re-materializes what a changed version made stale (model, settings, code), "
        "exactly the affected assets; `false`: it stays stopped, for operators who review first (the UI still marks "
        "them stale)",
        True,
        "flag",
    ),
    Setting(
        "BODYSCRIPT_REPROCESS_MAX_RUNS",
        "reprocess_max_runs",
        "deployment",
        "most reprocessing runs the sensor requests per tick, and most of them queued or running at once",
        10,
        "integer",
        1,
    ),
    Setting(
        "BODYSCRIPT_REPROCESS_INTERVAL_S",
        "reprocess_interval_s",
        "deployment",
        "seconds between the reprocessing sensor's ticks",
        30,
        "integer",
        5,
    ),
    Setting(
        "BODYSCRIPT_PRESIGN_EXPIRY_S",
        "presign_expiry_s",
        "deployment",
        "lifetime of presigned download links, in seconds",
        86400,
        "integer",
        1,
        7 * 86400,
    ),
    Setting(
        "BODYSCRIPT_S3_PUBLIC_ENDPOINT",
        "s3_public_endpoint",
        "deployment",
        "the S3 endpoint browsers reach: download links are presigned for it (SigV4 signs the host). Required on "
        "an S3 lake when `AWS_ENDPOINT_URL` is plain HTTP elsewhere (`http://minio:9000`). A link never outlives "
        "the credentials that signed it: with temporary ones (IRSA, assumed roles, `AWS_CREDENTIAL_EXPIRATION`) "
        "it expires with them, with a session token of unknown expiry after one hour at most",
        None,  # None: AWS's own endpoint
        read=_public_endpoint,
        accepts="an `https://` URL, or `http://` on a loopback host only (`localhost`, `127.0.0.1`, `::1`)",
        shown="`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (unset: AWS's own)",
    ),
    Setting(
        "BODYSCRIPT_STEP_RECORDS_URI",
        "step_records_uri",
        "deployment",
        "under `k8s` on an S3 lake: where steps pass records (pickles) to the next pod, outside the lake so that "
        "only the pipeline may write them (`StepRecordsOnlyThePipeline` in `deploy/iam-policy.json`); "
        "`step_records_cleanup_sensor` deletes a run's records when it (and any retry of it) ends",
        "",  # "": step records stay under DAGSTER_HOME (no k8s executor on an S3 lake)
        read=_step_records,
        accepts="an `s3://bucket/prefix` URI outside the lake and the drop zone",
        shown="on an S3 lake `s3://<lake bucket>/<lake prefix>-dagster-io`, else none (under `DAGSTER_HOME`)",
    ),
)
_GROUPS = {"limits": Limits, "quality": QualityThresholds}


@dataclass(frozen=True)
class Settings:
    """The settings of a deployment; each attribute is declared (variable, default, bounds) in :data:`SETTINGS`."""

    home: Path
    lake_uri: str
    drop_uri: str
    model_variant: str
    model_source: str
    model_sha256: str
    min_visibility: float
    dagster_home: Path
    pose_workers: int
    pose_delegate: str
    cost_cpu_pod_hour: float
    cost_gpu_pod_hour: float
    executor: str
    k8s_gpu_node_selector: str
    k8s_cpu_node_selector: str
    k8s_gpu_taint: str
    limits: Limits
    num_poses: int
    pose_tiles: int  # 0: automatic
    track_max_gap: int
    fill_max_gap: int
    smooth_cutoff_hz: float
    metrics_landmarks: str
    overlay_max_resolution: int
    blur_faces: bool
    pose_range_frames: int
    pose_service_idle_s: float
    quality: QualityThresholds
    sensor_interval_s: int
    scan_max_pages: int
    scan_page_size: int
    scan_max_new: int
    settle_s: float
    quota_per_hour: int
    quota_global_per_hour: int
    retention_days: float
    retention_mode: str
    retention_dry_run: bool
    run_retention_days: float
    retention_partition_batch: int
    compaction_min_videos: int  # 0: never
    priority_tiers: PriorityTiers  # (top-level drop folder, tier); folders not named are DEFAULT_TIER
    reprocess: bool
    reprocess_max_runs: int
    reprocess_interval_s: int
    presign_expiry_s: int
    s3_public_endpoint: str | None  # None: AWS's own endpoint
    step_records_uri: str  # "": step records stay under DAGSTER_HOME (no k8s executor on an S3 lake)

    @property
    def step_records_on_s3(self) -> bool:
        """Steps run in pods that share nothing but S3: their records (pickles) go to ``step_records_uri``."""
        return self.executor == "k8s" and self.lake_uri.startswith("s3://")

    @property
    def pose_service(self) -> PoseService | None:
        """The warm pose service shared by runs on this machine; none in pods, which each run one step."""
        if self.executor == "k8s" or self.pose_service_idle_s <= 0:
            return None
        return PoseService(self.home, self.pose_service_idle_s)

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "models"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of this environment. Fails closed: any invalid or contradictory value stops start-up
        with one line naming the variable and what it accepts, never a silent default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            values[setting.attr] = setting.value(env, values)
        fields = {attr: value for attr, value in values.items() if "." not in attr}
        for group, kind in _GROUPS.items():
            members = {attr.removeprefix(group + "."): v for attr, v in values.items() if attr.startswith(group + ".")}
            fields[group] = kind(**members)
        return cls(**fields)


def settings_table() -> str:
    """The declarations as the markdown table of the README's "Settings" section."""
    rows = [
        "| variable | default | accepts | scope | meaning |",
        "|---|---|---|---|---|",
        *(f"| `{s.env}` | {s.shown_default()} | {s.accepted()} | {s.scope} | {s.doc} |" for s in SETTINGS),
    ]
    return "\n".join(rows)
