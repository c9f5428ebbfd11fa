"""Safe rollout in one worker: which version answers each call, and the challenger's guardrails.

`diabetes serve --challenger URI --rollout shadow|canary` holds two versions in every worker: the
champion (the served model, as ever) and the challenger, both prepared the usual way (trust, version
check, prepared-model cache) and both following their aliases with `--follow` (scoring/lifecycle.py).
- The envelope's `open` asks `route` which version a call goes to (transport/envelope.py), so every
  protocol, REST or gRPC, takes part: with `--rollout canary`, `canary_percent` of calls go to the
  challenger, sticky by a CRC32 of the routing header's value when the caller sends one (the same
  value lands on the same version in every worker and replica), random otherwise. The choice rides
  on the call's context (a ContextVar: ~0.1 µs a call, and only with a rollout on; off, `open`
  holds one `is None` test and nothing else changes).
- The protocols score through `state.runner`, which during a rollout is a `RoutingRunner`: a call
  routed to the challenger is scored by it; one it fails (an exception, a non-finite answer, a
  timeout) is scored again by the champion, so the caller sees no failure, and counts against the
  challenger only when the champion could score it. With `--rollout shadow` the champion answers
  every call and a copy goes to the challenger off the request path (scoring/shadow.py).
- Each challenger call feeds the guardrails (scoring/guard.py); one that trips sets the rollout's
  state on the heartbeat board (board.py), so the challenger stops in every worker at their next
  call, and the supervisor (supervisor/rollout.py) removes its alias or promotes it, once.
`x-model-version` names the version that computed each answer (`answered`).
"""

from __future__ import annotations

import logging
import zlib
from contextvars import ContextVar
from dataclasses import dataclass
from random import random
from time import perf_counter
from typing import Any

import numpy as np

from diabetes_service import board
from diabetes_service.observability.metrics import Metrics
from diabetes_service.scoring.core import ModelIdentity, ScoringCore
from diabetes_service.scoring.guard import Guard
from diabetes_service.scoring.runner import PredictionRunner
from diabetes_service.scoring.shadow import Copy, ShadowQueue
from diabetes_service.settings import ServiceSettings

log = logging.getLogger("diabetes_service")

SHARES = 10_000  # the canary share's resolution: 0.01%


@dataclass(slots=True)
class Routed:
    """One call's choice: the challenger's (canary), and the version that answered it."""

    challenger: bool
    answered: ModelIdentity | None = None


_routed: ContextVar[Routed | None] = ContextVar("diabetes_rollout_routed", default=None)


def answered(identity: ModelIdentity) -> ModelIdentity:
    """The identity of the version that computed this call's answer: `identity` (the champion's) unless
    the challenger did."""
    routed = _routed.get()
    return identity if routed is None or routed.answered is None else routed.answered


