"""Settings read from environment variables, with defaults that work on a laptop.

| variable                   | default                                   |
|----------------------------|-------------------------------------------|
| ``BODYSCRIPT_HOME``        | ``./.bodyscript`` (root of all local state) |
| ``BODYSCRIPT_LAKE_URI``    | ``file://$BODYSCRIPT_HOME/lake``          |
| ``BODYSCRIPT_DROP_URI``    | ``file://$BODYSCRIPT_HOME/drop``          |
| ``BODYSCRIPT_MODEL``       | ``full`` (``lite``, ``full`` or ``heavy``)  |
| ``BODYSCRIPT_MODEL_SOURCE``| the official MediaPipe URL of that model  |
| ``BODYSCRIPT_MODEL_SHA256``| the official hash of that model           |
| ``BODYSCRIPT_MIN_VISIBILITY`` | ``0.5`` (landmarks below are not drawn or measured) |
| ``BODYSCRIPT_OVERLAY_MAX_RESOLUTION`` | ``720``: the overlay's short side at most (720p); ``0``: the source's |
| ``BODYSCRIPT_BLUR_FACES``  | ``true``: every person's head is blurred in overlays and thumbnails |
| ``BODYSCRIPT_MAX_BYTES``, ``_MAX_DURATION_S``, ``_MAX_PIXELS``, ``_MAX_FRAMES``, ``_MAX_TOTAL_PIXELS`` | limits |
| ``BODYSCRIPT_EXECUTOR``     | ``in_process`` (``multiprocess``: a process per step, or ``k8s`` in a cluster) |
| ``BODYSCRIPT_POSE_DELEGATE`` | ``cpu``, or ``gpu`` (falls back to CPU with a warning) |
| ``BODYSCRIPT_K8S_GPU_NODE_SELECTOR``, ``_CPU_NODE_SELECTOR``, ``_GPU_TAINT`` | pools, see k8s_pods.py |
| ``BODYSCRIPT_COST_CPU_POD_HOUR``, ``BODYSCRIPT_COST_GPU_POD_HOUR`` | ``0.05``, ``1.00``: prices for cost estimates |
| ``BODYSCRIPT_POSE_WORKERS`` | the number of cores: parallel frame ranges of pose inference per video |
| ``BODYSCRIPT_POSE_SERVICE_IDLE_S`` | ``300``: the warm pose service exits after this idle time; ``0``: none |
| ``BODYSCRIPT_POSE_RANGE_FRAMES`` | ``9000``: under ``k8s``, the most frames of one pose step (pod) |
| ``BODYSCRIPT_NUM_POSES``    | ``1``: most people found per frame; above 1, wide frames are tiled (pose.py) |
| ``BODYSCRIPT_POSE_TILES``   | ``auto``, or a number of overlapping tiles along the frame's long side |
| ``BODYSCRIPT_TRACK_MAX_GAP`` | ``15``: frames a person may be missing and keep their id (tracking.py) |
| ``BODYSCRIPT_FILL_MAX_GAP`` | ``10``: longest gap, in frames, the cleaned layer fills (0: none) |
| ``BODYSCRIPT_SMOOTH_CUTOFF_HZ`` | ``6``: zero-phase Butterworth cut-off of the cleaned layer (0: no smoothing) |
| ``BODYSCRIPT_METRICS_LANDMARKS`` | ``cleaned``, or ``raw``: which landmarks the metrics measure |
| ``BODYSCRIPT_QUALITY_MIN_DETECTION_RATE``, ``_MIN_VISIBILITY`` | ``0.5``, ``0.5``: below either, the check blocks |
| ``BODYSCRIPT_QUALITY_MAX_JITTER_PX``, ``_MAX_FILLED`` | ``20``, ``0.25``: above either, the warning check fails |
| ``DAGSTER_HOME``           | ``$BODYSCRIPT_HOME/dagster``              |
| ``BODYSCRIPT_SENSOR_INTERVAL_S`` | ``5``: seconds between drop-zone scans (the daemon evaluates sensors every 5 s) |
| ``BODYSCRIPT_SCAN_MAX_PAGES`` | ``20``: listing pages per scan          |
| ``BODYSCRIPT_SCAN_PAGE_SIZE`` | ``1000``: objects per listing page (S3's maximum) |
| ``BODYSCRIPT_SCAN_MAX_NEW``  | ``100``: new videos taken per scan         |
| ``BODYSCRIPT_QUOTA_PER_HOUR`` | ``0`` (off): new videos taken per top-level drop folder per hour, e.g. 10 |
| ``BODYSCRIPT_QUOTA_GLOBAL_PER_HOUR`` | ``0`` (off): new videos taken from the whole drop zone per hour |
| ``BODYSCRIPT_SETTLE_S``      | ``2``: a local file this old is taken; a younger one once two listings agree on it |
| ``BODYSCRIPT_RETENTION_DAYS`` | ``30``: derived artifacts older than this are removed by retention |
| ``BODYSCRIPT_RETENTION_MODE`` | ``delete``, or ``archive`` (moved under ``<lake>/archive/``) |
| ``BODYSCRIPT_RETENTION_DRY_RUN`` | ``false``; ``true`` (or 1, yes, on): retention only reports what it would remove |
| ``BODYSCRIPT_RUN_RETENTION_DAYS`` | ``90``: Dagster run records older than this are purged |
| ``BODYSCRIPT_PRESIGN_EXPIRY_S`` | ``86400``: lifetime of presigned S3 download links in metadata |
| ``BODYSCRIPT_S3_PUBLIC_ENDPOINT`` | ``AWS_ENDPOINT_URL[_S3]`` or AWS's own: where browsers reach S3 (links) |
| ``BODYSCRIPT_STEP_RECORDS_URI`` | ``s3://<lake bucket>/<lake prefix>-dagster-io``: step records of k8s pods |
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from bodyscript_pipeline.errors import BodyscriptError
from bodyscript_pipeline.model_catalog import MODEL_VARIANTS
from bodyscript_pipeline.pose_service import PoseService
from bodyscript_pipeline.quality import QualityThresholds
from bodyscript_pipeline.validation import Limits

EXECUTORS = ("in_process", "multiprocess", "k8s")
METRICS_LANDMARKS = ("cleaned", "raw")


@dataclass(frozen=True)
class Settings:
    home: Path
    lake_uri: str
    drop_uri: str
    model_variant: str
    model_source: str
    model_sha256: str
    min_visibility: float
    dagster_home: Path
    pose_workers: int = 1
    pose_delegate: str = "cpu"
    cost_cpu_pod_hour: float = 0.05
    cost_gpu_pod_hour: float = 1.00
    executor: str = "in_process"
    k8s_gpu_node_selector: str = "bodyscript.io/pool=gpu"
    k8s_cpu_node_selector: str = "bodyscript.io/pool=cpu"
    k8s_gpu_taint: str = "nvidia.com/gpu"
    limits: Limits = field(default_factory=Limits)
    num_poses: int = 1
    pose_tiles: int = 0  # 0: automatic
    track_max_gap: int = 15
    fill_max_gap: int = 10
    smooth_cutoff_hz: float = 6.0
    metrics_landmarks: str = "cleaned"
    overlay_max_resolution: int = 720
    blur_faces: bool = True
    pose_range_frames: int = 9000
    pose_service_idle_s: float = 300.0
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    sensor_interval_s: int = 5
    scan_max_pages: int = 20
    scan_page_size: int = 1000
    scan_max_new: int = 100
    settle_s: float = 2.0
    quota_per_hour: int = 0
    quota_global_per_hour: int = 0
    retention_days: float = 30.0
    retention_mode: str = "delete"
    retention_dry_run: bool = False
    run_retention_days: float = 90.0
    presign_expiry_s: int = 86400
    s3_public_endpoint: str | None = None  # None: AWS's own endpoint
    step_records_uri: str = ""  # "": step records stay under DAGSTER_HOME (no k8s executor on an S3 lake)

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
        home = Path(env.get("BODYSCRIPT_HOME") or ".bodyscript").expanduser().resolve()
        variant = _choice(env, "BODYSCRIPT_MODEL", tuple(MODEL_VARIANTS), "full")
        spec = MODEL_VARIANTS[variant]
        sha256 = (env.get("BODYSCRIPT_MODEL_SHA256") or spec.sha256).strip().lower()
        if not _SHA256.fullmatch(sha256):
            raise BodyscriptError(f"BODYSCRIPT_MODEL_SHA256={sha256!r}: use the model's SHA-256, 64 hex digits")
        tiles = (env.get("BODYSCRIPT_POSE_TILES") or "auto").strip().lower()
        lake_uri = _uri(env, "BODYSCRIPT_LAKE_URI", home / "lake")
        drop_uri = _uri(env, "BODYSCRIPT_DROP_URI", home / "drop")
        _apart(drop_uri, lake_uri)
        executor = _choice(env, "BODYSCRIPT_EXECUTOR", EXECUTORS, "in_process")
        return cls(
            home=home,
            lake_uri=lake_uri,
            drop_uri=drop_uri,
            model_variant=variant,
            model_source=env.get("BODYSCRIPT_MODEL_SOURCE") or spec.url,
            model_sha256=sha256,
            min_visibility=_number(env, "BODYSCRIPT_MIN_VISIBILITY", 0.5, 0.0, 1.0),
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
            pose_workers=_integer(env, "BODYSCRIPT_POSE_WORKERS", os.cpu_count() or 1, 1),
            pose_delegate=_choice(env, "BODYSCRIPT_POSE_DELEGATE", ("cpu", "gpu"), "cpu"),
            cost_cpu_pod_hour=_number(env, "BODYSCRIPT_COST_CPU_POD_HOUR", 0.05, 0.0),
            cost_gpu_pod_hour=_number(env, "BODYSCRIPT_COST_GPU_POD_HOUR", 1.00, 0.0),
            executor=executor,
            k8s_gpu_node_selector=env.get("BODYSCRIPT_K8S_GPU_NODE_SELECTOR") or "bodyscript.io/pool=gpu",
            k8s_cpu_node_selector=env.get("BODYSCRIPT_K8S_CPU_NODE_SELECTOR") or "bodyscript.io/pool=cpu",
            k8s_gpu_taint=env.get("BODYSCRIPT_K8S_GPU_TAINT") or "nvidia.com/gpu",
            limits=Limits(
                max_bytes=_integer(env, "BODYSCRIPT_MAX_BYTES", Limits.max_bytes, 1),
                max_duration_s=_number(env, "BODYSCRIPT_MAX_DURATION_S", Limits.max_duration_s, 1.0),
                max_pixels=_integer(env, "BODYSCRIPT_MAX_PIXELS", Limits.max_pixels, 1),
                max_frames=_integer(env, "BODYSCRIPT_MAX_FRAMES", Limits.max_frames, 1),
                max_total_pixels=_integer(env, "BODYSCRIPT_MAX_TOTAL_PIXELS", Limits.max_total_pixels, 1),
            ),
            num_poses=_integer(env, "BODYSCRIPT_NUM_POSES", 1, 1, 32),
            pose_tiles=0 if tiles == "auto" else _integer(env, "BODYSCRIPT_POSE_TILES", 1, 1, 16, "or auto"),
            track_max_gap=_integer(env, "BODYSCRIPT_TRACK_MAX_GAP", 15, 0),
            fill_max_gap=_integer(env, "BODYSCRIPT_FILL_MAX_GAP", 10, 0),
            smooth_cutoff_hz=_number(env, "BODYSCRIPT_SMOOTH_CUTOFF_HZ", 6.0, 0.0),
            metrics_landmarks=_choice(env, "BODYSCRIPT_METRICS_LANDMARKS", METRICS_LANDMARKS, "cleaned"),
            overlay_max_resolution=_integer(env, "BODYSCRIPT_OVERLAY_MAX_RESOLUTION", 720, 0),
            blur_faces=_flag(env, "BODYSCRIPT_BLUR_FACES", True),
            pose_range_frames=_integer(env, "BODYSCRIPT_POSE_RANGE_FRAMES", 9000, 1),
            pose_service_idle_s=_number(env, "BODYSCRIPT_POSE_SERVICE_IDLE_S", 300.0, 0.0),
            quality=QualityThresholds(
                min_detection_rate=_number(env, "BODYSCRIPT_QUALITY_MIN_DETECTION_RATE", 0.5, 0.0, 1.0),
                min_visibility=_number(env, "BODYSCRIPT_QUALITY_MIN_VISIBILITY", 0.5, 0.0, 1.0),
                max_jitter_px=_number(env, "BODYSCRIPT_QUALITY_MAX_JITTER_PX", 20.0, 0.0),
                max_filled=_number(env, "BODYSCRIPT_QUALITY_MAX_FILLED", 0.25, 0.0, 1.0),
            ),
            sensor_interval_s=_integer(env, "BODYSCRIPT_SENSOR_INTERVAL_S", 5, 1),
            scan_max_pages=_integer(env, "BODYSCRIPT_SCAN_MAX_PAGES", 20, 1),
            scan_page_size=_integer(env, "BODYSCRIPT_SCAN_PAGE_SIZE", 1000, 1, 1000),
            scan_max_new=_integer(env, "BODYSCRIPT_SCAN_MAX_NEW", 100, 1),
            settle_s=_number(env, "BODYSCRIPT_SETTLE_S", 2.0, 0.0),
            quota_per_hour=_integer(env, "BODYSCRIPT_QUOTA_PER_HOUR", 0, 0),
            quota_global_per_hour=_integer(env, "BODYSCRIPT_QUOTA_GLOBAL_PER_HOUR", 0, 0),
            retention_days=_number(env, "BODYSCRIPT_RETENTION_DAYS", 30.0, 1.0),
            retention_mode=_choice(env, "BODYSCRIPT_RETENTION_MODE", ("delete", "archive"), "delete"),
            retention_dry_run=_flag(env, "BODYSCRIPT_RETENTION_DRY_RUN", False),
            run_retention_days=_number(env, "BODYSCRIPT_RUN_RETENTION_DAYS", 90.0, 1.0),
            presign_expiry_s=_integer(env, "BODYSCRIPT_PRESIGN_EXPIRY_S", 86400, 1, 7 * 86400),
            s3_public_endpoint=_public_endpoint(env, lake_uri),
            step_records_uri=_step_records(env, lake_uri, drop_uri, executor),
        )


_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


def _number(
    env: Mapping[str, str], name: str, default: float, low: float | None = None, high: float | None = None
) -> float:
    """A number within [low, high]; unset or empty means ``default``."""
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise BodyscriptError(f"{name}={raw!r}: use a number {_bounds(low, high)}")
    return value


def _integer(
    env: Mapping[str, str], name: str, default: int, low: int, high: int | None = None, other: str = ""
) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise BodyscriptError(f"{name}={raw!r}: use a whole number {_bounds(low, high)}{' ' + other if other else ''}")
    return value


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    if low is not None:
        return f"of at least {low:g}"
    return f"of at most {high:g}" if high is not None else ""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise BodyscriptError(f"{name}={raw!r}: use true or false (also 1/0, yes/no, on/off)")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (_raw(env, name) or default).lower()
    if value not in choices:
        raise BodyscriptError(f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value


def _uri(env: Mapping[str, str], name: str, default: Path) -> str:
    """Plain paths become absolute ``file://`` URIs; ``file://`` and ``s3://`` URIs are kept as given."""
    location = _raw(env, name) or str(default)
    if "://" not in location:
        return "file://" + str(Path(location).expanduser().resolve())
    if location.startswith("file://"):
        return "file://" + str(Path(location.removeprefix("file://")).expanduser().resolve())
    if location.startswith("s3://") and location.removeprefix("s3://").strip("/"):
        return location.rstrip("/")
    raise BodyscriptError(f"{name}={location!r}: use a local path, a file:// URI or an s3://bucket/prefix URI")


