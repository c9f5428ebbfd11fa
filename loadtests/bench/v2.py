"""The Open Inference Protocol (V2) part of the bench (`--also-v2`): MLServer as the peer, the targets
as ratios, and a hook for more V2 cases measured in the same run.

Our V2 REST route is measured on the same `diabetes serve` process as `/score`, cell by cell
(`servers.with_v2`), with JSON tensors (the body MLServer gets too) and with Triton's binary tensors.
MLServer runs after it, alone on the machine, on the same registered model and worker count.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtests.bench import mlserver
from loadtests.bench.results import Results
from loadtests.bench.store import Store
from loadtests.bench.targets import Check, _ratio

# More V2 cases, each called as case(bench, store, model_folder, test_rows) after MLServer's cells:
# e.g. the gRPC transport's 100-row case, recorded as cells keyed "ours-v2-grpc" (bench.results.cells)
# and checked below against MLServer's rows/s.
EXTRA_CASES: list[Callable[[Any, Store, Path, list[list[float]]], None]] = []


def measure_peers(bench: Any, store: Store, folder: Path, test_rows: list[list[float]], progress) -> None:
    """MLServer on the same model, then every extra case."""
    bin_dir = mlserver.virtualenv(progress)
    estimator = mlserver.dump_estimator(folder, bench.workdir / "estimator.joblib")
    repository = mlserver.model_repository(
        bench.workdir / "mlserver", estimator, store.model_name, str(store.model_version), bench.args.workers
    )
    bench.measure(mlserver.server(bin_dir, repository, store.model_name), test_rows)
    for case in EXTRA_CASES:
        case(bench, store, folder, test_rows)


def checks(results: Results, high: int) -> list[Check]:
    """Issue 12's targets, where this run measured them."""
    if results.cell("ours-v2", 1, high) is None and results.cell("mlserver", 1, high) is None:
        return []

    def rate(server: str, rows: int) -> float | None:
        cell = results.cell(server, rows, high)
        return cell.rows_per_s if cell else None

    def check(name: str, ratio: float | None, target: float | None, percent: bool = False) -> Check:
        shown = "n/a" if ratio is None else (f"{ratio:.0%}" if percent else f"{ratio:.1f}×")
        passed = None if ratio is None or target is None else ratio >= target
        return Check(name, shown, passed)

    out = [
        check(
            f"V2 REST 1-row req/s ≥ 15× MLServer's ({high} conns)", _ratio(rate("ours-v2", 1), rate("mlserver", 1)), 15
        ),
        check(
            f"V2 REST 1-row req/s ≥ 80% of /score's ({high} conns)",
            _ratio(rate("ours-v2", 1), rate("ours", 1)),
            0.8,
            percent=True,
        ),
        check(
            f"V2 REST 100-row rows/s ≥ 5× MLServer's ({high} conns)",
            _ratio(rate("ours-v2", 100), rate("mlserver", 100)),
            5,
        ),
        check(
            f"V2 REST binary 100-row rows/s vs MLServer's JSON ({high} conns; for the record)",
            _ratio(rate("ours-v2-binary", 100), rate("mlserver", 100)),
            None,
        ),
    ]

    grpc_measured = results.cell("ours-v2-grpc", 100, high) is not None

    # Server CPU per row: the same ratios, barely moved by whatever else shares the cores.
    def cpu_per_row(server: str, rows: int) -> float | None:
        cell = results.cell(server, rows, high)
        return cell.cpu_us_per_request / rows if cell and cell.cpu_us_per_request > 0 else None

    for name, ours, peer, rows in (
        ("V2 REST 1-row vs MLServer", "ours-v2", "mlserver", 1),
        ("V2 REST 1-row vs /score", "ours-v2", "ours", 1),
        ("V2 REST 100-row vs MLServer", "ours-v2", "mlserver", 100),
        *((("V2 gRPC 100-row vs MLServer's gRPC", "ours-v2-grpc", "mlserver-grpc", 100),) if grpc_measured else ()),
    ):
        ratio = _ratio(cpu_per_row(peer, rows), cpu_per_row(ours, rows))
        shown = "n/a" if ratio is None else (f"{ratio:.0%}" if peer == "ours" else f"{ratio:.1f}×")
        out.append(Check(f"{name}, by server CPU per row ({high} conns; for the record)", shown, None))
    grpc = _ratio(rate("ours-v2-grpc", 100), rate("mlserver-grpc", 100))
    if grpc is not None:  # the issue sets no gRPC target: reported, as MLServer's gRPC answers the same client
        out.append(check(f"V2 gRPC 100-row rows/s vs MLServer's gRPC ({high} conns; for the record)", grpc, None))
    return out
