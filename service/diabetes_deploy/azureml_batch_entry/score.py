"""Azure ML batch scoring entry: each mini-batch's files scored by `diabetes batch`'s own code.

Azure ML's no-code MLflow batch deployments read CSV only and call `predict` once per whole file;
this entry reads Parquet or CSV in bounded batches (diabetes_batch.inputs), checks every row as the
online service does, and writes one Parquet output per input file (plus its `_rejected/` rows) into
the job's output folder. It is a data file of diabetes_deploy, not a module of it: it runs inside
Azure ML, next to the copies of diabetes_batch, diabetes_service and diabetes_store that
`diabetes deploy azureml --v2 --batch` uploads with it (diabetes_deploy itself must not import
diabetes_batch: the two are independent siblings).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

_state: dict[str, Any] = {}


def _model_folder(root: Path) -> Path:
    """The MLflow model folder (the one holding MLmodel) under AZUREML_MODEL_DIR."""
    for mlmodel in sorted(root.rglob("MLmodel")):
        return mlmodel.parent
    raise RuntimeError(f"{root}: no MLmodel file in the deployment's model")


def init() -> None:
    from diabetes_batch.inputs import NO_ROW_LIMIT
    from diabetes_batch.model import load_core, prepared_model
    from diabetes_batch.scorer import BatchScorer
    from diabetes_service.model.trust import TrustPolicy

    folder = _model_folder(Path(os.environ["AZUREML_MODEL_DIR"]))
    # The spec's trust settings, passed by the deployment under the service's own variable names.
    policy = TrustPolicy(
        allow_pickle=os.environ.get("DIABETES_ALLOW_PICKLE") == "1",
        sha256=os.environ.get("DIABETES_MODEL_SHA256") or None,
        trusted_types=tuple(t for t in os.environ.get("DIABETES_TRUSTED_TYPES", "").split(",") if t),
        allow_version_mismatch=os.environ.get("DIABETES_ALLOW_VERSION_MISMATCH") == "1",
    )
    stack = contextlib.ExitStack()  # the prepared model's files last as long as the process
    ready = stack.enter_context(prepared_model(str(folder), None, policy))
    core = load_core(ready, max_rows=NO_ROW_LIMIT)
    method = os.environ.get("DIABETES_BATCH_METHOD") or None
    keep = tuple(name for name in os.environ.get("DIABETES_BATCH_KEEP", "").split(",") if name)
    _state.update(stack=stack, scorer=BatchScorer(core, method), keep=keep)
    _state["out_dir"] = Path(os.environ.get("AZUREML_BI_OUTPUT_PATH") or os.environ.get("DIABETES_BATCH_OUTPUT", "."))


def run(mini_batch: list[str]) -> list[str]:
    """One summary line per input file: 'FILE: N rows scored, M rejected' (Azure counts one per file)."""
    from diabetes_batch.inputs import find_inputs
    from diabetes_batch.local import FileJob, score_file

    lines = []
    out_dir = _state["out_dir"]
    for path in mini_batch:
        for file in find_inputs([path], out_dir):
            job = FileJob(file, file.stem, _state["keep"])
            outputs = score_file(job, _state["scorer"], out_dir, lambda rows: None)
            lines.append(f"{Path(file.path).name}: {outputs['scored']} rows scored, {outputs['rejected']} rejected")
    return lines
