"""The scikit-learn version a model was saved with, against the one installed.

Pickled estimators are not portable across scikit-learn versions: across a major version they may
fail to load or, worse, load and answer differently. The MLmodel file's sklearn flavor
(`sklearn_version`) or the model's `requirements.txt` (`scikit-learn==X.Y.Z`) says which version
saved it; a different minor version is logged as a warning naming both, a different major version
refuses to serve unless the operator allows it (`--allow-version-mismatch`).
"""

from __future__ import annotations

import logging
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from diabetes_service.errors import ModelLoadError

log = logging.getLogger("diabetes_service")
_REQUIREMENT = re.compile(r"^\s*scikit-learn\s*==\s*([0-9][^\s;#]*)", re.MULTILINE)


def saved_with(folder: Path, mlmodel: dict[str, Any]) -> str | None:
    """The scikit-learn version the MLflow model folder says it was saved with, if it says."""
    flavor = (mlmodel.get("flavors") or {}).get("sklearn") or {}
    if flavor.get("sklearn_version"):
        return str(flavor["sklearn_version"])
    try:
        found = _REQUIREMENT.search((folder / "requirements.txt").read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def check_version(saved: str | None, allow_mismatch: bool, installed: str | None = None) -> None:
    """Warn on another minor version; refuse another major one unless allowed."""
    if saved is None:
        return
    if installed is None:
        try:
            installed = metadata.version("scikit-learn")
        except metadata.PackageNotFoundError:
            return
    theirs, ours = _major_minor(saved), _major_minor(installed)
    if theirs is None or ours is None or theirs == ours:
        return
    if theirs[0] != ours[0]:
        message = (
            f"the model was saved with scikit-learn {saved} and {installed} is installed: across major versions a "
            "pickled model may load wrongly"
        )
        if not allow_mismatch:
            raise ModelLoadError(message + "; install its version, or serve it anyway with --allow-version-mismatch")
        log.warning("%s; served anyway (--allow-version-mismatch)", message)
        return
    log.warning(
        "the model was saved with scikit-learn %s and %s is installed (another minor version)", saved, installed
    )


def _major_minor(version: str) -> tuple[int, int] | None:
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else None
