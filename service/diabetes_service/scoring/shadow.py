"""Shadow copies: the challenger scores what the champion answered, off the request path.

The request's answer is the champion's and leaves at once; its matrix, method and answer wait in a
bounded queue that one task of the worker's event loop drains through the challenger's runner. A
full queue drops the copy and counts it (`diabetes_rollout_shadow_dropped_total`): a copy never
delays an answer, and a slow challenger costs shadow coverage, not latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("diabetes_service")

Copy = tuple[Any, str, Any]  # the matrix, the method, the champion's answer


class ShadowQueue:
    def __init__(self, size: int, score: Callable[[Copy], Awaitable[None]], counts: dict[str, int]) -> None:
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
        assert self.queue is not None
        while True:
            copy = await self.queue.get()
            try:
                await self.score(copy)
            except Exception:  # a shadow copy never takes the worker down
                log.exception("shadow scoring failed")
