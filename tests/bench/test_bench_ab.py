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


def test_payload_logging_checks_hold_each_row_count_to_its_own_floor():
    def cells(server: str, rows: int, rates: tuple[float, ...]) -> list[Cell]:
        return [
            Cell(server, server, rows, 16, WrkResult(int(r * 5), 5.0, 0, 0, 1.0, 2.0), 100.0, 1.0, 100.0) for r in rates
        ]

    measured = Results(
        cells("baseline", 1, (1_000, 1_010, 990))
        + cells("ours-ab", 1, (960, 940, 5_000))  # median 960: 96% of 1,000
        + cells("baseline", 100, (500, 510, 490))
        + cells("ours-ab", 100, (440, 445, 100))  # median 440: 88% of 500
    )
    checks = {
        c.name.split(":")[1].split(" req/s")[0].strip(): c for c in targets.payload_checks(measured, 16, (1, 100))
    }
    assert (checks["1-row"].passed, checks["1-row"].measured.split(" ")[0]) == (True, "96.0%")
    assert (checks["100-row"].passed, checks["100-row"].measured.split(" ")[0]) == (False, "88.0%")
    assert targets.payload_checks(Results(cells("baseline", 1, (1_000,))), 16, (1,)) == []  # one side: no claim


def test_log_payloads_needs_a_baseline():
    with pytest.raises(SystemExit):
        parse_args(["--log-payloads"])
