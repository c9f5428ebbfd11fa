"""The content-addressed cache of prepared models: compiled, verified, keyed by the artifact's sha256.

Preparing a model (loading it with scikit-learn, scoring probe rows, compiling a linear model, or
a typed pipeline of encoders and a linear model, to numpy arrays: model/compile/) costs seconds,
mostly importing scikit-learn; loading the prepared form costs milliseconds and numpy alone. So
the form is kept, keyed by the artifact file's digest (and a digest of the MLmodel file and input
example beside it), and a restart, a new replica from an image with the form baked in, or a
pinned registry version seen before starts from it.

An entry records the digest of each of its own files. One that does not match (a partial copy, a
disk error, a hand edit) is ignored and prepared again, never trusted; nothing in it is executable
(arrays are read with `allow_pickle=False`, the rest is JSON). Entries are written to a staging
folder and renamed into place whole (diabetes_store.cache.install). Being keyed by content, an entry
can never answer for another artifact: which artifact a registered version holds now is the
registry's to say, on every start (model/resolution.py).

Where: every folder in `DIABETES_PREPARED_MODELS` (os.pathsep-separated, read-only: the image bakes
its model's entry at /opt/prepared), then `prepared/` in the model cache (diabetes_store.cache:
`DIABETES_MODEL_CACHE`), which is the one written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diabetes_service.model.artifact import artifact_sha256, context_sha256, file_sha256
from diabetes_store.cache import cache_root, install

FORMAT = 4  # bump when the prepared form changes meaning: older entries are then prepared again
# (2: trust facts; 3: the pyfunc predict_fn; 4: typed pipelines' encoding, which code before it
# would read as a bare linear model)
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


def writable_root() -> Path:
    return cache_root() / "prepared"


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

    def fill(staging: Path) -> None:
        write(staging)
        files = {path.name: file_sha256(path) for path in sorted(staging.iterdir())}
        manifest = {
            "format": FORMAT,
            "artifact_sha256": key.artifact_sha256,
            "context_sha256": key.context_sha256,
            "files": files,
        }
        (staging / ENTRY_FILE).write_text(json.dumps(manifest, indent=1))

    try:
        # A damaged entry is replaced, not reused; a sound one another process wrote first is kept.
        return install((root or writable_root()) / key.folder_name, fill, keep=lambda entry: is_sound(entry, key))
    except OSError:
        return None
