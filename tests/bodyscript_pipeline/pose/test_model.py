"""The pose model is fetched into a fresh BODYSCRIPT_HOME on first use, from a path or URL, hash-checked."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bodyscript_pipeline.errors import ModelError
from bodyscript_pipeline.pose.model import MODEL_VARIANTS, ensure_model, sha256_of
from bodyscript_pipeline.settings import Settings

FULL = MODEL_VARIANTS["full"]


@pytest.fixture
def model_file(model_source: str) -> Path:
    path = Path(model_source.removeprefix("file://"))
    assert path.is_file(), "these tests read the official model file from a local path"
    return path


@pytest.fixture
def http_model_url(model_file: Path) -> Iterator[str]:
    """The model served over HTTP on loopback, as a user's mirror would serve it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(model_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{model_file.name}"
    finally:
        server.shutdown()
        server.server_close()


def settings_for(home: Path, source: str, **extra: str) -> Settings:
    return Settings.from_env({"BODYSCRIPT_HOME": str(home), "BODYSCRIPT_MODEL_SOURCE": source, **extra})


def test_fresh_home_fetches_model_from_path_on_first_use(tmp_path: Path, model_file: Path) -> None:
    settings = settings_for(tmp_path / "home", str(model_file))
    assert not settings.model_cache_dir.exists()
    model = ensure_model(settings)
    assert model.path == settings.model_cache_dir / "pose_landmarker_full.task"
    assert model.sha256 == FULL.sha256 == sha256_of(model.path)
    first_mtime = model.path.stat().st_mtime_ns
    again = ensure_model(settings)
    assert again.path.stat().st_mtime_ns == first_mtime, "a valid cached model is not fetched again"


def test_model_fetched_over_http(tmp_path: Path, http_model_url: str) -> None:
    model = ensure_model(settings_for(tmp_path / "home", http_model_url))
    assert sha256_of(model.path) == FULL.sha256


def test_corrupt_cache_is_replaced(tmp_path: Path, model_file: Path) -> None:
    settings = settings_for(tmp_path / "home", f"file://{model_file}")
    settings.model_cache_dir.mkdir(parents=True)
    (settings.model_cache_dir / "pose_landmarker_full.task").write_bytes(b"half a download")
    assert sha256_of(ensure_model(settings).path) == FULL.sha256


def test_wrong_model_bytes_give_one_clear_error_and_no_cache(tmp_path: Path) -> None:
    impostor = tmp_path / "pose_landmarker_full.task"
    impostor.write_bytes(b"not a model")
    settings = settings_for(tmp_path / "home", str(impostor))
    with pytest.raises(ModelError) as failure:
        ensure_model(settings)
    message = str(failure.value)
    assert "\n" not in message
    assert "SHA-256" in message and FULL.sha256 in message
    assert list(settings.model_cache_dir.iterdir()) == [], "no partial or wrong file is left in the cache"


def test_missing_model_source_gives_one_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", str(tmp_path / "nowhere.task"))
    with pytest.raises(ModelError, match="cannot fetch the pose model") as failure:
        ensure_model(settings)
    assert "\n" not in str(failure.value)


def test_unreachable_url_gives_one_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", "http://127.0.0.1:9/pose_landmarker_full.task")
    with pytest.raises(ModelError, match="BODYSCRIPT_MODEL_SOURCE"):
        ensure_model(settings)


def test_model_variant_is_configuration(tmp_path: Path) -> None:
    heavy = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_MODEL": "heavy"})
    assert heavy.model_source.endswith("/pose_landmarker_heavy.task")
    assert heavy.model_sha256 == MODEL_VARIANTS["heavy"].sha256
    lite = Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_MODEL": "lite"})
    assert lite.model_sha256 == "59929e1d1ee95287735ddd833b19cf4ac46d29bc7afddbbf6753c459690d574a"
    with pytest.raises(Exception, match="lite, full, heavy"):
        Settings.from_env({"BODYSCRIPT_HOME": str(tmp_path), "BODYSCRIPT_MODEL": "huge"})
