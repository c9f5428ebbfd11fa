"""Shadow copies: the challenger scores what the champion answered, off the request path, in batches.

The request's answer is the champion's and leaves at once; its matrix, method and answer wait in a
bounded queue. A full queue drops the copy and counts it (`diabetes_rollout_shadow_dropped_total`):
a copy never delays an answer, and a slow challenger costs shadow coverage, not latency.

The first copy into an empty queue sets a timer (`BATCH_SECONDS`); when it fires, one task of the
worker's event loop takes every copy waiting (up to `BATCH_ROWS` rows a batch) and hands them to
the rollout, which scores each layout (method and matrix form) in one challenger call and splits
the answer (scoring/rollout.py); a challenger whose answers depend on the other rows of a call
(probed at warm-up, as for the runner's gathering: scoring/core.py), or slower than 50 ms a call,
scores each copy alone. Scored one by one as they came, each copy woke the loop and made a
model call of its own: the lead's bench (2 cores, 1-row /score at half the saturation load)
measured the champion's p99 at 1.46x with shadow on (3.058 / 2.100 ms), 117-147 µs of server CPU
a request against 102-103 µs; the figure batched is in docs/rollout.md ("What it costs"). A batch
runs on the loop in a turn of its own: a request that becomes ready meanwhile waits for it, at most
one challenger call of `BATCH_ROWS` rows (asyncio has no idle priority to run it only when nothing
else is ready; a model slow enough runs in a thread, scoring/runner.py).

The guardrails (scoring/guard.py) still count each copy as one challenger call: its errors, rows and
divergence are its own. Its time is its batch's: the guard's p99 over shadow copies is that of the
challenger's batched calls (each copy weighted once), as a canary call gathered with others
(scoring/runner.py) is timed by its gathered call. Under load that is higher than one copy alone
would take: set `--guard-p99-ms` for a call of up to `BATCH_ROWS` rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("diabetes_service")

Copy = tuple[Any, str, Any]  # the matrix, the method, the champion's answer

# Copies gather this long before a batch is scored: one timer, one task and one challenger call for
# all of them, instead of a wake-up of the loop for each copy (at half the saturation load, ~1,500
# 1-row requests a second a worker, ~8 copies a batch).
BATCH_SECONDS = 0.005
# A batch holds at most this many rows (the copy that crosses it included): a challenger call on the
# loop stays short (a scikit-learn linear model: ~0.1 ms for 256 rows), so an answer never waits long
# behind it; more copies waiting are the next batch's.
BATCH_ROWS = 256


class ShadowQueue:
    def __init__(self, size: int, score: Callable[[list[Copy]], Awaitable[None]], counts: dict[str, int]) -> None:
        self.waiting: deque[Copy] = deque()
        self.size = size
        self.score = score
        self.counts = counts
        self.scheduled = False  # a batch's timer is set
        self.task: asyncio.Task | None = None  # the batches being scored

    def offer(self, copy: Copy) -> None:
        if len(self.waiting) >= self.size:
            self.counts["shadow_dropped"] = self.counts.get("shadow_dropped", 0) + 1
            return
        self.waiting.append(copy)
        if not self.scheduled and self.task is None:
            self.scheduled = True
            asyncio.get_running_loop().call_later(BATCH_SECONDS, self._start)

    def _start(self) -> None:
        self.scheduled = False
        self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        waiting = self.waiting
        try:
            while waiting:  # copies that came while a batch was scored (in a thread) are the next batch
                batch = [waiting.popleft()]
                rows = len(batch[0][0])
                while waiting and rows < BATCH_ROWS:
                    batch.append(waiting.popleft())
                    rows += len(batch[-1][0])
                try:
                    await self.score(batch)
                except Exception:  # a shadow copy never takes the worker down
                    log.exception("shadow scoring failed")
        finally:
            self.task = None
