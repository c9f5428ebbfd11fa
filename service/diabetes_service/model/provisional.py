"""A first start serves a linear model from its artifact's arrays while scikit-learn verifies them.

Without a prepared form in the cache, the preparation child needs about 2 s (importing scikit-learn
and skops) before the workers have anything to load. For the linear regressors that
model/compile/skops_linear.py reads without scikit-learn, the supervisor writes that form into its own
work folder and announces it at once; the child runs as before (loads the artifact with skops,
scores probe rows, compiles and compares) and only its verified form enters the cache. When the
child is done (supervisor/follow.py):
- it compiled the same arithmetic (same features, same answers on probe rows): nothing changes;
- it did not (a different form, or scikit-learn serves the model itself): its form is announced as
  a new generation, the workers swap it in between requests, and the log says so;
- it failed: the service stops, as it does when a first preparation fails.
The same trust policy applies to both (the pin, skops' types); a pickle is never read this way.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from diabetes_service.model.resolution import Plan, ResolvedModel
from diabetes_service.model.trust import TrustPolicy


def provisional_model(plan: Plan, folder: Path, policy: TrustPolicy) -> ResolvedModel | None:
    """The plan's local model, compiled from its artifact's arrays into `folder`; None when it is not
    one model/compile/skops_linear.py reads (the preparation child's result is then the first one served)."""
    located, digest = plan.located, plan.sha256
    if located is None or digest is None or not (Path(located.path) / "MLmodel").is_file():
        return None
    import yaml

    from diabetes_service.model.compile import linear, skops_linear
    from diabetes_service.model.loading import parse_mlmodel

    try:
        mlmodel = parse_mlmodel((Path(located.path) / "MLmodel").read_text())
        found = skops_linear.read(Path(located.path), mlmodel, digest, policy) if isinstance(mlmodel, dict) else None
        if found is None:
            return None
        compiled, meta = found
        linear.save(compiled, folder, meta)
    except (OSError, yaml.YAMLError):
        return None
    features = tuple(feature["name"] for feature in meta["features"])
    return replace(located, compiled=str(folder), features=features, sha256=digest, provisional=True)


def same_answers(provisional: ResolvedModel, verified: ResolvedModel) -> bool:
    """Whether the verified form answers as the provisional one: same features, same kind of model,
    the same predictions on the probe rows the preparation uses."""
    from diabetes_service.model.compile.linear import answers_agree, load
    from diabetes_service.model.probes import probe_rows

    if verified.compiled is None or provisional.compiled is None:
        return False
    if list(verified.features) != list(provisional.features):
        return False
    ours, meta = load(Path(provisional.compiled))
    theirs, _ = load(Path(verified.compiled))
    if ours.kind != theirs.kind:
        return False
    width = len(provisional.features)
    probe = probe_rows(meta.get("input_example") or [[0.0] * width], width)
    return answers_agree(ours.predict(probe), theirs.predict(probe))