class Rollout:
    def __init__(self, settings: ServiceSettings, metrics: Metrics) -> None:
        self.mode = settings.rollout
        self.canary = settings.rollout == "canary"
        self.threshold = round(settings.canary_percent * SHARES / 100)
        self.header = settings.routing_header.lower()
        self.header_bytes = self.header.encode()
        self.tolerance = settings.divergence_tolerance
        self.timeout = settings.scoring_timeout_seconds
        self.gather = settings.gather_requests
        self.guard = Guard(settings)
        self.metrics = metrics
        self.counts = metrics.totals.rollout
        self.challenger: ScoringCore | None = None
        self.runner: PredictionRunner | None = None  # the challenger's
        self.shadow = ShadowQueue(settings.shadow_queue, self._shadow, self.counts) if not self.canary else None
        self.stopped = False  # run alone (no supervisor, no board): this worker's own decision

    # -- versions --------------------------------------------------------------------------------

    def serve_challenger(self, core: ScoringCore, runner_type: type[PredictionRunner] = PredictionRunner) -> None:
        """A challenger version is warm: it takes its share from the next call on (a new one starts afresh).
        `runner_type`: the champion's (state.runner_type), so that tracing's spans and the payload log
        see the challenger's answers as they see the champion's."""
        if self.challenger is not None and self.challenger.identity != core.identity:
            self.guard.reset()
            self.stopped = False
        self.runner = runner_type(core, self.timeout, gather=self.gather)
        self.challenger = core
        log.info("rollout (%s): challenger %s version %s ready", self.mode, core.identity.name, core.identity.version)

    def wrap(self, champion: PredictionRunner) -> RoutingRunner:
        return RoutingRunner(champion, self)

    def live(self) -> bool:
        """The challenger takes traffic: loaded, and neither rolled back nor promoted (in any worker)."""
        if self.runner is None:
            return False
        if board.current is not None:
            return board.current[0].rollout_state() == board.ACTIVE
        return not self.stopped

    # -- the envelope's step -----------------------------------------------------------------------

    def route(self, carrier: Any) -> None:
        """Choose the version for the call starting now; `carrier`: its headers (ASGI) or gRPC metadata."""
        if not self.canary:
            return
        key = None
        if isinstance(carrier, list):  # ASGI headers: (lower-case name, value) pairs
            for name, value in carrier:
                if name == self.header_bytes:
                    key = value
                    break
        elif carrier is not None:  # gRPC metadata
            value = carrier.get(self.header)
            key = value.encode() if isinstance(value, str) else value
        # Without a key, any caller may land anywhere: a split, not a secret (S311).
        draw = zlib.crc32(key) % SHARES if key else random() * SHARES  # noqa: S311
        _routed.set(Routed(draw < self.threshold))

    # -- scoring -----------------------------------------------------------------------------------

    async def score_canary(self, champion: PredictionRunner, matrix: Any, method: str, routed: Routed) -> Any:
        assert self.runner is not None
        assert self.challenger is not None
        started = perf_counter()
        try:
            result = await self.runner.predict(matrix, method)
        except Exception as exc:
            routed.challenger = False  # the rest of this call (V2's other outputs) goes to the champion
            # The champion answers; the caller's own mistake raises here, and is not the challenger's.
            answer = await champion.predict(matrix, method)
            log.warning("rollout: the challenger failed a call the champion answered: %s", exc)
            self.count("challenger_errors")
            self.record(False, perf_counter() - started)
            self.metrics.observe_version(champion.core.identity.version, perf_counter() - started)
            return answer
        seconds = perf_counter() - started
        routed.answered = self.challenger.identity
        self.metrics.observe_version(self.challenger.identity.version, seconds)
        self.record(True, seconds)
        return result

    async def _shadow(self, copies: list[Copy]) -> None:
        """Score a batch of shadow copies (scoring/shadow.py): one challenger call for each layout."""
        if not self.live():
            return
        groups: dict[Any, list[Copy]] = {}
        for copy in copies:
            matrix = copy[0]
            # A float matrix's trailing shape and type; a checked Table has the feature order's columns.
            layout = (matrix.shape[1:], matrix.dtype.str) if isinstance(matrix, np.ndarray) else type(matrix)
            groups.setdefault((copy[1], layout), []).append(copy)
        for group in groups.values():
            if len(group) > 1 and self.live() and await self._shadow_together(group):
                continue
            for copy in group:  # alone: one copy, a challenger whose rows depend on each other, or a failed batch
                if not self.live():  # rolled back meanwhile: the copies left are not scored
                    return
                await self._shadow_alone(copy)

    async def _shadow_together(self, group: list[Copy]) -> bool:
        """Score copies of one layout in one call; False when it cannot (they are then scored one by one,
        so that only the copies the challenger fails count as its errors)."""
        assert self.runner is not None
        assert self.challenger is not None
        if not self.challenger.rows_independent:  # its answers would change with the batch
            return False
        method = group[0][1]
        started = perf_counter()
        try:
            result = np.asarray(await self.runner.predict(self.challenger.concat([c[0] for c in group]), method))
            seconds = perf_counter() - started
            expected = np.concatenate([np.asarray(c[2]) for c in group])
            diverged = np.concatenate(([0], np.cumsum(self.diverged_rows(expected, result))))
        except Exception:  # scored alone next: each copy hears its own error
            return False
        rows = np.fromiter((len(c[2]) for c in group), dtype=np.intp, count=len(group))
        ends = np.cumsum(rows)
        by_copy = (diverged[ends] - diverged[ends - rows]).tolist()
        counts = self.counts
        for name, by in (
            ("shadow_calls", len(group)),
            ("challenger_calls", len(group)),
            ("shadow_batches", 1),
            ("diverged_rows", sum(by_copy)),
            ("compared_rows", int(ends[-1])),
        ):
            counts[name] = counts.get(name, 0) + by
        self.metrics.touch()
        if board.current is not None:
            workers, slot = board.current
            workers.count_challenger_call(slot, len(group))
        # Each copy one call of the guard's window, timed as its batch (shadow.py).
        reason = self.guard.record_scored(seconds, list(zip(by_copy, rows.tolist(), strict=True)))
        if reason is not None:
            self.roll_back(reason)
        return True

    async def _shadow_alone(self, copy: Copy) -> None:
        matrix, method, expected = copy
        assert self.runner is not None
        self.count("shadow_calls")
        self.count("shadow_batches")
        started = perf_counter()
        try:
            result = await self.runner.predict(matrix, method)
        except Exception as exc:  # the champion scored these rows: the challenger's failure
            log.warning("rollout: the challenger failed a shadow copy the champion answered: %s", exc)
            self.count("challenger_errors")
            self.record(False, perf_counter() - started)
            return
        seconds = perf_counter() - started
        rows = len(expected)
        diverged = self.diverged(np.asarray(expected), np.asarray(result))
        self.count("diverged_rows", diverged)
        self.count("compared_rows", rows)
        self.record(True, seconds, diverged, rows)

    def diverged(self, expected: np.ndarray, got: np.ndarray) -> int:
        """The count of rows whose answers differ (`diverged_rows`)."""
        return int(self.diverged_rows(expected, got).sum())

    def diverged_rows(self, expected: np.ndarray, got: np.ndarray) -> np.ndarray:
        """Which rows' answers differ: another label (or most likely class), or a number further than
        `divergence_tolerance` of the champion's (relative, and absolute below 1)."""
        if expected.shape != got.shape:
            return np.ones(len(expected), dtype=bool)
        if expected.ndim == 2:  # class probabilities: the most likely class
            return expected.argmax(axis=1) != got.argmax(axis=1)
        classifier = self.challenger is not None and self.challenger.classes is not None
        if classifier or expected.dtype.kind not in "fiu" or got.dtype.kind not in "fiu":
            return np.asarray(expected != got, dtype=bool).reshape(len(expected), -1).any(axis=1)
        bound = self.tolerance * np.maximum(np.abs(expected), 1.0)
        return np.abs(got - expected) > bound

    # -- guardrails --------------------------------------------------------------------------------

    def record(self, ok: bool, seconds: float, diverged: int = 0, rows: int = 0) -> None:
        self.count("challenger_calls")
        if board.current is not None:
            workers, slot = board.current
            workers.count_challenger_call(slot)
        reason = self.guard.record(ok, seconds, diverged, rows)
        if reason is not None:
            self.roll_back(reason)

    def roll_back(self, reason: str) -> None:
        if not self.live():
            return
        assert self.challenger is not None
        if board.current is not None:
            board.current[0].set_rollout_state(board.ROLLED_BACK)
        self.stopped = True
        identity = self.challenger.identity
        log.error(
            "rollout: challenger %s version %s rolled back: %s; the champion answers every call",
            identity.name,
            identity.version,
            reason,
        )

    def count(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by
        self.metrics.touch()


class RoutingRunner:
    """`state.runner` during a rollout: what the protocols await, routed by the call's choice."""

    def __init__(self, champion: PredictionRunner, rollout: Rollout) -> None:
        self.champion = champion
        self.rollout = rollout
        self.core = champion.core
        self.calls = champion.calls  # the champion's model calls (app.py labels them in /metrics)
        self.version = champion.core.identity.version

    async def predict(self, matrix: Any, method: str) -> Any:
        rollout = self.rollout
        if rollout.canary:
            routed = _routed.get()
            if routed is not None and routed.challenger and rollout.live():
                return await rollout.score_canary(self.champion, matrix, method, routed)
        started = perf_counter()
        result = await self.champion.predict(matrix, method)
        rollout.metrics.observe_version(self.version, perf_counter() - started)
        if rollout.shadow is not None and rollout.live():
            rollout.shadow.offer((matrix, method, result))
        return result
