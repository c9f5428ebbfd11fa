"""The bench's A/B checks against another checkout (`--also-baseline`, with `--ab-grpc` for gRPC),
without starting servers: each compares the medians of its own alternated cells, and claims nothing
for a side that was not measured."""

from __future__ import annotations

import pytest

from loadtests.bench import targets
from loadtests.bench.results import Cell, Results
from loadtests.bench.run import parse_args
from loadtests.bench.wrk import WrkResult


def _cell(server: str, req_per_s: float) -> Cell:
    return Cell(server, server, 1, 16, WrkResult(int(req_per_s * 5), 5.0, 0, 0, 1.0, 2.0), 100.0, 1.0, 100.0)


def _ab(results: Results) -> dict[str, targets.Check]:
    return {
        c.name.split(" req/s")[0]: c for c in targets.checks(results, connections=(16,), workers=2) if "A/B" in c.name
    }


def test_each_ab_check_compares_the_medians_of_its_own_rounds():
    rest = [_cell("baseline", r) for r in (3_000, 1_000, 3_100)] + [_cell("ours-ab", r) for r in (3_050, 9_000, 2_000)]
    assert set(_ab(Results(rest))) == {"1-row"}  # no gRPC cells: no gRPC claim
    grpc = [_cell("baseline-grpc", r) for r in (600, 700, 650)] + [_cell("ours-ab-grpc", r) for r in (620, 300, 640)]
    checks = _ab(Results(rest + grpc))
    assert (checks["1-row"].passed, checks["1-row"].measured.split(" ")[0]) == (True, "101.7%")  # 3,050 / 3,000
    assert (checks["V2 gRPC 1-row"].passed, checks["V2 gRPC 1-row"].measured.split(" ")[0]) == (False, "95.4%")


def test_ab_grpc_needs_a_baseline(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--ab-grpc"])
    assert "--ab-grpc needs --also-baseline" in capsys.readouterr().err
