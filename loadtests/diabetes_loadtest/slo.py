"""SLOs: read from a YAML file, checked against Locust's `<prefix>_stats.csv` "Aggregated" row.

Beside them, the answer checks: any wrong answer in `<prefix>_failures.csv` fails the gate, whatever
the failure ratio (a run that got 200 where a 401 was due is not a pass, however few they were).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from diabetes_loadtest.checks import WRONG_ANSWER


class SloError(ValueError):
    """The SLO file or the statistics file cannot be used."""


@dataclass(frozen=True)
class SloKind:
    """One kind of SLO: how it reads the statistics and which way is good."""

    name: str
    column: str | None  # the stats CSV column, or None for the failure ratio
    at_most: bool
    unit: str


KINDS = {
    kind.name: kind
    for kind in (
        SloKind("p95_ms", "95%", True, "ms"),
        SloKind("p99_ms", "99%", True, "ms"),
        SloKind("failure_ratio", None, True, ""),
        SloKind("min_rps", "Requests/s", False, "req/s"),
    )
}


@dataclass(frozen=True)
class Slo:
    """A target for one kind."""

    kind: SloKind
    target: float


@dataclass(frozen=True)
class SloVerdict:
    """An SLO, what the run measured, and whether it passed."""

    slo: Slo
    measured: float

    @property
    def passed(self) -> bool:
        """At most / at least the target (a missing measurement never passes)."""
        if math.isnan(self.measured):
            return False
        if self.slo.kind.at_most:
            return self.measured <= self.slo.target
        return self.measured >= self.slo.target

    def line(self) -> str:
        """`SLO p95_ms: target <= 250 ms, measured 12 ms: PASS`."""
        kind = self.slo.kind
        unit = f" {kind.unit}" if kind.unit else ""
        sign = "<=" if kind.at_most else ">="
        return (
            f"SLO {kind.name}: target {sign} {self.slo.target:g}{unit}, "
            f"measured {self.measured:.4g}{unit}: {'PASS' if self.passed else 'FAIL'}"
        )


def load_slos(path: Path) -> list[Slo]:
    """The SLOs in `path`: a mapping of known names to numbers, at least one."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SloError(f"cannot read the SLO file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SloError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise SloError(f"{path}: expected a mapping of SLO names to numbers ({', '.join(KINDS)})")
    slos = []
    for name, target in doc.items():
        if name not in KINDS:
            raise SloError(f"{path}: unknown SLO {name!r} (known: {', '.join(KINDS)})")
        if not isinstance(target, int | float) or isinstance(target, bool) or not math.isfinite(target):
            raise SloError(f"{path}: SLO {name!r} must be a finite number")
        if target < 0:
            raise SloError(f"{path}: SLO {name!r} must not be negative")
        slos.append(Slo(KINDS[name], float(target)))
    return slos


def aggregated_row(stats_csv: Path) -> dict[str, str]:
    """The "Aggregated" row of Locust's `<prefix>_stats.csv`."""
    try:
        with stats_csv.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("Name") == "Aggregated":
                    return row
    except OSError as exc:
        raise SloError(f"cannot read {stats_csv}: {exc.strerror}") from None
    raise SloError(f"{stats_csv} has no Aggregated row")


def _number(row: dict[str, str], column: str) -> float:
    try:
        return float(row[column])
    except (KeyError, ValueError):
        return math.nan  # "N/A" when nothing was measured


def measure(row: dict[str, str], kind: SloKind) -> float:
    """The run's value for one kind of SLO."""
    if kind.column is not None:
        return _number(row, kind.column)
    requests = _number(row, "Request Count")
    return _number(row, "Failure Count") / requests if requests > 0 else math.nan


def evaluate(slos: list[Slo], stats_csv: Path) -> list[SloVerdict]:
    """Each SLO against the run's aggregated statistics."""
    row = aggregated_row(stats_csv)
    return [SloVerdict(slo, measure(row, slo.kind)) for slo in slos]


@dataclass(frozen=True)
class ChecksVerdict:
    """How many answers the checks found wrong (none is the only pass), and the commonest one."""

    wrong: int
    commonest: str | None = None

    @property
    def passed(self) -> bool:
        return self.wrong == 0

    def line(self) -> str:
        """`checks: target 0 wrong answers, measured 12 (/score ...: expected a 4xx, got 200): FAIL`."""
        example = f" ({self.commonest})" if self.commonest else ""
        return f"checks: target 0 wrong answers, measured {self.wrong}{example}: {'PASS' if self.passed else 'FAIL'}"


def check_answers(failures_csv: Path) -> ChecksVerdict:
    """Count the wrong answers in Locust's `<prefix>_failures.csv` (load shedding is not counted)."""
    counts: dict[str, int] = {}
    try:
        with failures_csv.open(newline="") as handle:
            for row in csv.DictReader(handle):
                error = row.get("Error") or ""
                if WRONG_ANSWER not in error:
                    continue
                # Locust wraps the text: CatchResponseError('wrong answer: expected a 4xx, got 200').
                reason = error.split(WRONG_ANSWER, 1)[1].rstrip("')\"")
                label = f"{row.get('Name', '?')}: {reason}"
                occurrences = _number(row, "Occurrences")
                counts[label] = counts.get(label, 0) + (int(occurrences) if occurrences > 0 else 1)
    except OSError as exc:
        raise SloError(f"cannot read {failures_csv}: {exc.strerror}") from None
    if not counts:
        return ChecksVerdict(0)
    return ChecksVerdict(sum(counts.values()), max(counts, key=lambda label: counts[label]))
