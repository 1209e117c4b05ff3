"""A fork server (bodyscript_pipeline/fork_server.py) whose requests answer how many other requests ran beside
them as they started, then wait for their caller to hang up."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from bodyscript_pipeline import fork_server


def _answer(conn: socket.socket) -> None:
    conn.sendall(f"{fork_server.running_beside}\n".encode())
    conn.recv(1)  # until the caller hangs up


if __name__ == "__main__":
    fork_server.serve(Path(sys.argv[1]), float(sys.argv[2]), _answer)
