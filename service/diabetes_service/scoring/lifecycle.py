"""The served model's life in one worker: load and warm it at start-up, swap in each new version.

The model loads in a background thread at start-up, so that the liveness probe answers at once and
readiness turns 200 only once the model is loaded and warm. Under the supervisor with `--follow`,
the event loop's tick (`follow_generation`) notices a newly announced version on the heartbeat
board, loads and warms it in a thread, and swaps it in between requests: requests already running
keep the core they started with. Whoever serves the model hears of each one through `served`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from diabetes_service import board
from diabetes_service.errors import EXIT_MODEL_LOAD_FAILED, ModelLoadError
from diabetes_service.model.loading import load_compiled, load_model
from diabetes_service.model.pyfunc import read_pyfunc
from diabetes_service.model.resolution import ResolvedModel, await_announcement
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.scoring.core import ModelIdentity, ScoringCore
from diabetes_service.scoring.state import ServiceState
from diabetes_service.settings import ServiceSettings

log = logging.getLogger("diabetes_service")


class ModelLifecycle:
    def __init__(
        self, settings: ServiceSettings, state: ServiceState, served: Callable[[ScoringCore], None] | None = None
    ) -> None:
        self.settings = settings
        self.state = state
        self.served = served  # called on the model's way in, each version (the app's headers and metrics)
        self.generation = 0  # of the model this worker serves (board.py)
        self.swapping = False
        self.on_warm: Callable[[], None] | None = None  # called once, from the load thread, when first warm

    # -- start-up ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load, warm up, then report ready. Runs in a thread; exits the worker on failure."""
        settings = self.settings
        prepared = ResolvedModel(
            settings.model_path or settings.model_uri, self.state.model_name, self.state.model_version
        )
        if settings.prepared_file:  # forked before the model was prepared: wait for the supervisor
            prepared = await_announcement(Path(settings.prepared_file), give_up=lambda: self.state.draining)
            if prepared is None:
                return
            self.generation = prepared.generation
        try:
            core = self.warm_core(prepared)
        except ModelLoadError as exc:
            self._fail(str(exc))
        except Exception as exc:  # the model's own code failed while warming up
            self._fail(f"the model failed its warm-up prediction: {type(exc).__name__}: {exc}")
        # Everything loaded so far (libraries, the model) lives as long as the worker: frozen out of
        # the collector's reach, so that a full collection under load, with requests' rows alive,
        # need not walk scikit-learn's and SciPy's objects too (~50 ms pauses otherwise).
        gc.freeze()
        self._serve(core)

    def warm_core(self, prepared: ResolvedModel) -> ScoringCore:
        """The prepared model loaded into a core that has answered its warm-up prediction."""
        if prepared.compiled:
            loaded = load_compiled(prepared.compiled)
        else:
            loaded = load_model(prepared.path, TrustPolicy.from_settings(self.settings))
        identity = ModelIdentity(prepared.name, prepared.version, prepared.sha256 or loaded.sha256)
        pyfunc = read_pyfunc(prepared.path, recorded=loaded.predict_fn)
        core = ScoringCore(loaded, identity, max_rows=self.settings.max_rows, pyfunc=pyfunc)
        core.warm_up()
        return core

    def _serve(self, core: ScoringCore) -> None:
        state = self.state
        state.model_name, state.model_version = core.identity.name, core.identity.version
        state.mark_warm(core)
        if self.served is not None:
            self.served(core)
        log.info("model %s version %s ready (%s)", state.model_name, state.model_version, core.model_class)
        if self.on_warm is not None:  # the first time only: what waited for the model (worker.py's gRPC)
            on_warm, self.on_warm = self.on_warm, None
            on_warm()

    def _fail(self, reason: str) -> None:
        print(f"diabetes serve: cannot serve the model: {reason}", file=sys.stderr, flush=True)
        os._exit(EXIT_MODEL_LOAD_FAILED)

    # -- new versions ------------------------------------------------------------------------

    def follow_generation(self) -> None:
        """On the event loop, each tick: swap in the version the supervisor announced, if it is new."""
        if board.current is None or self.swapping or not self.state.warm:
            return
        generation = board.current[0].generation()
        if generation == self.generation:
            return
        self.swapping = True
        task = asyncio.get_running_loop().run_in_executor(None, self._load_announced)
        task.add_done_callback(lambda done: self._swap(done, generation))

    def _load_announced(self) -> tuple[int, ScoringCore]:
        prepared = await_announcement(Path(self.settings.prepared_file or ""), give_up=lambda: True)
        if prepared is None:
            raise ModelLoadError("no model announced")
        return prepared.generation, self.warm_core(prepared)

    def _swap(self, done: asyncio.Future, generation: int) -> None:
        # On the loop, between requests: requests already running keep the core they started with.
        self.swapping = False
        if done.exception() is not None:
            self.generation = generation  # not retried: the supervisor announces the next version
            log.error("could not swap in the announced model: %s", done.exception())
            return
        self.generation, core = done.result()
        gc.unfreeze()  # the old model may be collected once no request holds it
        self._serve(core)
        gc.collect()
        gc.freeze()
