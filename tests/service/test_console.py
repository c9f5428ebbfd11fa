"""The console of `diabetes serve` as a person sees it: quiet on a terminal, lines that fit a screen,
and, once ready, where to go next (the printed curl is run as printed)."""

from __future__ import annotations

import datetime
import json
import os
import pty
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import DIABETES, free_port, stop, wait_http

SCREEN_WIDTH = 80


class TerminalService:
    """`diabetes serve` with its standard output on a pseudo-terminal (as `make run` in a shell),
    standard error to a file; the terminal's output is read as it comes."""

    def __init__(self, model: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        master, slave = pty.openpty()
        cmd = [DIABETES, "serve", "--model-uri", str(model), "--port", str(self.port), "--grpc-port", "0"]
        cmd += ["--workers", "1", "--allow-pickle", *args]
        with log.open("wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=slave, stderr=err, start_new_session=True)
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def terminal(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> TerminalService:
        try:
            wait_http(self.url + "/health/ready", timeout=60, proc=self.proc)
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)
        self._reader.join(timeout=5)
        os.close(self._master)


def _score(url: str) -> requests.Response:
    return requests.post(url + "/score", json={"data": [[0.01] * 10]}, timeout=5)


def _access_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith('{"request_id"')]


def test_on_a_terminal_the_access_log_is_off(example_model_pkl, tmp_path):
    with TerminalService(example_model_pkl, tmp_path / "err.log") as svc:
        for _ in range(5):
            assert _score(svc.url).status_code == 200
        time.sleep(0.3)  # past the access log's 50 ms flush
        terminal = svc.terminal()
    assert _access_lines(terminal) == []
    assert "access_log=False" in svc.stderr()


def test_on_a_terminal_access_log_turns_it_on_with_iso_utc_timestamps(example_model_pkl, tmp_path):
    with TerminalService(example_model_pkl, tmp_path / "err.log", "--access-log") as svc:
        before = datetime.datetime.now(datetime.UTC)
        assert _score(svc.url).status_code == 200
        deadline = time.monotonic() + 5
        while not [line for line in _access_lines(svc.terminal()) if line["route"] == "/score"]:
            assert time.monotonic() < deadline, svc.terminal()
            time.sleep(0.05)
    line = next(line for line in _access_lines(svc.terminal()) if line["route"] == "/score")
    assert line["ts"].endswith("Z")
    stamp = datetime.datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
    assert abs((stamp - before).total_seconds()) < 5


def test_off_a_terminal_the_access_log_is_on(service, example_model_pkl):
    # Standard output to a file, as a container's is to its log collector.
    with service(str(example_model_pkl), args=["--allow-pickle"]) as svc:
        assert _score(svc.url).status_code == 200
        deadline = time.monotonic() + 5
        while not [line for line in _access_lines(svc.output()) if line["route"] == "/score"]:
            assert time.monotonic() < deadline, svc.output()
            time.sleep(0.05)


@pytest.mark.parametrize("keys", [False, True])
def test_start_up_lines_fit_a_screen_and_the_printed_curl_answers(example_model_pkl, tmp_path, monkeypatch, keys):
    if keys:
        monkeypatch.setenv("DIABETES_API_KEYS", "console-key-1,console-key-2")
    with TerminalService(example_model_pkl, tmp_path / "err.log") as svc:
        deadline = time.monotonic() + 10
        while "stop: Ctrl+C" not in svc.stderr():
            assert time.monotonic() < deadline, svc.stderr()
            time.sleep(0.05)
        lines = svc.stderr().splitlines()
        settings = lines[: next(i for i, line in enumerate(lines) if not line.startswith(("settings: ", "  ")))]
        assert settings[0].startswith("settings: ")
        assert len(settings) > 1
        assert all(len(line) <= SCREEN_WIDTH for line in settings), settings
        assert "console-key" not in svc.stderr()
        start = next(i for i, line in enumerate(lines) if line.startswith("ready: "))
        ready = lines[start : next(i for i, line in enumerate(lines) if line.startswith("stop: ")) + 1]
        assert ready[0] == f"ready: try it at {svc.url}/docs (the API page), or from a shell:"
        assert ready[-1] == f"stop: Ctrl+C (it serves in the foreground, HTTP on port {svc.port})"
        assert len(ready) == (5 if keys else 4)
        assert all(len(line) <= SCREEN_WIDTH for line in ready), ready
        assert requests.get(f"{svc.url}/docs", timeout=5).status_code == 200
        curl = "\n".join(ready[1:-1]).replace("<key>", "console-key-2")
        answer = subprocess.run(
            ["sh", "-c", curl + " -s -w ' %{http_code}'"], capture_output=True, text=True, timeout=30
        )
    body, _, status = answer.stdout.rpartition(" ")
    assert status == "200", answer.stdout + answer.stderr
    predictions = json.loads(body)
    assert len(predictions) == 1
    assert isinstance(predictions[0], float)
