"""A batch job from start to summary: find the inputs, make the model ready as `serve` does, check
every file before any row is scored, skip what an earlier run finished, score the rest with the
chosen engine, and sum it up.

Every file is opened and its columns checked against the signature first (a missing column, a type
the model cannot take): such a mistake stops the job with one line naming the file and the column
before anything is written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diabetes_batch.errors import BatchError
from diabetes_batch.inputs import NO_ROW_LIMIT, find_inputs
from diabetes_batch.local import FileJob, open_source, run_local
from diabetes_batch.manifest import Manifest, output_names
from diabetes_batch.model import ReadyModel, load_core
from diabetes_batch.output import RESERVED
from diabetes_batch.scorer import BatchScorer
from diabetes_service.scoring.core import ScoringError


@dataclass(frozen=True)
class BatchOptions:
    inputs: tuple[str, ...]
    output: Path
    method: str | None = None  # None: what MLflow's pyfunc calls (the MLmodel's predict_fn), as spark_udf does
    keep: tuple[str, ...] = ()
    engine: str = "local"
    spark_master: str | None = None
    workers: int | None = None  # None: the CPUs this process may use
    max_rejected: int | None = None
    overwrite: bool = False


@dataclass
class Summary:
    model: str
    method: str
    files: int = 0
    skipped: int = 0  # done by an earlier run
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    output: str = ""
    rejected_files: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "files": self.files,
            "skipped_files": self.skipped,
            "rows": self.rows,
            "scored": self.scored,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "output": self.output,
        }

    def line(self) -> str:
        done = f", {self.skipped} done before" if self.skipped else ""
        return (
            f"scored {self.scored} rows, rejected {self.rejected}, of {self.rows} in {self.files} files{done},"
            f" in {self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s) with {self.model} {self.method};"
            f" output in {self.output}"
        )


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_job(
    options: BatchOptions, ready: ReadyModel, progress: Callable[[int | None], Callable[[int], None]] | None = None
) -> Summary:
    """Score `options.inputs` with the prepared model `ready`; `progress(total rows)` gives a callback for rows done."""
    started = time.perf_counter()
    out_dir = options.output.resolve()
    files = find_inputs(options.inputs, out_dir)
    core = load_core(ready, max_rows=NO_ROW_LIMIT)
    try:
        scorer = BatchScorer(core, options.method)
    except ScoringError as exc:
        raise BatchError(f"--method: {exc.message}") from None
    clash = [name for name in options.keep if name in RESERVED or name in scorer.output_names()]
    if clash:
        raise BatchError(f"--keep {clash[0]}: the output has a column of that name already")
    names = output_names(files)
    jobs = [FileJob(file, names[file.path], options.keep) for file in files]
    counts = [open_source(job.file, scorer, options.keep).num_rows for job in jobs]  # every file checked first
    total = None if None in counts else sum(counts)  # type: ignore[arg-type]
    identity = core.identity
    summary = Summary(f"{identity.name} version {identity.version}", scorer.method, files=len(files))
    summary.output = str(out_dir)
    job_facts = {
        "model": {"name": identity.name, "version": identity.version, "sha256": identity.sha256},
        "method": scorer.method,
        "keep": list(options.keep),
    }
    manifest = Manifest(out_dir, job_facts, overwrite=options.overwrite)
    try:
        todo = []
        for job in jobs:
            if manifest.done(job.file):
                _count(summary, manifest.entry(job.file))
                summary.skipped += 1
            else:
                todo.append(job)
        remaining = None if total is None else total - summary.rows
        advance: Callable[[int], None]
        advance = progress(remaining) if progress is not None else (lambda rows: None)

        def on_done(job: FileJob, outputs: dict[str, Any]) -> None:
            manifest.record(job.file, outputs)
            _count(summary, outputs)

        if options.engine == "spark":
            from diabetes_batch.spark import run_spark

            run_spark(todo, ready, scorer, out_dir, options.spark_master, on_done)
        else:
            run_local(todo, ready, scorer, out_dir, options.workers or default_workers(), on_done, advance)
    finally:
        manifest.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _count(summary: Summary, outputs: dict[str, Any]) -> None:
    summary.rows += int(outputs.get("rows", 0))
    summary.scored += int(outputs.get("scored", 0))
    summary.rejected += int(outputs.get("rejected", 0))
    if outputs.get("rejected_output"):
        summary.rejected_files.append(str(outputs["rejected_output"]))
