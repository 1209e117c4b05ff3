"""The local run launcher (dagster.yaml ``run_launcher``): each run in a process forked from a warm run worker
that has imported Dagster and the code location already.

Dagster's own launcher asks the code server to spawn a fresh Python per run, which imports Dagster and the code
location again: about 3 s and as many core-seconds per run, more than a short clip's steps cost. Here one
worker per code location and environment (bodyscript_pipeline/fork_server.py) forks a child per run, which
executes it exactly as ``dagster api execute_run`` would. Runs stay one process each: a crash ends only its run
(run monitoring sees the process gone and fails the run, which run retries then retry), termination interrupts
that process alone, and every event, log and materialization is Dagster's own.

The worker serves only runs of its own code: it watches the source files it imported and, once one changed
(a reload in the UI), leaves; the next launch starts a fresh worker. It also leaves with the process that
started it (the daemon), or after ``idle_seconds`` without a run. Runs of another interpreter or a code
location that is not a module, and any launch the worker cannot take, go through Dagster's launcher unchanged.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.origin import JobPythonOrigin
from dagster._serdes import ConfigurableClassData, serialize_value

from bodyscript_pipeline import fork_server

MODULE = "resources.run_worker"
RUN_WORKER_TAG = "bodyscript/run_worker"  # {"pid", "host", "start"}: the process running the run
IDLE_S = 3600.0
ATTEMPTS = 3
KILL_WAIT_S = 10.0


class WarmRunLauncher(DefaultRunLauncher):
    """Launches each run in a process forked from a warm run worker (module docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, idle_seconds: float = IDLE_S) -> None:
        super().__init__(inst_data=inst_data)
        self.idle_seconds = idle_seconds

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "idle_seconds": dg.Field(
                float, is_required=False, default_value=IDLE_S, description="The worker leaves after this long idle."
            )
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        target = worker_target(run.job_code_origin)
        if target is None:
            super().launch_run(context)
            return
        try:
            worker = self.start_in_worker(run.run_id, *target)
        except (fork_server.ServerUnavailable, OSError) as exc:
            self._instance.report_engine_event(
                f"The warm run worker could not take this run ({exc}); launching it through the code server.",
                run,
                cls=self.__class__,
            )
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {RUN_WORKER_TAG: json.dumps(worker)})
        self._run_ids.add(run.run_id)

    def start_in_worker(self, run_id: str, module: str, working_directory: str) -> dict[str, Any]:
        """Hands the run to the worker of this code location (started if need be); its process's identity."""
        folder = Path(self._instance.root_directory) / "run-worker"
        path = fork_server.socket_path(folder, f"{worker_digest(module, working_directory)}.sock")
        request = json.dumps({"run_id": run_id, "instance_ref": serialize_value(self._instance.get_ref())})
        root = self._instance.root_directory
        for _ in range(ATTEMPTS):
            client = fork_server.connect(
                path, MODULE, self.idle_seconds, module, working_directory, root, log=folder / "run-worker.log"
            )
            try:
                with client, client.makefile("rwb") as stream:
                    stream.write(request.encode() + b"\n")
                    stream.flush()
                    answer = stream.readline().decode()
            except (ConnectionResetError, BrokenPipeError):
                answer = ""
            if answer.startswith("started "):
                return dict(json.loads(answer.removeprefix("started ")))
            time.sleep(0.1)  # a worker of older code closed the connection and left: the next one is fresh
        raise fork_server.ServerUnavailable(f"the run worker at {path} did not take the run")

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """Whether the run's process lives. Runs this launcher cannot see (launched through the code server, or
        from another host) count as running: run monitoring fails a run on any other answer."""
        worker = worker_of(run)
        if worker is None or worker["host"] != socket.gethostname() or is_running(worker):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {worker['pid']}) is gone")

    def terminate(self, run_id: str) -> bool:
        """Kills the run's process group (the run and any processes it started) and marks the run canceled.
        Not Dagster's interrupt: the in-process executor turns an interrupt inside a step with a retry policy into
        a retry of that step, so the run would go on."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        worker = worker_of(run)
        if worker is None:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        if worker["host"] != socket.gethostname() or not is_running(worker):
            self._instance.report_engine_event(
                f"The run's process (pid {worker['pid']}) is not running here.", run, cls=self.__class__
            )
            return False
        os.killpg(worker["pid"], signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_S
        while is_running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._instance.report_run_canceled(run, message=f"Run terminated: its process (pid {worker['pid']}) killed.")
        return True


def worker_target(origin: JobPythonOrigin | None) -> tuple[str, str] | None:
    """(module, working directory) of a code location the worker can load in this interpreter, or None."""
    if origin is None or origin.executable_path != sys.executable:
        return None
    pointer = origin.repository_origin.code_pointer
    if not isinstance(pointer, ModuleCodePointer):
        return None
    return pointer.module, pointer.working_directory or ""


def worker_digest(module: str, working_directory: str) -> str:
    """One worker per interpreter, code location and environment: a run never executes with settings other
    than those its launcher's environment gives (the code server's, under ``dagster dev``)."""
    identity = [sys.executable, module, working_directory, sorted(os.environ.items())]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def worker_of(run: dg.DagsterRun) -> dict[str, Any] | None:
    tag = run.tags.get(RUN_WORKER_TAG)
    return dict(json.loads(tag)) if tag else None


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot), None when it is gone or a zombie: with the pid, this
    names one process, whatever pids the system reuses."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def is_running(worker: Mapping[str, Any]) -> bool:
    return _start_ticks(int(worker["pid"])) == worker["start"]


# --- the worker process ----------------------------------------------------------------------------


def _serve_run(conn: socket.socket) -> None:
    """In the forked child: say who runs the run, then execute it as ``dagster api execute_run`` does."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    os.setpgid(0, 0)  # a group of its own: terminating the run ends what it started, never its neighbours
    with conn, conn.makefile("rwb") as stream:
        request = json.loads(stream.readline())
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_ticks(os.getpid())}
        stream.write(f"started {json.dumps(me)}\n".encode())
        stream.flush()
    try:
        with capture_interrupts():
            ref = deserialize_value(request["instance_ref"], InstanceRef)
            with dg.DagsterInstance.from_ref(ref) as instance:
                _execute_run_command_body(request["run_id"], instance, lambda _: None, set_exit_code_on_failure=False)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _sources() -> dict[str, int]:
    """Modification times of the source files this process imported from outside the interpreter's own
    folders: the code location and the project (editable installs included)."""
    own = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    stamps = {}
    for file in files:
        if file and file.endswith(".py") and not file.startswith(own):
            try:
                stamps[file] = Path(file).stat().st_mtime_ns
            except OSError:
                continue
    return stamps


def _changed(stamps: Mapping[str, int]) -> bool:
    for file, stamp in stamps.items():
        try:
            if Path(file).stat().st_mtime_ns != stamp:
                return True
        except OSError:
            return True
    return False


def serve(path: Path, idle_s: float, module: str, working_directory: str, instance_root: str) -> None:
    """Imports Dagster, its run execution and the code location, and opens the instance at ``instance_root``
    once (loading its storage and schema checks is most of a run process's own start-up otherwise), then forks
    a process per run."""
    if working_directory:
        os.chdir(working_directory)
        sys.path.insert(0, working_directory)
    import dagster._cli.api
    import dagster._core.execution.api  # noqa: F401

    importlib.import_module(module)
    with dg.DagsterInstance.from_config(instance_root) as instance:
        instance.get_runs(limit=1)  # nothing stays open: each run's process opens the instance itself
    stamps = _sources()
    # The worker lives as long as the daemon that launches runs (`make dev`), so a drop after a quiet hour
    # still finds it warm; idle_s bounds it where that daemon keeps running unused.
    fork_server.serve(path, idle_s, _serve_run, stale=lambda: _changed(stamps), with_parent=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
