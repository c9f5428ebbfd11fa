"""Issue 3's targets for a 2-core machine, checked as ratios against servers measured in the same run."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.bench.results import Results


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def checks(results: Results, *, connections: tuple[int, ...], workers: int) -> list[Check]:
    """Every target with its measured value; throughput targets at the highest connection count."""
    high = max(connections)
    low = min(connections)

    def req_s(server: str, rows: int, conns: int) -> float | None:
        cell = results.cell(server, rows, conns)
        return cell.wrk.req_per_s if cell else None

    out: list[Check] = []
    for ab in (_ab_check(results, high), _ab_check(results, high, "ours-ab-grpc", "baseline-grpc", "V2 gRPC 1-row")):
        if ab is not None:
            out.append(ab)
    ours_1 = req_s("ours", 1, high)
    vs_mlflow = _ratio(ours_1, req_s("mlflow", 1, high))
    out.append(
        Check(
            f"1-row req/s ≥ 30× mlflow models serve ({high} conns)",
            f"{vs_mlflow:.1f}×" if vs_mlflow is not None else "n/a",
            vs_mlflow >= 30 if vs_mlflow is not None else None,
        )
    )
    vs_constant = _ratio(ours_1, req_s("constant", 1, high))
    out.append(
        Check(
            f"1-row req/s ≥ 50% of the constant app ({high} conns)",
            f"{vs_constant:.0%}" if vs_constant is not None else "n/a",
            vs_constant >= 0.5 if vs_constant is not None else None,
        )
    )
    vs_score = _ratio(req_s("ours-invocations", 1, high), ours_1)
    out.append(
        Check(
            f"/invocations 1-row req/s ≥ 90% of /score's ({high} conns)",
            f"{vs_score:.0%}" if vs_score is not None else "n/a",
            vs_score >= 0.9 if vs_score is not None else None,
        )
    )
    starlette = _ratio(req_s("routed-starlette", 1, high), req_s("routed-ours", 1, high))
    if starlette is not None:
        out.append(
            Check(
                f"Starlette routing 1-row req/s vs our router ({high} conns; for the record)", f"{starlette:.0%}", None
            )
        )
    cell_100 = results.cell("ours", 100, high)
    out.append(
        Check(
            f"100-row rows/s ≥ 150,000 ({high} conns)",
            f"{cell_100.rows_per_s:,.0f}" if cell_100 else "n/a",
            cell_100.rows_per_s >= 150_000 if cell_100 else None,
        )
    )
    for rows in (1, 100):
        cell = results.cell("ours", rows, low)
        out.append(
            Check(
                f"p50 at {low} connection ≤ 0.6 ms ({rows}-row)",
                f"{cell.wrk.p50_ms:.3f} ms" if cell else "n/a",
                cell.wrk.p50_ms <= 0.6 if cell else None,
            )
        )
    rss = results.max_rss("ours")
    out.append(
        Check(
            f"process tree RSS ≤ 350 MiB ({workers} workers, supervisor included)",
            f"{rss:.0f} MiB" if rss is not None else "n/a",
            rss <= 350 if rss is not None else None,
        )
    )
    for name, startup, limit in (
        ("ready ≤ 2 s from a local model folder", results.local_folder, 2.0),
        ("ready ≤ 6 s from models:/ on the embedded store", results.registry, 6.0),
    ):
        value = startup.ready if startup else None
        out.append(Check(name, f"{value:.2f} s" if value is not None else "n/a", value <= limit if value else None))
    return out


# Issue 24: what payload logging at 100% sampling may cost of /score's req/s, by rows per request.
PAYLOAD_LOGGING_FLOOR = {1: 0.95, 100: 0.90}


def payload_checks(results: Results, connections: int, rows_list: tuple[int, ...]) -> list[Check]:
    """--log-payloads: this checkout logging every call against --also-baseline's (not logging), median
    req/s of the alternated rounds, per row count."""
    from statistics import median

    out = []
    for rows in rows_list:

        def rates(server: str, rows: int = rows) -> list[float]:
            cells = results.cells
            return [c.wrk.req_per_s for c in cells if (c.server, c.rows, c.connections) == (server, rows, connections)]

        this, peer = rates("ours-ab"), rates("baseline")
        floor = PAYLOAD_LOGGING_FLOOR.get(rows, 0.90)
        if not this or not peer:
            continue
        ratio = median(this) / median(peer)
        out.append(
            Check(
                f"payload logging at 100%: {rows}-row req/s >= {floor:.0%} of the baseline (median of {len(this)} "
                f"A/B rounds, {connections} conns)",
                f"{ratio:.1%} ({median(this):,.0f} vs {median(peer):,.0f})",
                ratio >= floor,
            )
        )
    return out


def _ab_check(
    results: Results, connections: int, this_key: str = "ours-ab", peer_key: str = "baseline", what: str = "1-row"
) -> Check | None:
    """This checkout against --also-baseline's, median 1-row req/s over the alternated rounds (/score,
    or with --ab-grpc also V2 gRPC calls)."""
    from statistics import median

    def rates(server: str) -> list[float]:
        return [c.wrk.req_per_s for c in results.cells if (c.server, c.rows, c.connections) == (server, 1, connections)]

    this, peer = rates(this_key), rates(peer_key)
    if not this or not peer:
        return None
    ratio = median(this) / median(peer)
    return Check(
        f"{what} req/s within 2% of the baseline checkout (median of {len(this)} A/B rounds, {connections} conns)",
        f"{ratio:.1%} ({median(this):,.0f} vs {median(peer):,.0f})",
        ratio >= 0.98,
    )
