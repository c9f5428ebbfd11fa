"""`diabetes score --url URL [--key KEY] [--method M] FILE`, run as the real console script."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess

import pytest

from tests.client.conftest import PRIMARY
from tests.conftest import FEATURES
from tests.support.processes import DIABETES, REPO, free_port
from tests.support.service import ServiceProcess


def diabetes_score(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [DIABETES, "score", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def printed(done) -> list[float]:
    assert done.returncode == 0, done.stderr
    return [float(line) for line in done.stdout.splitlines()]


def write_csv(path, rows, header=True):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(FEATURES)
        writer.writerows(rows)
    return path


def test_a_csv_with_a_header_prints_one_prediction_per_line(
    keyed_service, tmp_path, example_data, in_process_predictions
):
    path = write_csv(tmp_path / "rows.csv", example_data.x_test)
    done = diabetes_score("--url", keyed_service.url, "--key", PRIMARY, str(path))
    assert printed(done) == pytest.approx(in_process_predictions, rel=1e-12)
    assert done.stderr == ""


def test_a_reader_that_leaves_early_ends_the_command_quietly(keyed_service, tmp_path, example_data):
    # `diabetes score rows.csv | head -1`: the reader is gone before the command writes; no traceback.
    path = write_csv(tmp_path / "rows.csv", example_data.x_test)
    reader, writer = os.pipe()
    os.close(reader)  # closed before the child starts: its first write meets a broken pipe for sure
    with subprocess.Popen(
        [DIABETES, "score", "--url", keyed_service.url, "--key", PRIMARY, str(path)],
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        os.close(writer)
        _, stderr = child.communicate(timeout=120)
    assert child.returncode == 141
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr


def test_a_csv_with_columns_in_another_order_is_read_by_name(
    keyed_service, tmp_path, example_data, in_process_predictions
):
    path = tmp_path / "reordered.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(reversed(FEATURES)))
        writer.writerows([list(reversed(row)) for row in example_data.x_test])
    done = diabetes_score("--url", keyed_service.url, "--key", PRIMARY, str(path))
    assert printed(done) == pytest.approx(in_process_predictions, rel=1e-12)


def test_json_rows_a_json_body_and_standard_input(keyed_service, tmp_path, example_data, in_process_predictions):
    rows = example_data.x_test[:7]
    want = in_process_predictions[:7]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "body.json").write_text(json.dumps({"data": rows, "method": "predict"}))
    env = {"DIABETES_API_KEY": PRIMARY}
    for source in ("rows.json", "body.json"):
        done = diabetes_score("--url", keyed_service.url + "/score", str(tmp_path / source), env=env)
        assert printed(done) == pytest.approx(want, rel=1e-12), source
    csv_text = "\n".join(",".join(map(repr, row)) for row in rows)  # no header: values in feature order
    done = diabetes_score("--url", keyed_service.url, "--method", "predict", "-", stdin=csv_text, env=env)
    assert printed(done) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("age,sex\n0.1,abc\n", "row 1, column 2: not a number"),
        ("age,sex\n0.1,0.2,0.3\n", "row 1: 3 values under a header of 2"),
        ("age,sex\n", "holds a header but no rows"),
        ("", "holds no rows"),
        ("[1, 2", "is not valid JSON"),
        ('{"inputs": []}', 'must hold the rows in "data" (or "rows", with "features")'),
        ('{"features": ["age", "sex"], "rows": [[0.1]]}', 'row 1: expected a list of 2 values, one per "features"'),
    ],
)
def test_a_bad_file_is_one_line_and_exit_1(keyed_service, tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    done = diabetes_score("--url", keyed_service.url, "--key", PRIMARY, str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("diabetes score: ")
    assert message in done.stderr
    assert done.stderr.count("\n") == 1


def test_service_errors_are_one_line_and_exit_1(keyed_service, tmp_path, example_data):
    path = write_csv(tmp_path / "rows.csv", example_data.x_test[:3])
    cases = [
        (["--url", keyed_service.url, "--key", "wrong", str(path)], "invalid API key (status 401"),
        (["--url", keyed_service.url, "--key", PRIMARY, "--method", "predict_proba", str(path)], "method:"),
        (["--url", f"http://127.0.0.1:{free_port()}", "--retries", "0", str(path)], "could not reach"),
        (["--url", keyed_service.url, str(tmp_path / "missing.csv")], "cannot read"),
        (["--url", "localhost:8080", str(path)], "not an http(s) URL"),
    ]
    for args, message in cases:
        done = diabetes_score(*args)
        assert done.returncode == 1, args
        assert message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1
        assert "wrong" not in done.stderr


def test_the_projects_sample_file_is_scored_as_it_is(keyed_service, in_process_predictions):
    sample = REPO / "loadtests" / "diabetes_loadtest" / "example_test_rows.json"
    done = diabetes_score("--url", keyed_service.url, "--key", PRIMARY, "--method", "predict", str(sample))
    # Its rows are the example's test rows: keyed by its "features", they score as the model does here.
    assert printed(done) == pytest.approx(in_process_predictions, rel=1e-12)


def test_url_defaults_to_the_local_service_make_run_starts(example_model_pkl, tmp_path, example_data):
    if not port_is_free(8080):
        pytest.skip("port 8080 is taken on this machine: the default URL cannot be served here")
    svc = ServiceProcess(str(example_model_pkl), log=tmp_path / "service.log")
    svc.port, svc.url = 8080, "http://127.0.0.1:8080"
    path = write_csv(tmp_path / "rows.csv", example_data.x_test[:4])
    with svc:
        done = diabetes_score("--method", "predict", str(path))
    assert len(printed(done)) == 4
    assert "--url" in diabetes_score("--help").stdout
    assert "default: http://127.0.0.1:8080" in " ".join(diabetes_score("--help").stdout.split())


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
