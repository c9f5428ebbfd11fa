"""The supervisor: prepare the model, run N workers on their own sockets, replace the ones that fail.

Why our own and not uvicorn's `Multiprocess` or gunicorn's arbiter, whose design this follows
(signals queued through a self-pipe and handled in the main loop, never in the handler; a
heartbeat per worker; a dedicated exit status for a worker that cannot boot):
- both share one listening socket between the workers, and we measured per-worker SO_REUSEPORT
  sockets at up to twice the req/s under keep-alive load (listeners.py);
- both start workers only once the app can be imported; here workers are forked before the model
  is even looked up, from a supervisor that has imported their modules, so a worker starts with
  its libraries loaded while the model is found in the cache or prepared.
What is ours is therefore tested under faults (tests/faults): a stop signal at any moment (start-up,
preparation, a restart's backoff) stops the service within the grace period; a dead worker's
socket outlives it, adopted by the live workers until its warm replacement serves it, so that no
connection queued on it is reset (listeners.py, adoption.py); a worker whose heartbeat stops
(SIGSTOP, a model call stuck on the event loop) is killed and replaced; a crash loop backs off,
and says so in the log and in /metrics.

The supervisor imports neither MLflow nor scikit-learn: preparation runs in a child process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from diabetes_service import board
from diabetes_service.board import WorkerBoard
from diabetes_service.errors import EXIT_MODEL_LOAD_FAILED, ModelLoadError
from diabetes_service.model.resolution import local_model, needs_mlflow
from diabetes_service.observability.metrics import Metrics
from diabetes_service.settings import ServiceSettings
from diabetes_service.supervisor import adoption, console, process_env
from diabetes_service.supervisor.cgroup import cpu_limit
from diabetes_service.supervisor.follow import ModelFollower
from diabetes_service.supervisor.listeners import Listeners
from diabetes_service.supervisor.restarts import RestartLog
from diabetes_service.supervisor.rollout import RolloutControl

log = logging.getLogger("diabetes_service.supervisor")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WATCHED_SIGNALS = (*STOP_SIGNALS, signal.SIGCHLD, signal.SIGHUP)  # SIGHUP: resolve the model again
TICK_SECONDS = 0.25  # how often, at most, heartbeats and due restarts are looked at
KILL_MARGIN_SECONDS = 5.0  # past the graceful timeout, workers still alive get SIGKILL
ABORT_GRACE_SECONDS = 3.0  # for workers stopped before they ever served


@dataclass
class Slot:
    pid: int | None = None
    restart_at: float | None = None  # a restart waiting out its backoff
    spawned_at: float = 0.0  # the board's beat when forked: the watch starts with the loop's first beat
    channel: socket.socket | None = None  # to the worker: sockets to adopt (adoption.py)


class Supervisor:
    def __init__(self, settings: ServiceSettings, listeners: Listeners, workdir: Path) -> None:
        self.settings = settings
        self.listeners = listeners
        self.workdir = workdir
        self.slots = [Slot() for _ in range(settings.workers or 1)]
        self.board = WorkerBoard(len(self.slots))
        metrics = Metrics(settings.metrics_dir, owner="supervisor")
        self.restarts = RestartLog(metrics)
        self.model = ModelFollower(settings, workdir, self.board, metrics)
        # A safe rollout's challenger, prepared and followed beside the model (supervisor/rollout.py).
        self.rollout = RolloutControl(settings, self.board, metrics, self.model)
        self.challenger = self.rollout.follower(workdir) if settings.challenger else None
        self.failure: str | None = None  # why the service could not serve; raised once all is stopped
        self.stop_deadline: float | None = None
        self.exit_status = 0
        self.said_ready = False  # the "where to go next" lines are printed once, when first ready
        self._wakeup_r, self._wakeup_w = os.pipe()
        # Slots whose worker ended, whose socket the live workers accept from until the slot's new
        # worker serves it: slot -> the pids of its adopters.
        self.orphans: dict[int, set[int]] = {}

    # -- signals ----------------------------------------------------------------------------

    def _watch_signals(self) -> None:
        # The handlers do nothing: the C-level handler writes each signal's number to the pipe
        # (set_wakeup_fd), and the main loop reads them in order, so none is lost or handled twice.
        for fd in (self._wakeup_r, self._wakeup_w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for signum in WATCHED_SIGNALS:
            signal.signal(signum, lambda *_: None)

    def _signals(self, timeout: float) -> list[int]:
        with contextlib.suppress(InterruptedError):
            select.select([self._wakeup_r], [], [], max(0.0, timeout))
        try:
            return list(os.read(self._wakeup_r, 4096))
        except BlockingIOError:
            return []

    # -- workers ----------------------------------------------------------------------------

    def spawn(self, index: int, *, first: bool) -> None:
        sock = self.listeners.slots[index] if first else self.listeners.for_replacement(index, self.settings.host)
        self.board.mark(index, board.COLD if first else board.AWAY)
        self.board.beat(index)
        ours, theirs = adoption.channel() if self.listeners.reuse_port else (None, None)
        # Stop signals stay blocked across the fork until the child has its own handlers: one that
        # arrived in between would otherwise run the supervisor's handler in the child.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                if ours is not None:
                    ours.close()
                self._work(index, sock, theirs, replacement=not first)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if theirs is not None:
            theirs.close()
        self.slots[index] = Slot(pid, spawned_at=self.board.last_beat(index), channel=ours)
        self.restarts.spawned(index, time.monotonic())

    def _work(self, index: int, sock: socket.socket, channel: socket.socket | None, *, replacement: bool) -> None:
        try:
            signal.set_wakeup_fd(-1)
            for signum in WATCHED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            # A SIGHUP to the whole group (a closed terminal, `kill -HUP -PGID`) is the supervisor's.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            for other in {*self.listeners.slots, self.listeners.anchor, self.listeners.grpc_anchor}:
                if other is not None and other is not sock:
                    other.close()
            for slot in self.slots:  # the other workers' channels
                if slot.channel is not None:
                    slot.channel.close()
            board.current = (self.board, index)
            from diabetes_service.supervisor.worker import run_worker

            run_worker(self.settings, sock, channel, replacement=replacement)
            os._exit(0)
        except BaseException:
            logging.getLogger("diabetes_service").exception("worker crashed")
            os._exit(1)

    def _reap(self) -> None:
        now = time.monotonic()
        for index, slot in enumerate(self.slots):
            if slot.pid is None:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = slot.pid, 0
            if pid == 0:
                continue
            self.board.mark(index, board.AWAY)
            slot.pid = None
            if slot.channel is not None:
                slot.channel.close()
                slot.channel = None
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_MODEL_LOAD_FAILED:  # the worker said why on stderr
                self.exit_status = 1
                self.begin_stop(grace=ABORT_GRACE_SECONDS)
            elif self.stop_deadline is None:
                delay = self.restarts.record(index, code, now)
                slot.restart_at = now + delay
                if self.listeners.reuse_port:
                    self.orphans.setdefault(index, set())

    def _serves(self, index: int) -> bool:
        """The slot's worker accepts from its socket: its event loop beats, and it is not draining."""
        slot = self.slots[index]
        return (
            slot.pid is not None
            and self.board.state(index) != board.AWAY
            and self.board.last_beat(index) > slot.spawned_at
        )

    def _cover_orphans(self) -> None:
        """Hand each orphaned slot's socket to every warm worker, at once (its queue is accepted, not
        reset: listeners.py); take it back once the slot's new worker serves; close it where no
        worker can take it, so that connections go to the live sockets or are refused, never wait."""
        live = {slot.pid: slot for slot in self.slots if slot.pid is not None}
        for index in list(self.orphans):
            adopters = self.orphans[index]  # pids: a dead adopter's replacement has adopted nothing
            adopters.intersection_update(live)
            if self._serves(index):
                for pid in adopters:
                    adoption.send(live[pid].channel, adoption.RELEASE, index)  # type: ignore[arg-type]
                del self.orphans[index]
                continue
            sock = self.listeners.slots[index]
            for other, slot in enumerate(self.slots):
                if sock is None or other == index or slot.pid in adopters or slot.channel is None:
                    continue
                warm = self._serves(other) and self.board.state(other) == board.WARM
                if warm and adoption.send(slot.channel, adoption.ADOPT, index, sock):
                    adopters.add(slot.pid)  # type: ignore[arg-type]
            if not adopters:
                if self.slots[index].pid is None:  # a replacement already forked keeps its copy
                    self.listeners.drop(index)
                del self.orphans[index]

    def _restart_due(self, now: float) -> None:
        for index, slot in enumerate(self.slots):
            if slot.pid is None and slot.restart_at is not None and slot.restart_at <= now:
                self.spawn(index, first=False)

    def _check_heartbeats(self, now: float) -> None:
        limit = heartbeat_limit(self.settings)
        for index, slot in enumerate(self.slots):
            if slot.pid is None or self.board.state(index) == board.AWAY:
                continue
            self.restarts.settle(index, now)
            last_beat = self.board.last_beat(index)
            if last_beat <= slot.spawned_at:  # its event loop has not started yet: imports, loading
                continue
            silent = now - last_beat
            if silent > limit:
                log.error("worker %d (slot %d) sent no heartbeat for %.1fs: killing it", slot.pid, index, silent)
                self.restarts.hung(index)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    # -- the service ------------------------------------------------------------------------

    def begin_stop(self, signum: int | None = None, *, grace: float | None = None) -> None:
        """SIGTERM every worker; past `grace` (default: the graceful timeout plus a margin), SIGKILL."""
        if self.stop_deadline is None:
            if signum is not None:
                log.info("received %s: draining %d workers", signal.Signals(signum).name, self._alive())
            if grace is None:
                grace = self.settings.graceful_timeout_seconds + KILL_MARGIN_SECONDS
            self.stop_deadline = time.monotonic() + grace
        self.model.stop()
        if self.challenger is not None:
            self.challenger.stop()
        self.orphans.clear()
        self.listeners.close_slots()  # once the workers close theirs, new connections are refused
        for slot in self.slots:
            slot.restart_at = None
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)

    def _alive(self) -> int:
        return sum(slot.pid is not None for slot in self.slots)

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.pid is not None:
                log.warning("worker %d did not stop within the grace period: killing it", slot.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    def _follow(self, now: float) -> None:
        first = self.model.current is None or (self.challenger is not None and self.challenger.current is None)
        try:
            self.model.poll(now)
            if self.challenger is not None:
                self.challenger.poll(now)
                self.rollout.poll(now)
        except ModelLoadError as exc:
            self.failure = str(exc)
            # The workers hold no model and no request yet: a short wait, then SIGKILL should one
            # not stop (a model's import hanging).
            self.begin_stop(grace=ABORT_GRACE_SECONDS)
            return
        if first and self.model.current is not None and (self.challenger is None or self.challenger.current):
            settings, resolved = self.settings, self.model.current
            if not settings.auth_enabled:
                log.warning("no API keys configured: every route is open (set DIABETES_API_KEYS to require keys)")
            grpc = f", Open Inference Protocol gRPC on port {settings.grpc_port}" if settings.grpc_port else ""
            grpc += f", /metrics on port {settings.metrics_port}" if settings.metrics_port else ""
            log.info(
                "serving %s version %s on http://%s:%d%s with %d workers",
                resolved.name,
                resolved.version,
                settings.host,
                settings.port,
                grpc,
                len(self.slots),
            )
            if self.challenger is not None and self.challenger.current is not None:
                log.info(
                    "rollout %s: challenger %s version %s beside the champion",
                    settings.rollout,
                    self.challenger.current.name,
                    self.challenger.current.version,
                )

    def _say_ready(self) -> None:
        """Once every worker is warm the first time: the API page, one curl, how to stop."""
        if self.said_ready or self.model.current is None or not self.board.all_warm():
            return
        self.said_ready = True
        settings = self.settings
        for line in console.next_steps(
            settings.host,
            settings.port,
            self.model.current.features,
            keys=settings.auth_enabled,
            grpc_port=settings.grpc_port,
        ):
            log.info("%s", line)

    def run(self) -> int:
        """Until every worker has stopped; raises ModelLoadError when the model could not be served."""
        self._watch_signals()
        try:
            # Workers are forked from a supervisor that has imported their modules already: each
            # starts with them, instead of every worker importing the same ~0.2 s of modules at once
            # on shared cores (restarts measured ~30% nearer the constant app's time to an answer).
            import diabetes_service.supervisor.worker  # noqa: F401

            for index in range(len(self.slots)):
                self.spawn(index, first=True)
            # Then the model, while the workers start their servers: from the prepared-model cache
            # (PyYAML's import, hashing the artifact: ~50 ms) it is announced by the time they wait
            # for it; a first start's linear model is served from its arrays meanwhile
            # (model/provisional.py), so the preparation child starting this late costs no answer.
            self.model.start()
            if self.challenger is not None:
                self.challenger.start()
            self._follow(time.monotonic())  # from the prepared-model cache it is ready now, not a tick later
            while True:
                for signum in self._signals(TICK_SECONDS):
                    if signum in STOP_SIGNALS:
                        self.begin_stop(signum)
                    elif signum == signal.SIGHUP and self.stop_deadline is None:
                        log.info("received SIGHUP: resolving %s again", self.settings.model_uri)
                        self.model.request_check()
                        if self.challenger is not None:
                            self.challenger.request_check()
                self._reap()
                if self.orphans and self.stop_deadline is None:
                    self._cover_orphans()
                now = time.monotonic()
                if self.stop_deadline is not None:
                    if not self._alive():
                        break
                    if now > self.stop_deadline:
                        self._kill_all()
                    continue
                self._follow(now)
                self._say_ready()
                self._restart_due(now)
                self._check_heartbeats(now)
        finally:
            signal.set_wakeup_fd(-1)
            for signum in WATCHED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
        if self.failure is not None:
            raise ModelLoadError(self.failure)
        return self.exit_status


def _terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def heartbeat_limit(settings: ServiceSettings) -> float:
    """How long a worker may stay silent: under half the scoring timeout when there is one, so that a
    hung worker's clients get their reset before the timeout they were promised."""
    timeout = settings.scoring_timeout_seconds
    return (
        settings.heartbeat_timeout_seconds if timeout is None else min(settings.heartbeat_timeout_seconds, timeout / 2)
    )


def serve(settings: ServiceSettings) -> int:
    """Run the service until SIGTERM. Raises ModelLoadError / OSError before it is ever ready.

    `settings` is the one validated object (flags, environment, spec): it reaches every worker as
    it is, completed here only with what the supervisor decides (worker count, port, shared files).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    process_env.apply()  # `diabetes serve` did already; here for other callers, and the children
    workdir = Path(tempfile.mkdtemp(prefix="diabetes-serve-"))
    try:
        if not needs_mlflow(settings.model_uri):
            local_model(settings.model_uri)  # a missing path is said at once, before any fork
        if settings.grpc_port:
            from diabetes_service.protocols.v2.grpc_schema import require

            require()  # SchemaMissing: said once here, not by every worker
        workers = settings.workers or cpu_limit()
        listeners = Listeners(settings.host, settings.port, workers, settings.grpc_port)
        metrics_listener = None
        try:
            if settings.metrics_port:  # else /metrics stays on the scoring port, behind the key
                from diabetes_service.supervisor.metrics_listener import MetricsListener

                metrics_listener = MetricsListener(settings.host, settings.metrics_port)
            (workdir / "metrics").mkdir()
            runtime = settings.model_copy(
                update={
                    "workers": workers,
                    "port": listeners.port,
                    "grpc_port": listeners.grpc_port,
                    "metrics_port": metrics_listener.port if metrics_listener else 0,
                    "prepared_file": str(workdir / "prepared.json"),
                    "metrics_dir": str(workdir / "metrics"),
                    # Left unset: quiet on a person's terminal, on where a collector reads stdout.
                    "access_log": settings.access_log if settings.access_log is not None else not _terminal(),
                }
            )
            for line in console.wrapped("settings: ", runtime.describe()):
                log.info("%s", line)
            if runtime.rate_limit:  # its buckets in shared memory, created before the fork: one per replica
                from diabetes_service.transport.rate_limit import for_settings

                for_settings(runtime.rate_limit, len(runtime.api_keys))
            if metrics_listener is not None:
                metrics_listener.start(runtime.metrics_dir)
            return Supervisor(runtime, listeners, workdir).run()
        finally:
            listeners.close()
            if metrics_listener is not None:
                metrics_listener.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
