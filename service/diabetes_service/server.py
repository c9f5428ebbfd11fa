"""The supervisor: resolve the model once, open the sockets, run N workers, drain on SIGTERM.

The supervisor itself imports neither MLflow nor scikit-learn: resolution runs in a child process
and workers are forked before they import the model's libraries, so the whole process tree stays
small. A worker that cannot load the model exits with a dedicated status and the supervisor stops
the service with a non-zero status; a worker that dies later is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from diabetes_service import board
from diabetes_service.board import WorkerBoard
from diabetes_service.cgroup import cpu_limit
from diabetes_service.errors import EXIT_MODEL_LOAD_FAILED
from diabetes_service.resolution import announce, local_model, needs_mlflow, resolve
from diabetes_service.settings import ServiceSettings

log = logging.getLogger("diabetes_service.supervisor")

RESTART_BACKOFF_SECONDS = 1.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
ABORT_GRACE_SECONDS = 3.0


class Supervisor:
    def __init__(self, settings: ServiceSettings, sockets: list[socket.socket]) -> None:
        self.settings = settings
        self.sockets = sockets  # one per worker slot, kept open here while its worker restarts
        self.count = len(sockets)
        self.children: dict[int, int] = {}  # pid -> slot on the board
        self.board = WorkerBoard(self.count)
        self.stopping = False
        self.exit_status = 0

    def spawn(self, slot: int) -> None:
        self.board.mark(slot, False)
        # A stop signal that reached a new child before it reset its handlers would be taken by the
        # supervisor's Python handler, then dropped once SIG_DFL is in place: the worker would not
        # stop. Blocked around the fork, it waits for the child's own handling instead.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._work(slot)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.children[pid] = slot

    def _work(self, slot: int) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        board.current = (self.board, slot)
        for other in self.sockets:
            if other is not self.sockets[slot]:
                other.close()
        from diabetes_service.worker import run_worker

        try:
            run_worker(self.sockets[slot], self.settings.graceful_timeout_seconds)
            os._exit(0)
        except BaseException:
            logging.getLogger("diabetes_service").exception("worker crashed")
            os._exit(1)

    def stop(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info("received %s: draining %d workers", signal.Signals(signum).name, len(self.children))
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def start(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for slot in range(self.count):
            self.spawn(slot)

    def abort(self) -> None:
        """Stop workers that never got a model (preparation failed), without a word on stderr."""
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # They hold no model and no request; should one not stop (a model's import hanging), the
        # wait is bounded and ends with SIGKILL.
        deadline = time.monotonic() + ABORT_GRACE_SECONDS
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                self.children.pop(pid, None)
            time.sleep(0.02)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.children.pop(pid, None)

    def run(self) -> int:
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            slot = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_MODEL_LOAD_FAILED:
                self.exit_status = 1
                self.stop(signal.SIGTERM, None)
            elif not self.stopping:
                log.warning("worker %d exited with %d; starting a new one", pid, code)
                time.sleep(RESTART_BACKOFF_SECONDS)
                if slot is not None:
                    self.spawn(slot)
        return self.exit_status


def bind(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port, one per worker.

    Workers accepting from one shared socket split keep-alive connections unevenly: whichever
    wakes first takes a whole burst, and a proxy's few long-lived connections can all land on one
    worker while the others idle. With SO_REUSEPORT the kernel spreads new connections over the
    workers' own sockets by a hash of each connection's addresses.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reuse_port = count > 1 and hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    if reuse_port:
        # SO_REUSEPORT would also let this service join another one already listening on the
        # port (the same user's second `diabetes serve`, say): a plain bind first says it is taken.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0 picks a free port once; the others join it
            sock.listen(2048)
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets if reuse_port else sockets * count


def serve(settings: ServiceSettings) -> int:
    """Run the service until SIGTERM. Raises ModelLoadError / OSError before it is ever ready.

    The workers are forked first, so that they import their libraries while the model is being
    prepared; they load it as soon as the supervisor announces it.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="diabetes-serve-"))
    try:
        if not needs_mlflow(settings.model_uri):
            local_model(settings.model_uri)  # a missing path is said at once, before any fork
        workers = settings.workers or cpu_limit()
        sockets = bind(settings.host, settings.port, workers)
        (workdir / "metrics").mkdir()
        os.environ.update(
            {
                "DIABETES_PREPARED_FILE": str(workdir / "prepared.json"),
                "DIABETES_WORKERS": str(workers),
                "DIABETES_METRICS_DIR": str(workdir / "metrics"),
            }
        )
        supervisor = Supervisor(ServiceSettings(), sockets)
        supervisor.start()
        try:
            resolved = resolve(settings.model_uri, settings.tracking_uri, compile_to=workdir / "compiled")
        except BaseException:
            supervisor.abort()
            raise
        resolved = replace(
            resolved, name=settings.model_name or resolved.name, version=settings.model_version or resolved.version
        )
        announce(resolved, workdir / "prepared.json")
        if not settings.auth_enabled:
            log.warning("no API keys configured: every route is open (set DIABETES_API_KEYS to require keys)")
        log.info(
            "serving %s version %s on http://%s:%d with %d workers",
            resolved.name,
            resolved.version,
            settings.host,
            sockets[0].getsockname()[1],
            workers,
        )
        try:
            return supervisor.run()
        finally:
            for sock in set(sockets):
                sock.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
