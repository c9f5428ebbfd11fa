"""The fault-injection cases of loadtests/faults, each against its own real service on loopback.

Every case's checks are the issue's targets (loadtests/faults/cases/*.py say how each is measured);
a failing test prints the case's whole report. The same cases run as `python -m loadtests.faults`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.faults.cases import hang, kill, oversized, sigterm, slowloris, soak
from loadtests.faults.models import Models
from loadtests.faults.report import Report, render

pytestmark = pytest.mark.slow


def assert_passed(report: Report) -> None:
    assert report.checks, "a case without checks measured nothing"
    assert report.passed, "\n" + render([report])


def test_sigkill_one_worker_under_load_fails_no_client_call_and_strands_no_connection(
    fault_models: Models, tmp_path: Path
) -> None:
    assert_passed(kill.run(fault_models, tmp_path))


def test_sigterm_under_load_loses_no_request_in_flight_and_exits_0(fault_models: Models, tmp_path: Path) -> None:
    assert_passed(sigterm.run_under_load(fault_models, tmp_path))


def test_sigterm_during_a_restart_exits_0_within_the_grace_period(fault_models: Models, tmp_path: Path) -> None:
    assert_passed(sigterm.run_during_restart(fault_models, tmp_path))


def test_a_hung_worker_is_replaced_and_its_clients_are_not_left_waiting(fault_models: Models, tmp_path: Path) -> None:
    assert_passed(hang.run(fault_models, tmp_path))


def test_slow_header_connections_are_closed_and_do_not_slow_normal_clients(
    fault_models: Models, tmp_path: Path
) -> None:
    assert_passed(slowloris.run(fault_models, tmp_path))


def test_oversized_headers_get_431_and_crash_nothing(fault_models: Models, tmp_path: Path) -> None:
    assert_passed(oversized.run(fault_models, tmp_path))


def test_a_60_second_soak_at_half_capacity_has_no_error_and_no_memory_growth(
    fault_models: Models, tmp_path: Path
) -> None:
    assert_passed(soak.run(fault_models, tmp_path, seconds=60))
