"""A warm process that forks one child per request, so each request skips starting Python and importing what
it needs, yet runs in a process of its own: requests never share state and a crash ends only its own.

The server imports what its requests need, then listens on a Unix socket (owner-only) and forks a child per
connection, which answers on the connection and exits. It is started on demand, detached (``python -m
MODULE SOCKET IDLE_S [ARGS…]``; the module calls :func:`serve`), and exits after ``idle_s`` seconds without
work, or once another server took its socket. The pose service (pose/service.py) and the warm run worker
(resources/run_worker.py) are such servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT_S = 30.0
MAX_SOCKET_PATH = 100  # bytes: AF_UNIX allows 107

# In a request's own process: how many other requests the server was running when it forked this one.
running_beside = 0


class ServerUnavailable(RuntimeError):
    """The server did not start: the caller does the work some other way."""


def socket_path(folder: Path, name: str) -> Path:
    """``folder/name``; where that would pass the length a Unix socket path may have, the user's own folder
    in the temporary directory instead, named after ``folder``."""
    path = folder / name
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    named = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"bodyscript-{os.getuid()}" / f"{named}-{name}"


def try_connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    return client


def start(path: Path, module: str, idle_s: float, *args: str, log: Path) -> Path:
    """Starts ``python -m module path idle_s args…`` unless a server listens on ``path`` already (callers may
    race: one starts it), and returns ``path`` without waiting for it."""
    for folder in {path.parent, log.parent}:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = try_connect(path)
        if probe is not None:
            probe.close()
            return path
        starting = path.with_suffix(".starting")
        if starting.exists() and time.time() - starting.stat().st_mtime < START_TIMEOUT_S:
            return path  # another caller started it a moment ago
        starting.touch()
        with log.open("ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", module, str(path), str(idle_s), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True,
            )  # fmt: skip
    return path


def connect(
    path: Path, module: str, idle_s: float, *args: str, log: Path, timeout: float = START_TIMEOUT_S
) -> socket.socket:
    """A connection to the server on ``path``, started if need be."""
    client = try_connect(path)
    if client is not None:
        return client
    try:
        start(path, module, idle_s, *args, log=log)
    except OSError as exc:
        raise ServerUnavailable(f"{module} cannot start at {path}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while (client := try_connect(path)) is None:
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"{module} did not start within {timeout:.0f} s (see {log})")
        time.sleep(0.05)
    return client


def _reap(children: set[int]) -> None:
    """Forget the children that ended."""
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)


def _owns(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except FileNotFoundError:
        return False


def serve(
    path: Path,
    idle_s: float,
    handle: Callable[[socket.socket], None],
    stale: Callable[[], bool] = lambda: False,
    with_parent: bool = False,
) -> None:
    """Listens on ``path`` and runs ``handle(connection)`` in a forked child per connection; returns after
    ``idle_s`` seconds with no child running and no connection, once ``path`` is another server's, once
    ``stale()`` says what it imported changed (it then closes the connection unanswered: the caller starts a
    new server), or, ``with_parent``, once the process that started it is gone and no child runs. Import what
    ``handle`` needs before calling this: that is the start-up each request saves. ``handle`` finds in
    ``running_beside`` how many other requests run beside its own as it starts."""
    global running_beside
    parent = os.getppid()
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
                if stale():
                    conn.close()
                    return
                _reap(children)
                pid = os.fork()
                if pid == 0:  # the request's own process
                    server.close()
                    running_beside = len(children)
                    try:
                        handle(conn)
                    finally:
                        os._exit(0)
                conn.close()
                children.add(pid)
            _reap(children)
            orphaned = with_parent and os.getppid() != parent
            if children:
                last_active = time.monotonic()
            elif time.monotonic() - last_active > idle_s or not _owns(path, mine) or orphaned:
                return
    finally:
        if _owns(path, mine):  # not a newer server's socket
            path.unlink(missing_ok=True)
        server.close()
