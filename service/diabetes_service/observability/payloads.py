"""Payload logging (`--log-payloads DIR`): what every scoring call was asked and answered, as Parquet.

The envelope's close step (transport/envelope.py) hands each answered call on a scoring route, REST
or gRPC, to `PayloadSink.offer`: the request's already-checked input and the model's answer (kept by
the runner subclass below, in a context variable of the request's task), or a refusal's status and
message. `offer` only samples (`--log-sample-rate`), counts and appends to a bounded queue; a writer
thread per worker turns the queue into records (payload_records.py) and writes one Parquet file per
partition DIR/model=<name>/version=<version>/date=YYYY-MM-DD/hour=HH/ at least every FLUSH_SECONDS,
and at shutdown (SIGTERM drains the queue: every sampled record is on disk). A file is written under
a dot-name and renamed, so a reader (pyarrow, DuckDB, Spark all skip dot-files) never sees half of one.

The sink never fails a request: a full queue or a failing write (disk full, the folder gone) drops the
records, and `diabetes_payload_records_total{outcome}` counts every record: written, dropped or
sampled_out, so that written + dropped = sampled. A failing sink logs one line when it breaks and one
when it recovers, not one per file.

The writer holds the interpreter lock the event loop needs, so its Python work per call is the cost:
it takes the queue whole and reads the queued tuples column by column (payload_records.py), with no
object or Python step per call where the batch is the usual one (one model, one hour), and it writes
a file per BATCH_ROWS records or BATCH_CALLS calls, not per 20,000 records: a file costs ~1.1 ms of
its CPU whatever its size, and each time it takes the lock back from the loop (a forced switch).
Measured 2026-12-08 on the shared 2-core machine, 2 workers, 16 connections, this checkout with and
without `--log-payloads`, alternated (wrk on /score, process CPU from /proc): at 100-row calls the
server CPU per call rose 170 -> 205 µs (+21%; +26% with a file per 20,000 records), of which the two
writer threads ~22 µs, Parquet's encoding (~0.12 µs a record) the most of it; at 1-row calls the
writers took ~3.6 µs a call (the Parquet write of a 1-row record 0.28 -> 0.14 µs). The bench's A/B
against the code before payload logging (`python -m loadtests.bench --also-baseline DIR
--log-payloads --skip-mlflow --connections 16 --rows 1,100 --ab-rounds 5`, which prints the
req/s ratios; DIR from `git archive d0d936b service`) gave no usable ratio that day: the neighbours
halved req/s between rounds. Its first two rounds, server CPU per call: 79-84 µs against 71-80 µs at
1 row, 267-269 µs against 195-200 µs at 100 rows. The same bench on a quiet machine the same day
(load average 1.4, medians of 5 rounds): 95.4% of the 1-row req/s and 83.0% of the 100-row (91.7%
and 73.3% before these changes). Targets (docs/payload-logging.md): 95% and 90% of req/s; the
1-row one is met, the 100-row one not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from random import random
from time import time as now
from typing import Any
from urllib.parse import quote
from uuid import uuid4

log = logging.getLogger("diabetes_service")

# At least this often a batch of records is on disk (the writer wakes every POLL_SECONDS).
FLUSH_SECONDS = 10.0
POLL_SECONDS = 1.0
# Records one worker may hold waiting for its writer (~20 MB for 10 double features); past it, dropped.
MAX_QUEUED_ROWS = 200_000
# The writer wakes early for a batch this large, in records or in calls (a call's objects weigh ~0.5 kB
# whatever its rows). A file costs ~1.1 ms of the writer's CPU whatever its size (2026-12-08): at 20,000
# records a file, 100-row calls paid ~5.5 µs each for it, ~3% of their server CPU; at 100,000, ~1.1 µs.
BATCH_ROWS = 100_000
BATCH_CALLS = 20_000
# A queued call's fields the writer reads for the whole batch at once (payload_records.py: the layout).
STAMP, MODEL, ROWS = itemgetter(0), itemgetter(6), itemgetter(8)
# A model served from a file or folder, not a registry: its partition's version.
UNVERSIONED = {"local": "none"}

# What the request running in this task scored: (input, method, answer, core, the previous link), or
# None. Each request runs in a task of its own (uvicorn's, grpclib's), so nothing leaks between them.
scored: ContextVar[tuple | None] = ContextVar("diabetes_scored", default=None)


class PayloadSink:
    def __init__(self, settings: Any, state: Any, count: Callable[[str, int], None]) -> None:
        from diabetes_service.observability import payload_records  # pyarrow: only when payloads are logged

        self.records = payload_records
        payload_records.warm_up()  # at the worker's start, not in its first flush (payload_records.py)
        self.directory = Path(settings.log_payloads)
        self.rate = settings.log_sample_rate
        self.redact = dict(settings.log_redact)
        self.state = state  # the served model, for a refusal's name, version and columns
        self.count = count  # Metrics.count_payload_records, on the event loop's thread
        self.routes: dict[str, tuple[str, str]] = {}  # route label -> (protocol, transport)
        self.queue: deque[Any] = deque()
        self.offered = 0  # rows queued, by the event loop
        self.taken = 0  # rows taken, by the writer
        self.full = False
        # The writer's own counts, reported to the loop's metrics by `_report` (deltas).
        self.written = self.failed = 0
        self.reported = [0, 0]
        self.broken: str | None = None
        self.wake = threading.Event()
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add_routes(self, routes: dict[str, str], transport: str) -> None:
        """The scoring routes (label -> protocol name) of a transport: only their calls are logged."""
        self.routes.update({route: (protocol, transport) for route, protocol in routes.items()})

    def runner_type(self, base: type) -> type:
        """`base` (the scoring runner) keeping what each prediction was given and answered."""

        class KeptRunner(base):  # type: ignore[valid-type, misc]
            async def predict(self, matrix: Any, method: str) -> Any:
                result = await super().predict(matrix, method)
                scored.set((matrix, method, result, self.core, scored.get()))
                return result

        KeptRunner.__name__ = KeptRunner.__qualname__ = f"Kept{base.__name__}"
        return KeptRunner

    # -- the event loop's side: cheap -----------------------------------------------------------

    def offer(self, route: str, request_id: str, status: int, error: str | bytes | None, model: Any) -> None:
        where = self.routes.get(route)
        if where is None:
            return
        if status < 400:
            kept, error = scored.get(), None
            if kept is None:
                return  # answered without scoring: nothing to log
            rows = len(kept[0])
        else:
            kept, rows = None, 1  # a refusal: its status and message, never its body
        if self.rate < 1.0 and random() >= self.rate:  # noqa: S311 - a sample, not a secret
            self.count("sampled_out", rows)
            return
        waiting = self.offered - self.taken + rows
        if waiting > MAX_QUEUED_ROWS:
            if not self.full:
                self.full = True
                log.warning("payload logging: queue full (%d records waiting); dropping records", MAX_QUEUED_ROWS)
            self.count("dropped", rows)
            return
        if self.full:
            self.full = False
            log.warning("payload logging: queue drained; logging records again")
        queue = self.queue
        queue.append((now(), request_id, route, where, status, error, model, kept, rows))
        self.offered += rows
        if self.thread is None:
            self._start()
        if (waiting >= BATCH_ROWS or len(queue) >= BATCH_CALLS) and not self.wake.is_set():
            self.wake.set()

    def _start(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="payload-writer", daemon=True)
        self.thread.start()

    def _report(self) -> None:
        """The writer's counts since the last report, into the metrics (on the loop's thread)."""
        written, failed = self.written, self.failed
        if written > self.reported[0]:
            self.count("written", written - self.reported[0])
        if failed > self.reported[1]:
            self.count("dropped", failed - self.reported[1])
        self.reported = [written, failed]

    def close(self) -> None:
        """Write every queued record and stop the writer (SIGTERM). A later offer starts it again."""
        thread = self.thread
        if thread is not None:
            self.stopping = True
            self.wake.set()
            thread.join()
            self.thread = None
        self._report()

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[Any] = []
        rows, since = 0, time.monotonic()
        while True:
            self.wake.wait(POLL_SECONDS)
            self.wake.clear()
            stopping = self.stopping
            queue = self.queue
            if queue:
                if not batch:
                    since = time.monotonic()
                # Taken whole, counted at C speed: no Python step per call here (the deque's pops are atomic).
                taken = [queue.popleft() for _ in range(len(queue))]
                n = sum(map(ROWS, taken))
                batch += taken
                rows += n
                self.taken += n
            due = time.monotonic() - since >= FLUSH_SECONDS - POLL_SECONDS
            if batch and (stopping or due or rows >= BATCH_ROWS or len(batch) >= BATCH_CALLS):
                self._flush(batch, rows)
                batch, rows = [], 0
                if self.loop is not None and not stopping:
                    with contextlib.suppress(RuntimeError):  # the loop is closed: close() reports
                        self.loop.call_soon_threadsafe(self._report)
            if stopping and not self.queue:
                return

    def _flush(self, batch: list[Any], rows: int) -> None:
        """One file per partition (model, version, date, hour); a partition that fails is dropped, counted.

        Calls are grouped by the objects they hold (the model that answered, the core that scored,
        the hour), with no object built per call; each bucket is then named once."""
        buckets: dict[tuple[int, int, int], list[Any]] = {}
        models = list(map(MODEL, batch))
        stamps = list(map(STAMP, batch))
        first, last = int(min(stamps) // 3600), int(max(stamps) // 3600)
        if first == last and models[0] is not None and models.count(models[0]) == len(batch):
            # The usual batch: every call answered by one loaded model (one identity object), in one hour.
            batch, buckets = [], {(0, 0, first): batch}
        for item in batch:
            kept = item[7]
            key = (id(item[6]), id(kept[3]) if kept is not None else 0, int(item[0] // 3600))
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = [item]
            else:
                bucket.append(item)
        partitions: dict[tuple[str, str, int], tuple[Any, list[Any]]] = {}
        for (_, _, hours), calls in buckets.items():
            name, version, core = self._identity(calls[0])
            key = (name, UNVERSIONED.get(version, version), hours)
            if key in partitions:
                known, merged = partitions[key]
                partitions[key] = (known or core, merged + calls)
            else:
                partitions[key] = (core, calls)
        for (name, version, hours), (core, calls) in partitions.items():
            count = rows if len(partitions) == 1 else sum(map(ROWS, calls))
            when = datetime.fromtimestamp(hours * 3600, UTC)
            try:
                table = self.records.build(calls, name, version, core, self.redact)
                self._write((name, version, f"{when:%Y-%m-%d}", f"{when:%H}"), table)
            except Exception as exc:  # whatever the disk or the data says, the call has its answer
                self.failed += count
                if self.broken is None:
                    self.broken = f"{type(exc).__name__}: {exc}"
                    log.error("payload logging: cannot write to %s (%s); dropping records", self.directory, self.broken)
                continue
            self.written += count
            if self.broken is not None:
                self.broken = None
                log.warning("payload logging: writing to %s again", self.directory)

    def _identity(self, item: tuple) -> tuple[str, str, Any]:
        """The name, version and scoring core of a call: the model that answered, else the core that
        scored it (its first prediction's), else (a refusal) the one serving now."""
        model, kept = item[6], item[7]
        core = None
        while kept is not None:
            core, kept = kept[3], kept[4]
        if core is None:
            core = self.state.core
        identity = model or (core.identity if core is not None else None)
        if identity is not None:
            return identity.name, identity.version, core
        return self.state.model_name, self.state.model_version, core

    def _write(self, key: tuple[str, str, str, str], table: Any) -> None:
        model, version, date, hour = key
        folder = self.directory / f"model={quote(model, safe='')}" / f"version={quote(version, safe='')}"
        folder = folder / f"date={date}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{int(time.time() * 1000)}-{os.getpid()}-{uuid4().hex[:12]}.parquet"
        partial = folder / f".{name}.partial"
        try:
            self.records.write(table, partial)
            os.replace(partial, folder / name)
        finally:
            partial.unlink(missing_ok=True)
