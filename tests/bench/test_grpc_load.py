"""The bench's gRPC load client against the real service: bounded (1 s, 2 channels, loopback)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import REPO


def test_the_grpc_load_counts_answered_calls_and_errors(service, example_model_pkl, example_data, tmp_path):
    svc = service(str(example_model_pkl), grpc=True).start()
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(example_data.x_train[:100]))

    def load(model: str) -> dict:
        cmd = [sys.executable, "-m", "loadtests.bench.grpc_load", svc.grpc_target, model, str(rows), "2", "1"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
        return json.loads(done.stdout)

    answered = load("model")
    assert answered["requests"] > 10
    assert answered["errors"] == 0
    assert 0.9 < answered["seconds"] < 5
    assert 0 < answered["p50_ms"] <= answered["p99_ms"]
    refused = load("no_such_model")  # NOT_FOUND: counted as errors, not as answers
    assert refused["requests"] == 0
    assert refused["errors"] > 10
