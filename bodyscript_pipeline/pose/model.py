"""The pose model: the MediaPipe Pose Landmarker bundles the project knows (official URLs and SHA-256), fetched
into the cache under ``BODYSCRIPT_HOME`` on first use and hash-checked."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from bodyscript_pipeline.errors import ModelError

if TYPE_CHECKING:
    from bodyscript_pipeline.settings import Settings

_READ_BYTES = 1 << 20

_BASE = "https://storage.googleapis.com/mediapipe-models/pose_landmarker"


@dataclass(frozen=True)
class ModelSpec:
    variant: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"pose_landmarker_{self.variant}.task"


MODEL_VARIANTS: dict[str, ModelSpec] = {
    spec.variant: spec
    for spec in (
        ModelSpec(
            "lite",
            f"{_BASE}/pose_landmarker_lite/float16/latest/pose_landmarker_lite.task",
            "59929e1d1ee95287735ddd833b19cf4ac46d29bc7afddbbf6753c459690d574a",
        ),
        ModelSpec(
            "full",
            f"{_BASE}/pose_landmarker_full/float16/latest/pose_landmarker_full.task",
            "4eaa5eb7a98365221087693fcc286334cf0858e2eb6e15b506aa4a7ecdcec4ad",
        ),
        ModelSpec(
            "heavy",
            f"{_BASE}/pose_landmarker_heavy/float16/latest/pose_landmarker_heavy.task",
            "64437af838a65d18e5ba7a0d39b465540069bc8aae8308de3e318aad31fcbc7b",
        ),
    )
}


@dataclass(frozen=True)
class ModelFile:
    variant: str
    path: Path
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def ensure_model(settings: Settings) -> ModelFile:
    """Return the cached model, fetching it from ``settings.model_source`` when missing or corrupt.

    The cache file is only ever replaced by a fully downloaded file whose hash matched, so a
    concurrent reader never sees a partial model.
    """
    spec = MODEL_VARIANTS[settings.model_variant]
    target = settings.model_cache_dir / spec.filename
    if target.is_file() and sha256_of(target) == settings.model_sha256:
        return ModelFile(spec.variant, target, settings.model_sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_source(settings.model_source, out)
        actual = sha256_of(tmp)
        if actual != settings.model_sha256:
            raise ModelError(
                f"pose model from {settings.model_source} has SHA-256 {actual}, expected "
                f"{settings.model_sha256} ({spec.variant}); set BODYSCRIPT_MODEL_SOURCE to the official file"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return ModelFile(spec.variant, target, actual)


def _copy_source(source: str, out: object) -> None:
    parsed = urlparse(source)
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310 - scheme checked
                shutil.copyfileobj(response, out)
        elif parsed.scheme in ("", "file"):
            local = Path(parsed.path if parsed.scheme else source).expanduser()
            with local.open("rb") as handle:
                shutil.copyfileobj(handle, out)
        else:
            raise ModelError(f"BODYSCRIPT_MODEL_SOURCE={source!r}: only paths, file://, http:// and https:// work")
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ModelError(
            f"cannot fetch the pose model from {source}: {reason}; set BODYSCRIPT_MODEL_SOURCE to a "
            "reachable path or URL of the model file"
        ) from None
