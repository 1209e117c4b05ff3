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
| ``BODYSCRIPT_MAX_BYTES``, ``_MAX_DURATION_S``, ``_MAX_PIXELS``, ``_MAX_FRAMES`` | input limits (validation.py) |
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
| ``BODYSCRIPT_SETTLE_S``      | ``2``: a local file this old is taken; a younger one once two listings agree on it |
| ``BODYSCRIPT_RETENTION_DAYS`` | ``30``: derived artifacts older than this are removed by retention |
| ``BODYSCRIPT_RETENTION_MODE`` | ``delete``, or ``archive`` (moved under ``<lake>/archive/``) |
| ``BODYSCRIPT_RETENTION_DRY_RUN`` | ``false``: retention only reports what it would remove |
| ``BODYSCRIPT_RUN_RETENTION_DAYS`` | ``90``: Dagster run records older than this are purged |
| ``BODYSCRIPT_PRESIGN_EXPIRY_S`` | ``86400``: lifetime of presigned S3 download links in metadata |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    pose_range_frames: int = 9000
    pose_service_idle_s: float = 300.0
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    sensor_interval_s: int = 5
    scan_max_pages: int = 20
    scan_page_size: int = 1000
    scan_max_new: int = 100
    settle_s: float = 2.0
    quota_per_hour: int = 0
    retention_days: float = 30.0
    retention_mode: str = "delete"
    retention_dry_run: bool = False
    run_retention_days: float = 90.0
    presign_expiry_s: int = 86400

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
        env = os.environ if env is None else env
        home = Path(env.get("BODYSCRIPT_HOME") or ".bodyscript").expanduser().resolve()
        variant = (env.get("BODYSCRIPT_MODEL") or "full").strip().lower()
        if variant not in MODEL_VARIANTS:
            raise BodyscriptError(
                f"BODYSCRIPT_MODEL={variant!r} is not a pose model; choose one of {', '.join(MODEL_VARIANTS)}"
            )
        spec = MODEL_VARIANTS[variant]
        executor = (env.get("BODYSCRIPT_EXECUTOR") or "in_process").strip().lower()
        if executor not in EXECUTORS:
            raise BodyscriptError(f"BODYSCRIPT_EXECUTOR={executor!r}: choose one of {', '.join(EXECUTORS)}")
        delegate = (env.get("BODYSCRIPT_POSE_DELEGATE") or "cpu").strip().lower()
        if delegate not in ("cpu", "gpu"):
            raise BodyscriptError(f"BODYSCRIPT_POSE_DELEGATE={delegate!r}: choose cpu or gpu")
        mode = (env.get("BODYSCRIPT_RETENTION_MODE") or "delete").strip().lower()
        if mode not in ("delete", "archive"):
            raise BodyscriptError(f"BODYSCRIPT_RETENTION_MODE={mode!r}: choose delete or archive")
        metrics_landmarks = (env.get("BODYSCRIPT_METRICS_LANDMARKS") or "cleaned").strip().lower()
        if metrics_landmarks not in METRICS_LANDMARKS:
            raise BodyscriptError(f"BODYSCRIPT_METRICS_LANDMARKS={metrics_landmarks!r}: choose cleaned or raw")
        tiles = (env.get("BODYSCRIPT_POSE_TILES") or "auto").strip().lower()
        return cls(
            home=home,
            lake_uri=_as_uri(env.get("BODYSCRIPT_LAKE_URI") or str(home / "lake")),
            drop_uri=_as_uri(env.get("BODYSCRIPT_DROP_URI") or str(home / "drop")),
            model_variant=variant,
            model_source=env.get("BODYSCRIPT_MODEL_SOURCE") or spec.url,
            model_sha256=(env.get("BODYSCRIPT_MODEL_SHA256") or spec.sha256).lower(),
            min_visibility=_number(env, "BODYSCRIPT_MIN_VISIBILITY", 0.5),
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
            pose_workers=max(1, int(_number(env, "BODYSCRIPT_POSE_WORKERS", os.cpu_count() or 1))),
            pose_delegate=delegate,
            cost_cpu_pod_hour=_number(env, "BODYSCRIPT_COST_CPU_POD_HOUR", 0.05),
            cost_gpu_pod_hour=_number(env, "BODYSCRIPT_COST_GPU_POD_HOUR", 1.00),
            executor=executor,
            k8s_gpu_node_selector=env.get("BODYSCRIPT_K8S_GPU_NODE_SELECTOR") or "bodyscript.io/pool=gpu",
            k8s_cpu_node_selector=env.get("BODYSCRIPT_K8S_CPU_NODE_SELECTOR") or "bodyscript.io/pool=cpu",
            k8s_gpu_taint=env.get("BODYSCRIPT_K8S_GPU_TAINT") or "nvidia.com/gpu",
            limits=Limits(
                max_bytes=int(_number(env, "BODYSCRIPT_MAX_BYTES", Limits.max_bytes)),
                max_duration_s=_number(env, "BODYSCRIPT_MAX_DURATION_S", Limits.max_duration_s),
                max_pixels=int(_number(env, "BODYSCRIPT_MAX_PIXELS", Limits.max_pixels)),
                max_frames=int(_number(env, "BODYSCRIPT_MAX_FRAMES", Limits.max_frames)),
            ),
            num_poses=max(1, int(_number(env, "BODYSCRIPT_NUM_POSES", 1))),
            pose_tiles=0 if tiles == "auto" else max(1, int(_number(env, "BODYSCRIPT_POSE_TILES", 1))),
            track_max_gap=max(0, int(_number(env, "BODYSCRIPT_TRACK_MAX_GAP", 15))),
            fill_max_gap=max(0, int(_number(env, "BODYSCRIPT_FILL_MAX_GAP", 10))),
            smooth_cutoff_hz=max(0.0, _number(env, "BODYSCRIPT_SMOOTH_CUTOFF_HZ", 6.0)),
            metrics_landmarks=metrics_landmarks,
            overlay_max_resolution=max(0, int(_number(env, "BODYSCRIPT_OVERLAY_MAX_RESOLUTION", 720))),
            pose_range_frames=max(1, int(_number(env, "BODYSCRIPT_POSE_RANGE_FRAMES", 9000))),
            pose_service_idle_s=max(0.0, _number(env, "BODYSCRIPT_POSE_SERVICE_IDLE_S", 300.0)),
            quality=QualityThresholds(
                min_detection_rate=_number(env, "BODYSCRIPT_QUALITY_MIN_DETECTION_RATE", 0.5),
                min_visibility=_number(env, "BODYSCRIPT_QUALITY_MIN_VISIBILITY", 0.5),
                max_jitter_px=_number(env, "BODYSCRIPT_QUALITY_MAX_JITTER_PX", 20.0),
                max_filled=_number(env, "BODYSCRIPT_QUALITY_MAX_FILLED", 0.25),
            ),
            sensor_interval_s=int(_number(env, "BODYSCRIPT_SENSOR_INTERVAL_S", 5)),
            scan_max_pages=int(_number(env, "BODYSCRIPT_SCAN_MAX_PAGES", 20)),
            scan_page_size=int(_number(env, "BODYSCRIPT_SCAN_PAGE_SIZE", 1000)),
            scan_max_new=int(_number(env, "BODYSCRIPT_SCAN_MAX_NEW", 100)),
            settle_s=_number(env, "BODYSCRIPT_SETTLE_S", 2.0),
            quota_per_hour=int(_number(env, "BODYSCRIPT_QUOTA_PER_HOUR", 0)),
            retention_days=_number(env, "BODYSCRIPT_RETENTION_DAYS", 30.0),
            retention_mode=mode,
            retention_dry_run=(env.get("BODYSCRIPT_RETENTION_DRY_RUN") or "").strip().lower() in ("1", "true", "yes"),
            run_retention_days=_number(env, "BODYSCRIPT_RUN_RETENTION_DAYS", 90.0),
            presign_expiry_s=int(_number(env, "BODYSCRIPT_PRESIGN_EXPIRY_S", 86400)),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise BodyscriptError(f"{name}={raw!r} must be a number") from None


def _as_uri(location: str) -> str:
    """Plain paths become absolute ``file://`` URIs; URIs with a scheme are kept as given."""
    if "://" in location:
        return location.rstrip("/")
    return "file://" + str(Path(location).expanduser().resolve())
