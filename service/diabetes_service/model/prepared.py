"""The content-addressed cache of prepared models: compiled, verified, keyed by the artifact's sha256.

Preparing a model (loading it with scikit-learn, scoring probe rows, compiling a linear model to
numpy arrays) costs seconds, mostly importing scikit-learn; loading the prepared form costs
milliseconds and numpy alone. So the form is kept, keyed by the artifact file's digest (and a
digest of the MLmodel file and input example beside it), and a restart, a new replica from an
image with the form baked in, or a pinned registry version seen before starts from it.

An entry records the digest of each of its own files. One that does not match (a partial copy, a
disk error, a hand edit) is ignored and prepared again, never trusted; nothing in it is executable
(arrays are read with `allow_pickle=False`, the rest is JSON). Entries are written to a temporary
folder and renamed into place whole.

Where: every folder in `DIABETES_PREPARED_MODELS` (os.pathsep-separated, read-only: the image bakes
its model's entry at /opt/prepared), then `prepared/` in the model cache (`DIABETES_MODEL_CACHE`),
which is the one written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diabetes_service.model.artifact import artifact_sha256, context_sha256, file_sha256

FORMAT = 3  # bump when the prepared form changes meaning: older entries are then prepared again
# (2: trust facts; 3: the pyfunc predict_fn)
ENTRY_FILE = "entry.json"
BAKED_ENV = "DIABETES_PREPARED_MODELS"


@dataclass(frozen=True)
class PreparedKey:
    artifact_sha256: str
    context_sha256: str

    @property
    def folder_name(self) -> str:
        return f"{self.artifact_sha256}.{self.context_sha256[:16]}"


def key_of(model_path: str | Path) -> PreparedKey | None:
    """The key of a local model (folder or file); None when it holds no artifact file."""
    digest = artifact_sha256(model_path)
    return None if digest is None else PreparedKey(digest, context_sha256(model_path))


def model_cache_root() -> Path:
    """Where downloaded models and prepared forms are kept on this machine."""
    base = os.environ.get("DIABETES_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(tempfile.gettempdir(), "diabetes-cache"), "models"
    )
    return Path(base)


def writable_root() -> Path:
    return model_cache_root() / "prepared"


def roots() -> list[Path]:
    baked = [Path(part) for part in os.environ.get(BAKED_ENV, "").split(os.pathsep) if part]
    return [*baked, writable_root()]


def lookup(key: PreparedKey) -> Path | None:
    """The folder of a sound entry for `key`, or None (no entry, or none that matches its digests)."""
    for root in roots():
        entry = root / key.folder_name
        if is_sound(entry, key):
            return entry
    return None


def is_sound(entry: Path, key: PreparedKey) -> bool:
    """Whether `entry` was made for `key` and every file in it still has the digest it was written with."""
    try:
        manifest = json.loads((entry / ENTRY_FILE).read_text())
        files = manifest["files"]
        if (
            manifest.get("format") != FORMAT
            or manifest.get("artifact_sha256") != key.artifact_sha256
            or manifest.get("context_sha256") != key.context_sha256
            or not isinstance(files, dict)
            or not files
        ):
            return False
        present = {path.name for path in entry.iterdir() if path.name != ENTRY_FILE}
        if present != set(files):
            return False
        return all(file_sha256(entry / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def store(key: PreparedKey, write: Callable[[Path], None], root: Path | None = None) -> Path | None:
    """Write an entry with `write(folder)`, then rename it into place; None if the cache is not writable."""
    root = root or writable_root()
    staging: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
        write(staging)
        files = {path.name: file_sha256(path) for path in sorted(staging.iterdir())}
        manifest = {
            "format": FORMAT,
            "artifact_sha256": key.artifact_sha256,
            "context_sha256": key.context_sha256,
            "files": files,
        }
        (staging / ENTRY_FILE).write_text(json.dumps(manifest, indent=1))
        target = root / key.folder_name
        if target.exists() and not is_sound(target, key):
            shutil.rmtree(target)  # a damaged entry is replaced, not reused
        try:
            os.replace(staging, target)
        except OSError:
            # Another process put a sound entry there first (a non-empty folder is not replaced).
            if not is_sound(target, key):
                raise
        staging = None if not staging.exists() else staging
        return target
    except OSError:
        return None
    finally:
        if staging is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(staging)
