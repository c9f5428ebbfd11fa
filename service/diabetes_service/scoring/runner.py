"""Where and how the core's predictions run, for every protocol adapter.

Quick predictions run on the event loop, slow ones (a slow model, a large batch) in a thread, bounded
by the scoring timeout. For a model whose every call costs far more than the arithmetic of a few
rows (scikit-learn checks its input for ~0.1-0.2 ms per call, whatever the row count), concurrent
requests for the same method are gathered into one estimator call: the requests that reach a worker
in the same turn of its event loop, or while a gathered call runs in a thread, are scored together
at the end of that turn. There is no timer: a lone request waits one loop turn, about 10 µs. For a
model that takes a DataFrame, a gathered call builds one frame for all its requests (core.concat).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import TypeVar

import numpy as np

from diabetes_service.scoring.core import ScoringCore
from diabetes_service.scoring.errors import ScoringTimeout

# A gathered call scores at most this many rows; requests beyond it wait for the next call.
GATHER_MAX_ROWS = 2000

T = TypeVar("T")


class PredictionRunner:
    def __init__(self, core: ScoringCore, timeout: float | None, *, gather: bool = True) -> None:
        self.core = core
        self.timeout = timeout
        self.gathers = gather and core.gathers
        self.calls: dict[str, int] = {}  # the model's own calls, by method: fewer than requests when gathered
        self._gatherers: dict[str, _Gatherer] = {}

    async def predict(self, matrix: np.ndarray, method: str) -> np.ndarray:
        core = self.core
        if self.gathers:
            gatherer = self._gatherers.get(method)
            if gatherer is None:
                gatherer = self._gatherers[method] = _Gatherer(core, method, self.calls)
            return await self._bounded(gatherer.submit(matrix))
        self.calls[method] = self.calls.get(method, 0) + 1
        if core.blocks(len(matrix)):
            return await self._bounded(asyncio.to_thread(core.predict, matrix, method))
        return core.predict(matrix, method)

    async def _bounded(self, waiting: Awaitable[T]) -> T:
        if self.timeout is None:
            return await waiting
        try:
            return await asyncio.wait_for(waiting, self.timeout)
        except TimeoutError:
            # A prediction in a thread cannot be stopped: it finishes alone, its answer unused.
            raise ScoringTimeout(self.timeout) from None


Outcome = np.ndarray | BaseException


class _Gatherer:
    """The requests waiting to be scored with one method, and the call that scores them."""

    def __init__(self, core: ScoringCore, method: str, calls: dict[str, int]) -> None:
        self.core = core
        self.method = method
        self.calls = calls
        self.waiting: deque[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = deque()
        self.scheduled = False
        self.in_thread: asyncio.Task[None] | None = None

    def submit(self, matrix: np.ndarray) -> asyncio.Future[np.ndarray]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[np.ndarray] = loop.create_future()
        self.waiting.append((matrix, answer))
        self._schedule(loop)
        return answer

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # A call in a thread takes whatever arrived meanwhile as soon as it is back.
        if not self.scheduled and self.in_thread is None:
            self.scheduled = True
            loop.call_soon(self._flush)  # after every request already running in this loop turn

    def _flush(self) -> None:
        self.scheduled = False
        batch, rows = [], 0
        while self.waiting and (not batch or rows + len(self.waiting[0][0]) <= GATHER_MAX_ROWS):
            matrix, answer = self.waiting.popleft()
            if not answer.done():  # a request past the scoring timeout is not scored any more
                batch.append((matrix, answer))
                rows += len(matrix)
        if not batch:
            return
        matrices = [matrix for matrix, _ in batch]
        answers = [answer for _, answer in batch]
        self.calls[self.method] = self.calls.get(self.method, 0) + 1
        if self.core.blocks(rows):
            self.in_thread = asyncio.get_running_loop().create_task(self._score_in_thread(matrices, answers))
        else:
            _settle(answers, self._score(matrices))
            if self.waiting:
                self._schedule(asyncio.get_running_loop())

    async def _score_in_thread(self, matrices: list[np.ndarray], answers: list[asyncio.Future[np.ndarray]]) -> None:
        try:
            outcomes = await asyncio.to_thread(self._score, matrices)
        except BaseException as exc:  # cancelled at shutdown: every waiting request hears it
            outcomes = [exc] * len(answers)
        finally:
            self.in_thread = None
        _settle(answers, outcomes)
        if self.waiting:
            self._schedule(asyncio.get_running_loop())

    def _score(self, matrices: list[np.ndarray]) -> list[Outcome]:
        """One call for every request; if it fails, one call each, so that a failure stays its own."""
        if len(matrices) > 1:
            try:
                result = self.core.predict(self.core.concat(matrices), self.method)
            except Exception:  # noqa: S110 - each request is scored alone below and hears its own error
                pass
            else:
                return list(np.split(result, np.cumsum([len(m) for m in matrices[:-1]])))
        outcomes: list[Outcome] = []
        for matrix in matrices:
            try:
                outcomes.append(self.core.predict(matrix, self.method))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


def _settle(answers: list[asyncio.Future[np.ndarray]], outcomes: list[Outcome]) -> None:
    for answer, outcome in zip(answers, outcomes, strict=True):
        if answer.done():  # its request gave up (the scoring timeout)
            continue
        if isinstance(outcome, asyncio.CancelledError):
            answer.cancel()
        elif isinstance(outcome, BaseException):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)
