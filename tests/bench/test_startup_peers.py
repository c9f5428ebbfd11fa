"""The start-up bench's registry targets: within 2.5 s and ahead of the Azure ML inference server, same run."""

from __future__ import annotations

from loadtests.bench.startup import Scenario, Target, parse_args, table


def _scenario(key: str, seconds: float, target: Target | None = None) -> Scenario:
    return Scenario(key, key, lambda round_no: ([], {}), target, seconds=[seconds])


def _results(text: str) -> dict[str, str]:
    rows = [line.strip("|").split("|") for line in text.splitlines()[2:]]
    return {cells[0].strip(): cells[-1].strip() for cells in rows}


def test_a_registry_first_start_passes_only_within_its_time_and_ahead_of_the_peer():
    target = Target(2.5, ahead_of="azureml")
    scenarios = [
        _scenario("constant", 0.2),
        _scenario("azureml", 2.0),
        _scenario("ahead", 1.2, target),
        _scenario("behind", 2.1, target),  # within 2.5 s, but slower than the peer in the same run
        _scenario("slow", 2.6, Target(2.5)),
    ]
    text, passed = table(scenarios)
    assert _results(text) == {"constant": "", "azureml": "", "ahead": "PASS", "behind": "FAIL", "slow": "FAIL"}
    assert not passed
    assert "< azureml" in text


def test_without_the_peer_only_the_time_is_judged():
    text, passed = table([_scenario("constant", 0.2), _scenario("first", 1.0, Target(2.5, ahead_of="azureml"))])
    assert passed
    assert "< azureml" not in text


def test_the_baseline_needs_the_registry_scenarios(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        parse_args(["--no-peers", "--also-baseline", str(tmp_path)])
    assert "--no-peers" in capsys.readouterr().err
    assert parse_args(["--also-baseline", str(tmp_path)]).also_baseline == tmp_path
