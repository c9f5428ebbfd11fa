"""The model cache on this machine: where downloads and prepared forms live, and how they get there.

Every folder in it is filled in a staging folder beside its place and renamed into place whole
(`install`), so an interrupted download or write is never mistaken for a finished one, and two
processes filling the same folder at once leave one whole copy. Downloads are keyed by what
identifies their content (identity.py for a registered version; a `runs:/` URI names its run), never
by a version number alone.

Where: `DIABETES_MODEL_CACHE`, else `$XDG_CACHE_HOME/models`, else `<tmp>/diabetes-cache/models`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from diabetes_store.identity import VersionIdentity


def cache_root() -> Path:
    """Where downloaded models and prepared forms are kept on this machine."""
    base = os.environ.get("DIABETES_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(tempfile.gettempdir(), "diabetes-cache"), "models"
    )
    return Path(base)


def version_folder(tracking_uri: str, identity: VersionIdentity) -> Path:
    """Where the files of a registered version's content are (or will be) kept."""
    return cache_root() / identity.digest(tracking_uri)


def uri_folder(tracking_uri: str, uri: str) -> Path:
    """Where the files of an artifact URI that names its run (`runs:/RUN/...`) are kept."""
    return cache_root() / hashlib.sha256(f"{tracking_uri}|{uri}".encode()).hexdigest()[:24]


def install(
    target: Path,
    fill: Callable[[Path], Path | None],
    keep: Callable[[Path], bool] = lambda existing: True,
) -> Path:
    """`target`, filled by `fill(staging)` in a new folder beside it and renamed into place whole.

    `fill` returns the folder to put in place when it is not `staging` itself (a download nested one
    level down). A folder already at `target` that `keep` rejects (a damaged entry) is replaced; one
    another process put there first is kept when `keep` accepts it. Whatever happens, no staging
    folder is left behind; a failure of `fill` propagates with `target` untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        ready = fill(staging) or staging
        if target.exists() and not keep(target):
            shutil.rmtree(target)
        try:
            os.replace(ready, target)
        except OSError:
            # A non-empty folder is not replaced: another process finished first.
            if not (target.is_dir() and keep(target)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
