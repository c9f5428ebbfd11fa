"""The access log and the metrics, in process: batching must never lose, split or misplace a record."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import select
import socket
import time

from diabetes_service.observability.accesslog import AccessLog
from diabetes_service.observability.metrics import Metrics


def _samples(text: bytes) -> dict[str, float]:
    sample = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            sample[name] = float(value)
    return sample


def test_access_log_writes_whole_lines_in_pipe_sized_batches():
    # A SEQPACKET socket keeps the boundaries of each write, which a pipe's reader cannot see.
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log = AccessLog(True, fd=writer.fileno())

    async def requests() -> None:
        for i in range(500):
            log.write(f"r{i}", "POST", "/score", 200, 1, 0.0001, "3")
        await asyncio.sleep(0.2)  # the flush is due within 0.05 s

    asyncio.run(requests())
    writer.close()
    chunks = []
    while chunk := reader.recv(1 << 20):
        chunks.append(chunk)
    reader.close()
    # Every write is whole lines and at most PIPE_BUF, which a pipe keeps whole among several writers.
    assert len(chunks) > 1
    assert all(chunk.endswith(b"\n") and len(chunk) <= select.PIPE_BUF for chunk in chunks)
    ids = [json.loads(line)["request_id"] for line in b"".join(chunks).splitlines()]
    assert ids == [f"r{i}" for i in range(500)]


def test_access_log_flush_writes_what_is_pending_and_disabled_writes_nothing(tmp_path):
    path = tmp_path / "log"
    with path.open("wb") as out:
        log = AccessLog(True, fd=out.fileno())
        off = AccessLog(False, fd=out.fileno())

        async def one_request() -> None:
            log.write("last", "POST", "/score", 200, 1, 0.0012345, "3")
            off.write("never", "POST", "/score", 200, 1, 0.0012345, "3")
            log.flush()  # as at shutdown: the pending timer never fires

        asyncio.run(one_request())
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == ["last"]
    assert lines[0]["latency_ms"] == 1.234
    # ISO 8601 in UTC, to the millisecond, and the time of the write.
    stamp = datetime.datetime.fromisoformat(lines[0]["ts"].replace("Z", "+00:00"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["ts"])
    assert abs(stamp.timestamp() - time.time()) < 60


def test_access_log_timestamps_are_iso_utc_across_second_boundaries():
    log = AccessLog(True, fd=-1)
    for now, text in [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1796679535.3905, "2026-12-07T21:38:55.390Z"),
        (1796679535.9999, "2026-12-07T21:38:55.999Z"),
        (1796679536.25, "2026-12-07T21:38:56.250Z"),
        (1796679535.5, "2026-12-07T21:38:55.500Z"),  # a clock stepping back gets its own second
    ]:
        assert log._timestamp(now) == text


def test_metrics_add_up_every_workers_snapshot_dead_ones_included(tmp_path):
    gone, alive = Metrics(str(tmp_path)), Metrics(str(tmp_path))
    # Two workers in one test process would share a pid, hence a snapshot file: give them their own.
    gone._snapshot = tmp_path / "worker-1.json"
    alive._snapshot = tmp_path / "worker-2.json"
    for metrics, seconds in ((gone, 0.0004), (alive, 0.003), (alive, 7.0)):
        metrics.observe("/score", 200, seconds)
        metrics.count_predictions("predict", 10)
    gone.observe("/score", 422, 0.0001)
    gone.serving("m", "3", {"predict": 2})
    alive.serving("m", "3", {"predict": 1})
    gone.save()

    sample = _samples(alive.render())
    assert sample['diabetes_http_requests_total{route="/score",status="200"}'] == 3
    assert sample['diabetes_http_requests_total{route="/score",status="422"}'] == 1
    assert sample['diabetes_predictions_total{method="predict"}'] == 30
    bucket = 'diabetes_http_request_duration_seconds_bucket{{le="{}",route="/score"}}'
    assert sample[bucket.format("0.0005")] == 2
    assert sample[bucket.format("0.005")] == 3
    assert sample[bucket.format("5.0")] == 3
    assert sample[bucket.format("+Inf")] == 4
    assert sample['diabetes_http_request_duration_seconds_count{route="/score"}'] == 4
    assert abs(sample['diabetes_http_request_duration_seconds_sum{route="/score"}'] - 7.0035) < 1e-9
    assert sample['diabetes_model_calls_total{method="predict"}'] == 3
    assert sample['diabetes_model_info{name="m",version="3"}'] == 1


def test_metrics_of_a_lone_process_need_no_folder():
    metrics = Metrics()
    metrics.observe("/", 200, 0.001)
    metrics.save()  # nothing to write, nowhere to write it
    assert _samples(metrics.render())['diabetes_http_requests_total{route="/",status="200"}'] == 1


def test_counters_alerts_name_are_at_zero_before_anything_is_counted():
    """Prometheus' increase() needs a sample before an event: the series the alert rules count on are
    there at 0 from the start, and a first event moves them to 1 without doubling any series."""
    sample = _samples(Metrics().render())
    for reason in ("exit", "signal", "heartbeat"):
        assert sample[f'diabetes_worker_restarts_total{{reason="{reason}"}}'] == 0
    for outcome in ("swapped", "refused"):
        assert sample[f'diabetes_model_swaps_total{{outcome="{outcome}"}}'] == 0
    for status in ("200", "503"):
        assert sample[f'diabetes_http_requests_total{{route="/health/ready",status="{status}"}}'] == 0
    for status in ("200", "408", "500", "503"):
        assert sample[f'diabetes_http_requests_total{{route="/score",status="{status}"}}'] == 0
    assert sample['diabetes_http_request_duration_seconds_bucket{le="0.5",route="/score"}'] == 0
    assert sample['diabetes_http_request_duration_seconds_count{route="/score"}'] == 0

    metrics = Metrics()
    metrics.totals.worker_restarts["signal"] = 1
    metrics.observe("/score", 500, 0.3)
    text = metrics.render()
    sample = _samples(text)
    assert sample['diabetes_worker_restarts_total{reason="signal"}'] == 1
    assert sample['diabetes_worker_restarts_total{reason="exit"}'] == 0
    assert sample['diabetes_http_requests_total{route="/score",status="500"}'] == 1
    assert sample['diabetes_http_request_duration_seconds_bucket{le="0.5",route="/score"}'] == 1
    assert sample['diabetes_http_request_duration_seconds_bucket{le="0.25",route="/score"}'] == 0
    assert text.decode().count('diabetes_http_requests_total{route="/score",status="500"}') == 1
