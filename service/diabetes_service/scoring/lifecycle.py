"""The served model's life in one worker: load and warm it at start-up, swap in each new version.

The model loads in a background thread at start-up, so that the liveness probe answers at once and
readiness turns 200 only once the model is loaded and warm. Under the supervisor with `--follow`,
the event loop's tick (`follow_generation`) notices a newly announced version on the heartbeat
board, loads and warms it in a thread, and swaps it in between requests: requests already running
keep the core they started with. Whoever serves the model hears of each one through `served`.

During a safe rollout (scoring/rollout.py) the challenger is loaded the same way, after the model and
before the worker reports warm, and follows its own generation on the board: a worker holds both, and
says on the board which challenger generation it serves (`--promote-after` counts from when every
warm worker serves it: supervisor/rollout.py).
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
from diabetes_service.model.resolution import (
    ResolvedModel,
    await_announcement,
    challenger_announcement,
    local_model,
)
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
        self.challenger_generation = 0  # of a rollout's challenger
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
            if self.state.rollout is not None and not self._load_challenger(core):
                return
        except ModelLoadError as exc:
            self._fail(str(exc))
        except Exception as exc:  # the model's own code failed while warming up
            self._fail(f"the model failed its warm-up prediction: {type(exc).__name__}: {exc}")
        # Everything loaded so far (libraries, the model) lives as long as the worker: frozen out of
        # the collector's reach, so that a full collection under load, with requests' rows alive,
        # need not walk scikit-learn's and SciPy's objects too (~50 ms pauses otherwise).
        gc.freeze()
        self._serve(core)

    def warm_core(self, prepared: ResolvedModel, policy: TrustPolicy | None = None) -> ScoringCore:
        """The prepared model loaded into a core that has answered its warm-up prediction."""
        if prepared.compiled:
            loaded = load_compiled(prepared.compiled)
        else:
            loaded = load_model(prepared.path, policy or TrustPolicy.from_settings(self.settings))
        identity = ModelIdentity(prepared.name, prepared.version, prepared.sha256 or loaded.sha256)
        pyfunc = read_pyfunc(prepared.path, recorded=loaded.predict_fn)
        core = ScoringCore(loaded, identity, max_rows=self.settings.max_rows, pyfunc=pyfunc)
        core.warm_up()
        return core

    def _load_challenger(self, champion: ScoringCore) -> bool:
        """Load and warm the rollout's challenger (False: the worker stops before it was announced)."""
        settings = self.settings
        if settings.prepared_file:
            announced = await_announcement(
                challenger_announcement(settings.prepared_file), give_up=lambda: self.state.draining
            )
            if announced is None:
                return False
            self.challenger_generation = announced.generation
        else:  # run alone: a local challenger
            announced = local_model(settings.challenger or "")
        core = self.warm_core(announced, self._challenger_policy())
        if core.feature_names != champion.feature_names:  # the supervisor refuses it first; run alone, here
            raise ModelLoadError(
                f"the challenger takes the features {list(core.feature_names)}, not the model's "
                f"{list(champion.feature_names)}: a challenger must take the champion's inputs"
            )
        assert self.state.rollout is not None
        self.state.rollout.serve_challenger(core, self.state.runner_type)
        self._challenger_served(self.challenger_generation)
        return True

    @staticmethod
    def _challenger_served(generation: int) -> None:
        # On the board, for --promote-after's clock: it runs once every worker serves this challenger.
        if board.current is not None:
            workers, slot = board.current
            workers.serve_challenger(slot, generation)

    def _challenger_policy(self) -> TrustPolicy:
        # `--model-sha256` pins the champion's artifact, not the challenger's.
        return TrustPolicy.from_settings(self.settings.model_copy(update={"model_sha256": None}))

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
        if self.state.rollout is not None and board.current[0].challenger_generation() != self.challenger_generation:
            self._follow_challenger(board.current[0].challenger_generation())
            return
        generation = board.current[0].generation()
        if generation == self.generation:
            return
        self.swapping = True
        task = asyncio.get_running_loop().run_in_executor(None, self._load_announced)
        task.add_done_callback(lambda done: self._swap(done, generation))

    def _follow_challenger(self, generation: int) -> None:
        self.swapping = True

        def load() -> ScoringCore:
            path = challenger_announcement(self.settings.prepared_file or "")
            prepared = await_announcement(path, give_up=lambda: True)
            if prepared is None:
                raise ModelLoadError("no challenger announced")
            return self.warm_core(prepared, self._challenger_policy())

        def swap(done: asyncio.Future) -> None:
            self.swapping = False
            self.challenger_generation = generation  # a failure is not retried: the next version is announced
            if done.exception() is not None:
                log.error("could not swap in the announced challenger: %s", done.exception())
            elif self.state.rollout is not None:
                self.state.rollout.serve_challenger(done.result(), self.state.runner_type)
                self._challenger_served(generation)

        asyncio.get_running_loop().run_in_executor(None, load).add_done_callback(swap)

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
