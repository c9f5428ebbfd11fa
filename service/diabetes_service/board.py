"""What each worker is doing, in memory shared by the supervisor and every worker it forks.

Readiness is a property of the service, not of whichever worker answers the probe: the service
is ready only when every worker that takes connections has loaded the model and answered its
warm-up prediction, so a load balancer never sends traffic to a worker that would turn it away.
A replacement worker takes no connections until it is warm, so its restart does not turn the
service unready.

Each worker also beats here from its event loop; the supervisor replaces one whose beat stops (a
SIGSTOP, a model call stuck in C on the loop). The model's generation says when the supervisor has
prepared a new version: each worker then loads it and swaps it in between requests.

With a safe rollout (scoring/rollout.py) the challenger has a generation of its own, and the
rollout's state lives here too: a guardrail that trips in one worker stops the challenger in every
worker at their next call, and the supervisor, which alone talks to the registry, sees it on its tick.
"""

from __future__ import annotations

import ctypes
import time
from multiprocessing.sharedctypes import RawArray

COLD = 0  # listening, still loading the model: answers 503 to scoring
WARM = 1  # listening and warm
AWAY = 2  # not accepting: a replacement loading its model (live workers adopt its socket), a dead worker's slot

# The rollout's state (supervisor/rollout.py names them for the metrics).
ACTIVE = 0  # the challenger takes its share of traffic (canary) or shadow copies
ROLLED_BACK = 1  # a guardrail tripped: the champion answers everything
PROMOTED = 2  # the champion alias moved to the challenger's version


class WorkerBoard:
    def __init__(self, workers: int) -> None:
        # Anonymous shared memory, created before the fork: every worker sees the same bytes.
        self._state = RawArray(ctypes.c_byte, workers)
        self._beat = RawArray(ctypes.c_double, workers)  # time.monotonic(): one clock for every process
        self._generation = RawArray(ctypes.c_long, 1)  # bumped when a new model version is announced
        self._challenger_generation = RawArray(ctypes.c_long, 1)  # the same, for a rollout's challenger
        self._rollout = RawArray(ctypes.c_byte, 1)  # ACTIVE, ROLLED_BACK or PROMOTED
        self._challenger_calls = RawArray(ctypes.c_long, workers)  # each worker's challenger calls, for promotion
        self._challenger_served = RawArray(ctypes.c_long, workers)  # the challenger generation each worker serves

    def mark(self, slot: int, state: int) -> None:
        self._state[slot] = state

    def state(self, slot: int) -> int:
        return self._state[slot]

    def beat(self, slot: int) -> None:
        self._beat[slot] = time.monotonic()

    def last_beat(self, slot: int) -> float:
        return self._beat[slot]

    def announce_generation(self, generation: int) -> None:
        self._generation[0] = generation

    def generation(self) -> int:
        return self._generation[0]

    def announce_challenger(self, generation: int) -> None:
        self._challenger_generation[0] = generation

    def challenger_generation(self) -> int:
        return self._challenger_generation[0]

    def rollout_state(self) -> int:
        return self._rollout[0]

    def set_rollout_state(self, state: int) -> None:
        self._rollout[0] = state

    def count_challenger_call(self, slot: int, calls: int = 1) -> None:
        self._challenger_calls[slot] += calls

    def challenger_calls(self) -> int:
        return sum(self._challenger_calls)

    def serve_challenger(self, slot: int, generation: int) -> None:
        """This worker's challenger of `generation` is warm and takes its share from now on."""
        self._challenger_served[slot] = generation

    def challenger_live(self, generation: int) -> bool:
        """Every worker taking connections serves the challenger of `generation` (and one does)."""
        warm = [slot for slot, state in enumerate(self._state) if state == WARM]
        return bool(warm) and all(self._challenger_served[slot] == generation for slot in warm)

    def all_warm(self) -> bool:
        """Every listening worker is warm, and at least one is."""
        states = list(self._state)
        return COLD not in states and WARM in states


# Set in a worker right after the fork; None when the app runs outside the supervisor.
current: tuple[WorkerBoard, int] | None = None
