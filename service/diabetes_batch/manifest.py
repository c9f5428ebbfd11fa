"""What a job's output folder holds, so that a rerun after a kill finishes the job with every row once.

`DIR/_manifest.json` names the job (model name, version and artifact sha256, method, kept columns)
and, for each input file done, its size and modification time and the outputs written for it. It is
rewritten whole (temporary file, then rename) after each file's outputs have been renamed into place
(output.py), so it never names an output that is not complete. A rerun skips the files it names
(unchanged since) and redoes every other, replacing whatever an interrupted run left of them; a
rerun with another model, method or kept columns is refused rather than mixed in, unless
`--overwrite` starts over. A lock on `DIR/.lock` keeps a second job out of a folder in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from diabetes_batch.errors import BatchError
from diabetes_batch.inputs import InputFile
from diabetes_batch.output import REJECTED_DIR, STAGING_PREFIX

MANIFEST = "_manifest.json"
LOCK = ".lock"
FORMAT = 1


def output_names(files: list[InputFile]) -> dict[str, str]:
    """Each input's output name: its file name's stem, with a digest of its path where two stems meet."""
    stems: dict[str, int] = {}
    for file in files:
        stems[file.stem] = stems.get(file.stem, 0) + 1
    return {file.path: file.stem if stems[file.stem] == 1 else f"{file.stem}-{_digest(file.path)}" for file in files}


def _digest(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:8]


class Manifest:
    def __init__(self, out_dir: Path, job: dict[str, Any], *, overwrite: bool) -> None:
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST
        out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = (out_dir / LOCK).open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise BatchError(f"{out_dir}: another diabetes batch job is writing to this folder") from None
        try:
            previous = self._read()
        except BatchError:
            if not overwrite:
                raise
            previous = None
        if overwrite:
            self._clear(previous)
            previous = None
        elif previous is not None and previous.get("job") != job:
            raise BatchError(
                f"{out_dir} holds the output of another job ({_describe(previous.get('job'))}, not {_describe(job)}):"
                " pass --overwrite to start over, or choose another --output"
            )
        self._drop_staging()
        self.job = job
        self.files: dict[str, dict[str, Any]] = (previous or {}).get("files", {})
        self._write()

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise BatchError(f"{self.path}: unreadable; pass --overwrite to start over") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BatchError(f"{self.path}: not a manifest this version writes; pass --overwrite to start over")
        return data

    def _clear(self, previous: dict[str, Any] | None) -> None:
        """Every output this folder's manifest names, the refused rows and the manifest itself."""
        for entry in (previous or {}).get("files", {}).values():
            with contextlib.suppress(FileNotFoundError, TypeError):
                (self.out_dir / entry["output"]).unlink()
        shutil.rmtree(self.out_dir / REJECTED_DIR, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _drop_staging(self) -> None:
        for folder in (self.out_dir, self.out_dir / REJECTED_DIR):
            if folder.is_dir():
                for path in folder.glob(f"{STAGING_PREFIX}*"):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)

    def done(self, file: InputFile) -> bool:
        """Whether `file`, as it is now, was scored by this job and its outputs are all there."""
        entry = self.files.get(file.path)
        if entry is None or entry.get("size") != file.size or entry.get("mtime_ns") != file.mtime_ns:
            return False
        outputs = [entry.get("output"), entry.get("rejected_output")]
        return all((self.out_dir / name).exists() for name in outputs if name)

    def entry(self, file: InputFile) -> dict[str, Any]:
        return self.files[file.path]

    def record(self, file: InputFile, outputs: dict[str, Any]) -> None:
        self.files[file.path] = {"size": file.size, "mtime_ns": file.mtime_ns, **outputs}
        self._write()

    def _write(self) -> None:
        partial = self.path.with_name(f"{STAGING_PREFIX}{MANIFEST}")
        partial.write_text(json.dumps({"format": FORMAT, "job": self.job, "files": self.files}, indent=1))
        os.replace(partial, self.path)

    def close(self) -> None:
        self._lock.close()


def _describe(job: Any) -> str:
    if not isinstance(job, dict):
        return "unknown"
    model = job.get("model") or {}
    return f"model {model.get('name')} version {model.get('version')}, {job.get('method')}, keep {job.get('keep')}"
