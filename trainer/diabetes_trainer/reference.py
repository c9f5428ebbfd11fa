"""The reference profile of a run's training data, logged with its model (issue 24, item 2).

Drift is measured against it later (`diabetes monitor`), from the payloads the service logs; so the
profile names the columns as the payload log does: each input feature under its signature name, and
the model's outputs as `prediction` (what `predict` answers) and, for a classifier, `proba_<class>`
(what `predict_proba` answers), whichever of them the service is asked to serve. It is a compact
summary (diabetes_monitor.profile: quantiles, histograms, categories, null rates), never the rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diabetes_monitor.profile import PROFILE_FILE, build_profile, save


def outputs_of(estimator: Any, inputs: Any) -> dict[str, Any]:
    """The model's outputs on `inputs`, under the payload log's column names."""
    outputs: dict[str, Any] = {"prediction": estimator.predict(inputs)}
    if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
        proba = estimator.predict_proba(inputs)
        outputs.update({f"proba_{label}": proba[:, i] for i, label in enumerate(estimator.classes_)})
    return outputs


def write_profile(estimator: Any, inputs: Any, folder: Path, *, source: str) -> Path:
    """The profile of `inputs` (a DataFrame: the training rows) and the model's outputs on them,
    written as `folder/reference_profile.json`."""
    features = {str(name): inputs[name].to_numpy() for name in inputs.columns}
    profile = build_profile(features, outputs_of(estimator, inputs), source=source)
    return save(profile, folder / PROFILE_FILE)
