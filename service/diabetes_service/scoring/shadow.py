"""Shadow copies: the challenger scores what the champion answered, off the request path, in batches.

The request's answer is the champion's and leaves at once; its matrix, method and answer wait in a
bounded queue that one task of the worker's event loop drains. A full queue drops the copy and
counts it (`diabetes_rollout_shadow_dropped_total`): a copy never delays an answer, and a slow
challenger costs shadow coverage, not latency.

The drain takes every copy queued (up to `BATCH_ROWS` rows) and hands them to the rollout as one
batch, which scores each layout (method and matrix form) in one challenger call and splits the answer
(scoring/rollout.py). Scored one by one, each copy cost a model call of its own on the worker's loop:
the lead's bench (2 cores, 1-row /score at half the saturation load) measured the champion's p99
at 1.46x with shadow on (3.058 / 2.100 ms), 117-147 µs of server CPU a request against 102-103 µs;
the figure batched is in docs/rollout.md ("What it costs"). Before taking a batch the drain yields
to the loop once, so the answers that woke it (and the requests ready in the same turn) go out
first, and their copies join the batch.

The guardrails (scoring/guard.py) still count each copy as one challenger call: its errors, rows and
divergence are its own. Its time is its batch's: the guard's p99 over shadow copies is that of the
challenger's batched calls (each copy weighted once), as a canary call gathered with others
(scoring/runner.py) is timed by its gathered call. Under load that is higher than one copy alone
would take: set `--guard-p99-ms` for a call of up to `BATCH_ROWS` rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("diabetes_service")

Copy = tuple[Any, str, Any]  # the matrix, the method, the champion's answer

# A batch holds at most this many rows (the copy that crosses it included): a challenger call on the
# loop stays short (a scikit-learn linear model: ~0.1 ms for 256 rows), so an answer never waits long
# behind it.
BATCH_ROWS = 256


class ShadowQueue:
    def __init__(self, size: int, score: Callable[[list[Copy]], Awaitable[None]], counts: dict[str, int]) -> None:
        self.queue: asyncio.Queue[Copy] | None = None  # made on the worker's loop, at the first copy
        self.size = size
        self.score = score
        self.counts = counts
        self.task: asyncio.Task | None = None

    def offer(self, copy: Copy) -> None:
        queue = self.queue
        if queue is None:
            queue = self.queue = asyncio.Queue(self.size)
            self.task = asyncio.get_running_loop().create_task(self._drain())
        try:
            queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.counts["shadow_dropped"] = self.counts.get("shadow_dropped", 0) + 1

    async def _drain(self) -> None:
        queue = self.queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            await asyncio.sleep(0)  # the answers and requests ready now first; their copies join
            rows = len(batch[0][0])
            while rows < BATCH_ROWS and not queue.empty():
                copy = queue.get_nowait()
                batch.append(copy)
                rows += len(copy[0])
            try:
                await self.score(batch)
            except Exception:  # a shadow copy never takes the worker down
                log.exception("shadow scoring failed")
