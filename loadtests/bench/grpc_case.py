"""The gRPC 100-row case of the bench's V2 part (`--also-v2`): our `inference.GRPCInferenceService`
and MLServer's, each on its own process started as the REST cells' are, loaded by the same client
(grpc_load.py) with the same request, one after the other. Recorded as cells "ours-v2-grpc" and
"mlserver-grpc"; the issue sets no target for it (reported beside MLServer's).

With `--also-baseline DIR --ab-grpc`, each A/B round also loads this checkout's gRPC server and
DIR's with 1-row calls (`ab_round`; cells "ours-ab-grpc" and "baseline-grpc"), for a change on the
gRPC path to be compared with the code before it, as the 1-row /score A/B does for REST."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtests.bench import mlserver, servers, v2
from loadtests.bench.data import take_rows
from loadtests.bench.processes import free_port
from loadtests.bench.results import Cell
from loadtests.bench.store import Store
from loadtests.bench.wrk import WrkResult

ROWS = 100
AB_ROWS = 1  # the A/B's calls: the smallest, where the transport's own cost weighs most


def load(bench: Any, target: str, model: str, rows_file: Path, connections: int, seconds: float) -> WrkResult:
    cmd = [sys.executable, "-m", "loadtests.bench.grpc_load", target, model, str(rows_file), str(connections)]
    done = subprocess.run(
        [*cmd, f"{seconds:g}"], capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=servers.REPO
    )
    out = json.loads(done.stdout)
    return WrkResult(out["requests"], out["seconds"], out["errors"], 0, out["p50_ms"], out["p99_ms"])


def measure(
    bench: Any, server: servers.Server, key: str, target_port: int, model: str, test_rows, rows: int = ROWS
) -> None:
    proc = bench.launch(server, test_rows)
    rows_file = bench.workdir / f"{key}-{rows}.json"
    rows_file.write_text(json.dumps(take_rows(test_rows, rows)))
    target = f"127.0.0.1:{target_port}"
    for connections in bench.args.connections:
        if bench.args.warmup:
            load(bench, target, model, rows_file, connections, bench.args.warmup)
        cpu_before = proc.tree_cpu_seconds()
        result = load(bench, target, model, rows_file, connections, bench.args.duration)
        cpu_us = (proc.tree_cpu_seconds() - cpu_before) * 1e6 / max(1, result.requests)
        label = f"{server.label}, gRPC"
        bench.results.cells.append(
            Cell(key, label, rows, connections, result, proc.tree_rss_mib(), proc.ready_seconds, cpu_us)
        )
        print(
            f"{label}: {rows} rows x {connections} conns: {result.req_per_s:,.0f} req/s "
            f"({result.req_per_s * rows:,.0f} rows/s), p50 {result.p50_ms:.3f} ms, {result.errors} errors",
            file=sys.stderr,
            flush=True,
        )
    bench.stop(proc)


def case(bench: Any, store: Store, folder: Path, test_rows: list[list[float]]) -> None:
    workers = bench.args.workers
    grpc_port = free_port()
    base = servers.ours(store, store.model_uri, workers, bench.workdir / "model-cache")
    ours = replace(base, key="ours-v2-grpc-http", cmd=lambda port: [*base.cmd(port), "--grpc-port", str(grpc_port)])
    measure(bench, ours, "ours-v2-grpc", grpc_port, store.model_name, test_rows)
    repository = bench.workdir / "mlserver"
    their_port = json.loads((repository / "settings.json").read_text())["grpc_port"]
    theirs = mlserver.server(mlserver.virtualenv(lambda _: None), repository, store.model_name)
    measure(bench, theirs, "mlserver-grpc", their_port, store.model_name, test_rows)


def ab_round(bench: Any, store: Store, peer: servers.Server, this: servers.Server, test_rows) -> None:
    """One round of the gRPC A/B: the baseline checkout's server, then this one's, 1-row calls."""
    for server, key in ((peer, "baseline-grpc"), (this, "ours-ab-grpc")):
        grpc_port = free_port()
        with_grpc = replace(
            server, key=f"{key}-http", cmd=lambda port, s=server, g=grpc_port: [*s.cmd(port), "--grpc-port", str(g)]
        )
        measure(bench, with_grpc, key, grpc_port, store.model_name, test_rows, rows=AB_ROWS)


v2.EXTRA_CASES.append(case)
