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

import functools
import hashlib
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodyscript_pipeline import fork_server
from bodyscript_pipeline.errors import BodyscriptError

CORE = Path(__file__).resolve().parents[1]  # bodyscript_pipeline: whatever a range runs is in it
MODULE = "bodyscript_pipeline.pose.service"
START_TIMEOUT_S = fork_server.START_TIMEOUT_S
MAX_SOCKET_PATH = fork_server.MAX_SOCKET_PATH


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
    """Of the core's source as this process found it: a long-lived process keeps asking for the service of its
    code."""
    return source_digest(CORE)


def source_digest(core: Path) -> str:
    """Of every module under ``core``, not just ``pose/``: a range runs the video, overlay and lake code too."""
    digest = hashlib.sha256()
    for path in sorted(core.rglob("*.py")):
        digest.update(str(path.relative_to(core)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def socket_path(home: Path) -> Path:
    """``$BODYSCRIPT_HOME/run/pose-<code>.sock`` (or a shorter path where that is too long for a socket)."""
    return fork_server.socket_path(home / "run", f"pose-{code_digest()}.sock")


def start(home: Path, idle_s: float) -> Path:
    """Starts the service unless it runs already (one per home and code version; callers may race), and
    returns its socket path without waiting for it."""
    path = socket_path(home)
    return fork_server.start(path, MODULE, idle_s, log=path.parent / "pose-service.log")


def connect(home: Path, idle_s: float, timeout: float = START_TIMEOUT_S) -> socket.socket:
    """A connection to the service, started if need be."""
    path = socket_path(home)
    try:
        return fork_server.connect(path, MODULE, idle_s, log=path.parent / "pose-service.log", timeout=timeout)
    except (fork_server.ServerUnavailable, OSError) as exc:
        raise ServiceUnavailable(f"the pose service cannot start under {home}: {exc}") from exc


def run_remote(client: socket.socket, request: dict[str, Any], progress: Callable[[int], None]) -> dict[str, Any]:
    """Sends one range to the service; calls ``progress(frames)`` as it reports; returns its result record once
    the range's process has ended (its connection closes as it exits), so that a request sent next (a video's
    range right after its probe) is not counted as running beside it. Raises ``ServiceError`` if the range's
    process died, or the error it reported."""
    with client, client.makefile("rwb") as stream:
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        for line in stream:
            kind, _, body = line.decode().rstrip("\n").partition(" ")
            if kind == "p":
                progress(int(body))
            elif kind == "ok":
                stream.read()
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
        result = pose_ranges.run_request(request, fork_server.running_beside)
        send("ok", json.dumps(result))
    except BrokenPipeError:
        return
    except BodyscriptError as exc:
        send("user-error", str(exc).replace("\n", " "))
    except Exception as exc:
        send("error", f"{type(exc).__name__}: {exc}".replace("\n", " "))


def serve(path: Path, idle_s: float) -> None:
    # Import everything a range needs once, before any fork: this is the start-up the service saves.
    from bodyscript_pipeline.pose import ranges as pose_ranges  # noqa: F401
    from bodyscript_pipeline.pose.estimator import preload

    preload()
    fork_server.serve(path, idle_s, _serve_range)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
