"""The printed report: one results table (Markdown, so it pastes into the README), then the targets."""

from __future__ import annotations

from loadtests.bench.results import Results
from loadtests.bench.targets import Check

HEADER = ("server", "rows/req", "conns", "req/s", "rows/s", "p50 ms", "p99 ms", "errors", "tree RSS MiB", "ready s")


def _markdown(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = [i > 0 for i in range(len(rows[0]))]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(row, widths, numeric, strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)
    )
    return "\n".join([line(rows[0]), rule + "|", *(line(row) for row in rows[1:])])


def results_table(results: Results) -> str:
    rows: list[tuple[str, ...]] = [HEADER]
    for cell in results.cells:
        rows.append(
            (
                cell.label,
                str(cell.rows),
                str(cell.connections),
                f"{cell.wrk.req_per_s:,.0f}",
                f"{cell.rows_per_s:,.0f}",
                f"{cell.wrk.p50_ms:.3f}",
                f"{cell.wrk.p99_ms:.3f}",
                str(cell.wrk.errors),
                f"{cell.rss_mib:.0f}",
                f"{cell.ready_seconds:.2f}",
            )
        )
    return _markdown(rows)


def ready_lines(results: Results) -> list[str]:
    lines = []
    if results.ready_local_folder is not None:
        lines.append(f"diabetes serve ready from a local model folder: {results.ready_local_folder:.2f} s")
    if results.ready_registry is not None:
        lines.append(f"diabetes serve ready from models:/ (first start, downloads): {results.ready_registry:.2f} s")
    if results.ready_registry_cached is not None:
        lines.append(f"diabetes serve ready from models:/ (download cached): {results.ready_registry_cached:.2f} s")
    return lines


def checks_table(checks: list[Check]) -> str:
    rows: list[tuple[str, ...]] = [("target", "measured", "result")]
    for check in checks:
        verdict = "n/a" if check.passed is None else ("PASS" if check.passed else "FAIL")
        rows.append((check.name, check.measured, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
