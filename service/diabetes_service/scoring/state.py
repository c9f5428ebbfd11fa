"""What one worker knows about itself: the model once loaded, and whether it may take traffic.

During a safe rollout it also holds the challenger (scoring/rollout.py), and its `runner` routes
each call to the version chosen for it.

A call that needs the model before it is warm hears `NotReady` (scoring/errors.py), which each
protocol words its own way; nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diabetes_service import board
from diabetes_service.scoring.core import ScoringCore
from diabetes_service.scoring.errors import NotReady
from diabetes_service.scoring.runner import PredictionRunner
from diabetes_service.settings import ServiceSettings

if TYPE_CHECKING:
    from diabetes_service.scoring.rollout import Rollout

# A scoring call that reaches a worker still loading waits this long before NotReady (retryable).
LOADING_WAIT_SECONDS = 10.0


@dataclass
class ServiceState:
    settings: ServiceSettings
    core: ScoringCore | None = None
    runner: PredictionRunner | None = None  # set with `core`
    warm: bool = False  # loaded and has answered a warm-up prediction
    draining: bool = False  # SIGTERM received: finish what is in flight, take nothing new
    grpc_listening: bool = True  # False while a gRPC port is configured but its server not yet up (worker.py)
    # What scores for this worker: PredictionRunner, or tracing's subclass that wraps each
    # prediction in a span (observability/tracing.py); chosen once, so the hot path holds no branch.
    runner_type: type[PredictionRunner] = PredictionRunner
    rollout: Rollout | None = None  # a challenger beside the model (scoring/rollout.py): `runner` routes
    model_name: str = field(init=False)
    model_version: str = field(init=False)

    def __post_init__(self) -> None:
        self.model_name = self.settings.model_name or "model"
        self.model_version = self.settings.model_version or "local"

    @property
    def auth_enabled(self) -> bool:
        return self.settings.auth_enabled

    def mark_warm(self, core: ScoringCore) -> None:
        settings = self.settings
        self.runner = self.runner_type(core, settings.scoring_timeout_seconds, gather=settings.gather_requests)
        if self.rollout is not None:
            self.runner = self.rollout.wrap(self.runner)  # type: ignore[assignment]
        self.core = core
        self.warm = True
        if board.current is not None:
            workers, slot = board.current
            workers.mark(slot, board.WARM)

    @property
    def ready(self) -> bool:
        """Ready for traffic: this worker and, under the supervisor, every other listening one is warm."""
        if not self.warm or self.draining or not self.grpc_listening:
            return False
        return board.current is None or board.current[0].all_warm()

    def require_core(self) -> ScoringCore:
        if self.core is None or not self.warm:
            raise NotReady("the model is still loading; retry shortly")
        return self.core

    async def core_when_warm(self) -> ScoringCore:
        """The core, waiting a little for it when the worker is still loading (start-up, restart)."""
        deadline = time.monotonic() + LOADING_WAIT_SECONDS
        while not self.warm and time.monotonic() < deadline:
            # Short steps: at start-up the first request usually waits only milliseconds for the
            # model, and a 50 ms step was a tenth of a restart's time to its first answer.
            await asyncio.sleep(0.005)
        return self.require_core()
