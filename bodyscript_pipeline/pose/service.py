"""A warm pose worker shared by every run on this machine, so short videos do not each pay for starting
Python, importing MediaPipe and OpenCV, and loading the model.

The service is one long-lived process that has imported everything pose inference needs and then listens on
a Unix socket under ``$BODYSCRIPT_HOME/run`` (owner-only). Each request is one frame range of one video
(``pose_ranges.run_range``): the service forks a child for it, which runs the range and reports progress and
its result as JSON lines on the connection, then exits. So ranges of different videos never share state, a
crash ends only its own range (the caller's step fails and is retried), and the service itself stays
small. A child whose caller went away stops at its next progress report.

The service is started on demand, detached, and exits after ``idle_s`` seconds without a request. Its
socket name carries a digest of this package's source, so code changes never reach a stale service.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodyscript_pipeline.errors import BodyscriptError

PACKAGE = Path(__file__).resolve().parent
START_TIMEOUT_S = 30.0
MAX_SOCKET_PATH = 100  # bytes: AF_UNIX allows 107


@dataclass(frozen=True)
class PoseService:
    """Where the service lives (``$BODYSCRIPT_HOME``) and how long it waits for work before exiting."""

    home: Path
    idle_s: float


class ServiceError(RuntimeError):
    """The service could not run a range (it crashed or went away): a transient fault, retried by the step."""


class ServiceUnavailable(ServiceError):
    """The service did not start: the caller runs its ranges in workers of its own instead."""


@functools.cache
def code_digest() -> str:
    """Of the source this process imported: a long-lived process keeps asking for the service of its code."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def socket_path(home: Path) -> Path:
    """``$BODYSCRIPT_HOME/run/pose-<code>.sock``; under a deep home, where that would pass the length a Unix
    socket path may have, the user's own folder in the temporary directory instead, named after the home."""
    path = home / "run" / f"pose-{code_digest()}.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    named = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"bodyscript-{os.getuid()}" / f"{named}-{path.name}"


def _connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    return client


def start(home: Path, idle_s: float) -> Path:
    """Starts the service unless it runs already (one per home and code version; callers may race), and
    returns its socket path without waiting for it."""
    path = socket_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (path.parent / "pose.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = _connect(path)
        if probe is not None:
            probe.close()
            return path
        starting = path.with_suffix(".starting")
        if starting.exists() and time.time() - starting.stat().st_mtime < START_TIMEOUT_S:
            return path  # another caller started it a moment ago
        starting.touch()
        with (path.parent / "pose-service.log").open("ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "bodyscript_pipeline.pose.service", str(path), str(idle_s)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            )  # fmt: skip
    return path


def connect(home: Path, idle_s: float, timeout: float = START_TIMEOUT_S) -> socket.socket:
    """A connection to the service, started if need be."""
    client = _connect(socket_path(home))
    if client is not None:
        return client
    try:
        path = start(home, idle_s)
    except OSError as exc:
        raise ServiceUnavailable(f"the pose service cannot start under {home}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while (client := _connect(path)) is None:
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"the pose service did not start within {timeout:.0f} s (see {path.parent})")
        time.sleep(0.05)
    return client


def run_remote(client: socket.socket, request: dict[str, Any], progress: Callable[[int], None]) -> dict[str, Any]:
    """Sends one range to the service; calls ``progress(frames)`` as it reports; returns its result record.
    Raises ``ServiceError`` if the range's process died, or the error it reported."""
    with client, client.makefile("rwb") as stream:
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        for line in stream:
            kind, _, body = line.decode().rstrip("\n").partition(" ")
            if kind == "p":
                progress(int(body))
            elif kind == "ok":
                return dict(json.loads(body))
            elif kind == "user-error":
                raise BodyscriptError(body)
            elif kind == "error":
                raise ServiceError(f"pose range failed in the pose service: {body}")
    raise ServiceError("the pose service's worker for this range ended without a result (killed?)")


# --- the service process ---------------------------------------------------------------------------


def _serve_range(conn: socket.socket) -> None:
    """In the forked child: run one range and report on ``conn``."""
    from bodyscript_pipeline.pose import ranges as pose_ranges

    stream = conn.makefile("rwb")

    def send(kind: str, body: str) -> None:
        stream.write(f"{kind} {body}\n".encode())
        stream.flush()  # raises BrokenPipeError once the caller is gone: the range stops there

    try:
        request = json.loads(stream.readline())
        pose_ranges.set_progress_reporter(lambda frames: send("p", str(frames)))
        result = pose_ranges.run_request(request)
        send("ok", json.dumps(result))
    except BrokenPipeError:
        return
    except BodyscriptError as exc:
        send("user-error", str(exc).replace("\n", " "))
    except Exception as exc:
        send("error", f"{type(exc).__name__}: {exc}".replace("\n", " "))


def _owns(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except FileNotFoundError:
        return False


def serve(path: Path, idle_s: float) -> None:
    # Import everything a range needs once, before any fork: this is the start-up the service saves.
    from bodyscript_pipeline.pose import ranges as pose_ranges  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(f".{os.getpid()}")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(temporary))
    temporary.chmod(0o600)
    server.listen(64)
    temporary.replace(path)  # appears complete: callers never connect to a half-made socket
    mine = path.stat().st_ino
    with contextlib.suppress(FileNotFoundError):
        path.with_suffix(".starting").unlink()
    children: set[int] = set()
    last_active = time.monotonic()
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    try:
        while True:
            if selector.select(timeout=1.0):
                conn, _ = server.accept()
                pid = os.fork()
                if pid == 0:  # the range's own process
                    server.close()
                    try:
                        _serve_range(conn)
                    finally:
                        os._exit(0)
                conn.close()
                children.add(pid)
            for pid in list(children):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.discard(pid)
            if children:
                last_active = time.monotonic()
            elif time.monotonic() - last_active > idle_s or not _owns(path, mine):
                return
    finally:
        if _owns(path, mine):  # not a newer service's socket
            path.unlink(missing_ok=True)
        server.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
