"""The model of a batch job, made ready exactly as `diabetes serve` makes it: resolved, trusted,
checked and compiled by the service's preparation step (model/preparation.py: the prepared-model
cache, else the child that resolves `models:/` URIs and loads the artifact under the trust policy),
then loaded and warmed into the service's scoring core, with the same compiled fast paths.

What the workers of a job (local processes, Spark executors) load is the prepared model, not the
URI: the registry is asked once per job, and every worker scores the very version the job reported.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from diabetes_batch.errors import BatchError
from diabetes_service.errors import ModelLoadError
from diabetes_service.model.resolution import ResolvedModel
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.scoring.core import ModelIdentity, ScoringCore


@dataclass(frozen=True)
class ReadyModel:
    """What a worker needs to load the job's model: the prepared model and the policy it passed."""

    resolved: ResolvedModel
    policy: TrustPolicy

    def to_dict(self) -> dict:
        return {"resolved": asdict(self.resolved), "policy": asdict(self.policy)}

    @classmethod
    def from_dict(cls, given: dict) -> ReadyModel:
        policy = {**given["policy"], "trusted_types": tuple(given["policy"]["trusted_types"])}
        return cls(ResolvedModel(**given["resolved"]), TrustPolicy(**policy))


@contextlib.contextmanager
def prepared_model(uri: str, tracking_uri: str | None, policy: TrustPolicy) -> Iterator[ReadyModel]:
    """The model at `uri`, prepared as the service prepares it; its files last as long as the block."""
    from diabetes_service.model.preparation import Preparation

    with tempfile.TemporaryDirectory(prefix="diabetes-batch-") as work:
        preparation = Preparation(uri, tracking_uri, Path(work), policy)
        try:
            while True:
                resolved = preparation.outcome()
                # A provisional model (read from the artifact's arrays before scikit-learn has
                # verified them) is fine for a service's first seconds, not for a whole dataset.
                if resolved is not None and not resolved.provisional:
                    break
                time.sleep(0.02)
        except ModelLoadError as exc:
            raise BatchError(f"cannot load the model: {exc}") from None
        finally:
            preparation.stop()
        yield ReadyModel(resolved, policy)


def load_core(ready: ReadyModel, max_rows: int) -> ScoringCore:
    """The warmed scoring core of the prepared model, built as a service worker builds it
    (transport/app.py's `_warm_core`)."""
    from diabetes_service.model.loading import load_compiled, load_model
    from diabetes_service.model.pyfunc import read_pyfunc

    prepared = ready.resolved
    try:
        loaded = load_compiled(prepared.compiled) if prepared.compiled else load_model(prepared.path, ready.policy)
    except ModelLoadError as exc:
        raise BatchError(f"cannot load the model: {exc}") from None
    identity = ModelIdentity(prepared.name, prepared.version, prepared.sha256 or loaded.sha256)
    pyfunc = read_pyfunc(prepared.path, recorded=loaded.predict_fn)
    core = ScoringCore(loaded, identity, max_rows=max_rows, pyfunc=pyfunc)
    try:
        core.warm_up()
    except Exception as exc:  # the model's own code failed, as a service worker would stop on it
        raise BatchError(f"the model failed its warm-up prediction: {type(exc).__name__}: {exc}") from None
    return core
