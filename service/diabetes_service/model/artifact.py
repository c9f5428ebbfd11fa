"""Which file of a model folder holds the estimator, and its sha256: the model's identity.

The digest is taken over the artifact file itself (the pickle, joblib or skops file), so a model
downloaded again, copied into an image or mounted elsewhere keeps it. The prepared-model cache is
keyed by it, and so is the safe-loading pin. Reading the folder needs PyYAML at most: this runs in
the supervisor, before anything heavy is imported.
"""

from __future__ import annotations

from pathlib import Path

from diabetes_service.model.loading import model_file
from diabetes_service.model.trust import sha256_of

# Files beside the artifact that shape the prepared model too (features from the signature, probe
# rows from the input example): an entry is reused only while they are unchanged.
SIDE_FILES = ("MLmodel", "input_example.json")


def artifact_file(path: str | Path) -> Path | None:
    """The file holding the estimator (loading.model_file: the one locator); None if there is none."""
    try:
        file = model_file(Path(path))
    except Exception:  # an unreadable MLmodel file: the preparation child says why
        return None
    return file if file is not None and file.is_file() else None


def file_sha256(file: Path) -> str:
    return sha256_of(file)


def artifact_sha256(path: str | Path) -> str | None:
    """The sha256 (hex) of the model's artifact file, as the pin compares it; None if there is none."""
    file = artifact_file(path)
    return None if file is None else sha256_of(file)


def context_sha256(path: str | Path) -> str:
    """A digest of the files beside the artifact that the prepared form also depends on."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for name in SIDE_FILES:
            file = path / name
            digest.update(name.encode() + b"\0")
            digest.update(file.read_bytes() if file.is_file() else b"-")
            digest.update(b"\0")
    return digest.hexdigest()
