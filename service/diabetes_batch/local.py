"""The local engine: input files scored by `--workers` processes, each streaming its file's batches.

One file is one unit of work, done whole by one process (its output renamed into place at the end,
output.py), so the parent alone writes the manifest, and memory is a few batches per process
whatever the size of the input. Workers are forked from a fresh server process (forkserver) that
imported this module once, never from the parent: its Arrow thread pools do not survive a fork.
Each loads the prepared model once (the compiled form loads in milliseconds) and reports its
progress, in rows, to the parent's progress bar.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diabetes_batch.columns import check_schema, csv_types
from diabetes_batch.errors import BatchError
from diabetes_batch.inputs import NO_ROW_LIMIT, InputFile, Source
from diabetes_batch.model import ReadyModel, load_core
from diabetes_batch.output import FileOutput
from diabetes_batch.scorer import BatchScorer


@dataclass(frozen=True)
class FileJob:
    file: InputFile
    name: str  # of its outputs
    keep: tuple[str, ...]


def open_source(file: InputFile, scorer: BatchScorer, keep: tuple[str, ...]) -> Source:
    """The file opened on the columns the job reads, its feature columns' types checked."""
    features = scorer.features
    columns = list(dict.fromkeys([*keep, *(f.name for f in features)]))
    source = Source(file, columns, csv_types(features))
    check_schema(file.path, source.schema, features)
    return source


def score_file(
    job: FileJob, scorer: BatchScorer, out_dir: Path, progress: Callable[[int], None], parent: int | None = None
) -> dict[str, Any]:
    """Score one file into its outputs; what the manifest records of it. Nothing is left of it on failure."""
    source = open_source(job.file, scorer, job.keep)
    kept = [source.schema.field(name) for name in job.keep]
    output = FileOutput(out_dir, job.name, job.file.path, kept, scorer)
    try:
        first_row = 0
        for batch in source.batches():
            if parent is not None and not _alive(parent):
                raise BatchError("the job's parent process is gone")  # killed: leave the rerun alone
            if batch.num_rows:
                output.add(batch, first_row, scorer.score(batch))
            first_row += batch.num_rows
            progress(batch.num_rows)
        return {**output.commit(), "rows": first_row}
    except BaseException:
        output.abort()
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the worker processes -------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _start_worker(ready: dict, method: str | None, out_dir: str, progress: Any, parent: int) -> None:
    core = load_core(ReadyModel.from_dict(ready), max_rows=NO_ROW_LIMIT)
    _worker.update(scorer=BatchScorer(core, method), out_dir=Path(out_dir), progress=progress, parent=parent)


def _score_in_worker(job: FileJob) -> dict[str, Any]:
    progress = _worker["progress"]
    return score_file(job, _worker["scorer"], _worker["out_dir"], progress.put, _worker["parent"])


def run_local(
    jobs: list[FileJob],
    ready: ReadyModel,
    scorer: BatchScorer,
    out_dir: Path,
    workers: int,
    on_done: Callable[[FileJob, dict[str, Any]], None],
    progress: Callable[[int], None],
) -> None:
    """Score every job's file, calling `on_done` (in this process) as each is complete."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_done(job, score_file(job, scorer, out_dir, progress))
        return
    context = multiprocessing.get_context("forkserver")
    # The server imports this module once (and scikit-learn, for a model that has no compiled form
    # to load with numpy alone); each worker is forked from it, not started afresh.
    heavy = [] if ready.resolved.compiled else ["sklearn.pipeline", "sklearn.compose", "sklearn.linear_model", "pandas"]
    context.set_forkserver_preload([__name__, *heavy])
    updates = context.Queue()
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(ready.to_dict(), scorer.method, str(out_dir), updates, os.getpid()),
    ) as pool:
        pending = {pool.submit(_score_in_worker, job): job for job in jobs}
        try:
            while pending:
                done, _ = concurrent.futures.wait(pending, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
                _drain(updates, progress)
                for future in done:
                    job = pending.pop(future)
                    on_done(job, future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            _drain(updates, progress)


def _drain(updates: Any, progress: Callable[[int], None]) -> None:
    while True:
        try:
            progress(updates.get_nowait())
        except queue.Empty:
            return