def _apart(drop_uri: str, lake_uri: str) -> None:
    """The drop zone and the lake must not contain each other: the pipeline's own outputs would be ingested
    again, forever, or a drop would land among the lake's tables."""
    drop, lake = drop_uri.rstrip("/") + "/", lake_uri.rstrip("/") + "/"
    if drop.startswith(lake) or lake.startswith(drop):
        raise BodyscriptError(
            f"BODYSCRIPT_DROP_URI={drop_uri!r} and BODYSCRIPT_LAKE_URI={lake_uri!r}: neither may lie inside the "
            "other; use separate folders or prefixes"
        )


PUBLIC_ENDPOINT = "BODYSCRIPT_S3_PUBLIC_ENDPOINT"
_PUBLIC_ACCEPTS = (
    "use the https:// URL where browsers reach S3 (http:// only on a loopback host: localhost, 127.0.0.1, ::1)"
)


def _public_endpoint(env: Mapping[str, str], lake_uri: str) -> str | None:
    """Where browsers reach S3; download links are presigned for this host, as SigV4 signs the host. Unset: the
    S3 endpoint the pipeline uses (AWS's own where none is set), checked only where links are made (an S3 lake)."""
    internal = _raw(env, "AWS_ENDPOINT_URL_S3") or _raw(env, "AWS_ENDPOINT_URL")
    raw = _raw(env, PUBLIC_ENDPOINT)
    if raw is None:
        if internal is None or not lake_uri.startswith("s3://"):
            return internal
        if _browsable(urlsplit(internal)):
            return internal.rstrip("/")
        source = "AWS_ENDPOINT_URL_S3" if _raw(env, "AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
        raise BodyscriptError(
            f"{PUBLIC_ENDPOINT} is unset, so download links would point at {source}={internal!r}: {_PUBLIC_ACCEPTS}"
        )
    if not _browsable(urlsplit(raw)):
        raise BodyscriptError(f"{PUBLIC_ENDPOINT}={raw!r}: {_PUBLIC_ACCEPTS}")
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


STEP_RECORDS = "BODYSCRIPT_STEP_RECORDS_URI"


def _step_records(env: Mapping[str, str], lake_uri: str, drop_uri: str, executor: str) -> str:
    """Where step records (pickles: whoever writes them runs code in the next pod) live between pods: an S3
    prefix outside the lake, so that the lake's readers and writers cannot reach them. Unset: a sibling of the
    lake prefix, ``<lake prefix>-dagster-io``, in the lake's bucket."""
    raw = _raw(env, STEP_RECORDS)
    if raw is not None:
        if not raw.startswith("s3://"):
            raise BodyscriptError(f"{STEP_RECORDS}={raw!r}: use an s3://bucket/prefix URI outside the lake")
        uri = _uri(env, STEP_RECORDS, Path())
    elif lake_uri.startswith("s3://") and "/" in lake_uri.removeprefix("s3://"):
        uri = f"{lake_uri}-dagster-io"
    elif lake_uri.startswith("s3://") and executor == "k8s":
        raise BodyscriptError(
            f"{STEP_RECORDS} is unset and the lake is the whole bucket {lake_uri}: set it to an s3:// prefix outside "
            "the lake, e.g. s3://<another bucket>/dagster-io"
        )
    else:
        return ""
    for name, other in (("BODYSCRIPT_LAKE_URI", lake_uri), ("BODYSCRIPT_DROP_URI", drop_uri)):
        records, around = uri.rstrip("/") + "/", other.rstrip("/") + "/"
        if records.startswith(around) or around.startswith(records):
            raise BodyscriptError(f"{STEP_RECORDS}={uri!r} and {name}={other!r}: neither may lie inside the other")
    return uri
