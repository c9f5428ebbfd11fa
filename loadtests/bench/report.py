"""The printed report: one results table (Markdown, so it pastes into the README), then the targets."""

from __future__ import annotations

from loadtests.bench.results import Results
from loadtests.bench.targets import Check

HEADER = (
    "server",
    "rows/req",
    "conns",
    "req/s",
    "rows/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "tree RSS MiB",
    "ready s",
    "CPU µs/req",
)


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
                f"{cell.cpu_us_per_request:.0f}",
            )
        )
    return _markdown(rows)


def ready_lines(results: Results) -> list[str]:
    """Start-up of `diabetes serve`: readiness route first 200, and every worker scoring."""
    lines = []
    for what, startup in (
        ("a local model folder", results.local_folder),
        ("models:/ (first start: resolves and downloads)", results.registry),
        ("models:/ (download cached)", results.registry_cached),
    ):
        if startup is not None:
            lines.append(
                f"diabetes serve from {what}: ready {startup.ready:.2f} s, every worker scoring {startup.scoring:.2f} s"
            )
    return lines


def checks_table(checks: list[Check]) -> str:
    rows: list[tuple[str, ...]] = [("target", "measured", "result")]
    for check in checks:
        verdict = "n/a" if check.passed is None else ("PASS" if check.passed else "FAIL")
        rows.append((check.name, check.measured, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cpu_lines(results: Results, *, connections: int) -> list[str]:
    """req/s on shared cores moves with the neighbours' load; server CPU per request barely does."""
    lines = []
    for rows in sorted({cell.rows for cell in results.cells}):
        ours = results.cell("ours", rows, connections)
        ceiling = results.cell("constant", rows, connections)
        if ours and ceiling and ours.cpu_us_per_request:
            share = ceiling.cpu_us_per_request / ours.cpu_us_per_request
            lines.append(
                f"{rows}-row, {connections} conns: diabetes serve uses {ours.cpu_us_per_request:.0f} µs of CPU per "
                f"request, the constant app {ceiling.cpu_us_per_request:.0f} µs: a {share:.0%} ratio, the req/s "
                f"ratio without the neighbours' noise (wrk's own CPU aside)"
            )
    return lines
