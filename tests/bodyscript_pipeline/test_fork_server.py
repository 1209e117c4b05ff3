"""The fork server tells each request how many others run beside it: the pose service's ranges of a burst
decide from it whether cores are left for threads of their own."""

from __future__ import annotations

import socket
from pathlib import Path

from bodyscript_pipeline import fork_server

MODULE = "tests.support.beside_server"


def test_a_request_knows_how_many_requests_run_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "beside.sock"

    def ask() -> tuple[socket.socket, int]:
        client = fork_server.connect(path, MODULE, 5.0, log=tmp_path / "beside.log")
        line = b""
        while not line.endswith(b"\n"):
            line += client.recv(16)
        return client, int(line)

    def hang_up(client: socket.socket) -> None:
        """Ends the request and waits until its process has closed the connection, as it exits."""
        client.shutdown(socket.SHUT_WR)
        assert client.recv(16) == b""
        client.close()

    first, alone = ask()
    second, beside_one = ask()
    third, beside_two = ask()
    assert (alone, beside_one, beside_two) == (0, 1, 2)
    hang_up(first)
    fourth, after_one_ended = ask()
    assert after_one_ended == 2, "the ended request no longer counts; the second, third and now fourth do"
    for client in (second, third, fourth):
        hang_up(client)
    last, after_all_ended = ask()
    assert after_all_ended == 0
    hang_up(last)
