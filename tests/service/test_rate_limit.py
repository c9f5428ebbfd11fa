"""The rate limiter alone (transport/rate_limit.py): its buckets, and one bucket shared by forked processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from diabetes_service.settings import per_second
from diabetes_service.transport.rate_limit import BURST_SECONDS, RateLimited, RateLimiter


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("50/s", 50.0), ("3000/min", 50.0), ("7200/h", 2.0), ("0.5/s", 0.5), (" 10 / Minute ", 10 / 60)],
)
def test_rates_read_as_calls_per_second(rate: str, expected: float) -> None:
    assert per_second(rate) == pytest.approx(expected)


@pytest.mark.parametrize("rate", ["fast", "50", "50/day", "0/s", "-1/s", "/s", "1e3/s"])
def test_a_rate_without_count_or_unit_is_refused_naming_the_form(rate: str) -> None:
    with pytest.raises(ValueError, match=r"N/s, N/min or N/h"):
        per_second(rate)


def test_a_full_bucket_then_the_rate_and_the_other_key_untouched() -> None:
    limiter = RateLimiter("100/s", keys=2)
    burst = int(100 * BURST_SECONDS)
    for _ in range(burst):
        limiter.admit(0, None)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(0, None)
    assert refused.value.status == 429
    assert refused.value.headers == [(b"retry-after", b"1")]
    assert "100/s" in refused.value.message
    assert "this API key" in refused.value.message
    limiter.admit(1, None)  # the secondary key has its own bucket
    time.sleep(0.03)  # three intervals of 10 ms: about three more calls
    admitted = 0
    for _ in range(10):
        try:
            limiter.admit(0, None)
            admitted += 1
        except RateLimited:
            pass
    assert 2 <= admitted <= 4


def test_retry_after_is_when_the_next_call_would_pass() -> None:
    limiter = RateLimiter("6/min", keys=1)  # a bucket of one call, then one every 10 s
    limiter.admit(0, None)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(0, None)
    assert refused.value.retry_after == 10


def test_without_keys_each_client_address_has_its_bucket() -> None:
    limiter = RateLimiter("10/s", keys=0)  # a bucket of one call
    limiter.admit(None, ("192.0.2.1", 50000))
    limiter.admit(None, ("192.0.2.2", 50000))
    with pytest.raises(RateLimited, match="this client address"):
        limiter.admit(None, ("192.0.2.1", 50001))  # the same address from another port: the same client


def _hammer(limiter: RateLimiter, key: int, start: float, end: float, pause: float, counts) -> None:
    admitted = refused = 0
    while time.monotonic() < start:
        time.sleep(0.001)
    while time.monotonic() < end:
        try:
            limiter.admit(key, None)
            admitted += 1
        except RateLimited:
            refused += 1
        time.sleep(pause)
    counts.put((key, admitted, refused))


def test_forked_processes_share_one_bucket_per_key() -> None:
    """As the workers do: the limiter is made before the fork, and every process takes from it."""
    rate, seconds, hammering = 200.0, 1.5, 3
    limiter = RateLimiter(f"{rate:g}/s", keys=2)
    fork = multiprocessing.get_context("fork")
    counts = fork.Queue()
    start = time.monotonic() + 0.5
    end = start + seconds
    # Three processes try the primary key every 0.5 ms each (~6x its rate); one calls with the
    # secondary key well under the rate.
    processes = [fork.Process(target=_hammer, args=(limiter, 0, start, end, 0.0005, counts)) for _ in range(hammering)]
    processes.append(fork.Process(target=_hammer, args=(limiter, 1, start, end, 0.05, counts)))
    for process in processes:
        process.start()
    results = [counts.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    primary = sum(admitted for key, admitted, _ in results if key == 0)
    refused = sum(refused for key, _, refused in results if key == 0)
    (secondary,) = [(admitted, refused) for key, admitted, refused in results if key == 1]
    expected = rate * BURST_SECONDS + rate * seconds  # a full bucket, then the rate
    # One bucket for all three: a bucket each would admit three times as many.
    assert 0.9 * expected <= primary <= 1.1 * expected, (primary, expected)
    assert refused > primary  # they did try far over the rate
    assert secondary[1] == 0  # the other key is not limited
    assert secondary[0] >= 20


def test_the_spec_and_the_command_line_take_the_same_form() -> None:
    import subprocess

    import yaml

    from diabetes_deploy.spec import SpecError, parse_spec, serving_environment
    from tests.support.processes import DIABETES, REPO

    data = yaml.safe_load((REPO / "service" / "deployment.yaml").read_text())
    assert serving_environment(parse_spec({**data, "rate_limit": "3000/min"}))["DIABETES_RATE_LIMIT"] == "3000/min"
    assert "DIABETES_RATE_LIMIT" not in serving_environment(parse_spec(data))
    with pytest.raises(SpecError, match=r"^spec: rate_limit: must be a count per unit"):
        parse_spec({**data, "rate_limit": "0/s"})
    done = subprocess.run(
        [DIABETES, "serve", "--rate-limit", "lots", "--model-uri", "/nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "diabetes serve: invalid setting rate_limit: must be a count per unit: N/s, N/min or N/h, e.g. 50/s or 3000/min"
    )
