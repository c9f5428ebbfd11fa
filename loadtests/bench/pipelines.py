"""`python -m loadtests.bench.pipelines`: a typed pipeline's restart and memory beside the numeric example's.

Issue 26 item 4's targets, measured in one run: the example pipeline (`diabetes train --task
pipeline`: a string and an integer column) served with N workers (default 2) must hold its process
tree (supervisor and workers) to ≤ 250 MiB, and restart (the model prepared before, in the cache)
to its first correct answer in ≤ 1.5× the numeric example's restart, measured the same way in the
same rounds. With `--also-baseline DIR` the pipeline is also served by another checkout's service
code (e.g. main before the change), so that the before and after figures come from the same run.

Each round, per scenario: a first start on a fresh model cache (timed too, for the record, and left
running until the supervisor logs that the model is prepared), then a restart on that cache: from
process start, one row is POSTed to /score every 5 ms until an answer is 200 and equals the model's
own prediction (computed once with scikit-learn, in a child). Then, with every worker warm and 100
requests served, the tree's memory is read twice: RSS summed (what `ps` and most dashboards add up;
it counts the pages the forked workers share with the supervisor once per process) and PSS summed
(each shared page divided among the processes that map it: what the tree costs the machine). The
target is checked on the RSS sum, the stricter and the figure the issue's 544 MiB and 177 MiB are.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadtests.bench import servers
from loadtests.bench.data import azureml_body, example_test_rows
from loadtests.bench.mixed import score_body, train_pipeline, typed_rows
from loadtests.bench.processes import free_port
from loadtests.bench.startup import _stop, _tail, compile_sources
from loadtests.bench.store import BIN, Store, clean_env, train

POLL_SECONDS = 0.005
PREPARED = re.compile(r"model \S+: (prepared|from the prepared-model cache)")
WORKER_READY = re.compile(r"^model .* ready \(", re.MULTILINE)
TREE_MIB_TARGET = 250.0
RESTART_RATIO_TARGET = 1.5
WARM_REQUESTS = 100

EXPECTED = """
import json, sys
import pandas as pd
from diabetes_service.model.loading import load_model
model = load_model(sys.argv[1]).estimator
rows, columns = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(json.dumps([float(v) for v in model.predict(pd.DataFrame(rows, columns=columns))]))
"""


@dataclass
class Scenario:
    key: str
    label: str
    store: Store
    body: bytes  # one row, as /score takes it
    columns: list[str]
    row: list
    pythonpath: str | None = None  # another checkout's code (--also-baseline)
    expected: float | None = None
    first: list[float] = field(default_factory=list)
    restart: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    pss_mib: list[float] = field(default_factory=list)
    found_by: list[str] = field(default_factory=list)  # how each restart found its model

    def command(self, port: int, workers: int, cache: Path) -> tuple[list[str], dict[str, str]]:
        cmd = [str(BIN / "diabetes"), "serve", "--model-uri", self.store.model_uri, "--port", str(port)]
        cmd += ["--workers", str(workers), "--grpc-port", "0"]
        env = clean_env(
            DIABETES_HOME=str(self.store.home),
            DIABETES_MODEL_CACHE=str(cache),
            DIABETES_ACCESS_LOG="false",
            DIABETES_METRICS_PORT="0",
        )
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return cmd, env


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir

    def scenarios(self) -> list[Scenario]:
        progress("training the numeric example and the typed pipeline into a temporary embedded store")
        (self.workdir / "store").mkdir()
        numeric = train(self.workdir / "store")
        pipeline = train_pipeline(numeric)
        number_row = example_test_rows()[:1]
        typed_row = typed_rows()[:1]
        from loadtests.bench.data import FEATURES
        from loadtests.bench.mixed import COLUMNS

        found = [
            Scenario("numeric", "numeric example (Ridge)", numeric, azureml_body(number_row), FEATURES, number_row[0]),
            Scenario(
                "pipeline", "typed pipeline, this checkout", pipeline, score_body(typed_row), COLUMNS, typed_row[0]
            ),
        ]
        if self.args.also_baseline:
            source = self.args.also_baseline.resolve()
            path = os.pathsep.join(str(source / part) for part in ("service", "cli", "client"))
            found.append(
                Scenario(
                    "pipeline-baseline",
                    f"typed pipeline, code of {source}",
                    pipeline,
                    score_body(typed_row),
                    COLUMNS,
                    typed_row[0],
                    pythonpath=path,
                )
            )
        return found

    def run(self) -> list[Scenario]:
        compile_sources()
        scenarios = self.scenarios()
        for round_no in range(self.args.repeat):
            for scenario in scenarios:
                cache = self.workdir / f"cache-{scenario.key}-{round_no}"
                first = self.start(scenario, cache, f"{scenario.key}-{round_no}-first", settle=True)
                scenario.first.append(first)
                if scenario.expected is None:
                    scenario.expected = expected_answer(cache, scenario)
                seconds = self.start(scenario, cache, f"{scenario.key}-{round_no}-restart", measure=True)
                scenario.restart.append(seconds)
                progress(
                    f"round {round_no + 1}: {scenario.label}: first start {first:.2f} s, restart {seconds:.2f} s, "
                    f"tree RSS {scenario.rss_mib[-1]:.0f} MiB, PSS {scenario.pss_mib[-1]:.0f} MiB "
                    f"({scenario.found_by[-1]})"
                )
        return scenarios

    def start(
        self, scenario: Scenario, cache: Path, name: str, *, settle: bool = False, measure: bool = False
    ) -> float:
        """Seconds from process start to the first correct answer; then settle or measure, then stop."""
        port = free_port()
        cmd, env = scenario.command(port, self.args.workers, cache)
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            started = time.monotonic()
            proc = subprocess.Popen(
                cmd, env=env, cwd=servers.REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = started + self.args.timeout
            while True:
                answer = _post(port, scenario.body)
                if answer is not None:
                    elapsed = time.monotonic() - started
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"{scenario.label} exited with {proc.returncode}: {_tail(log)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{scenario.label} gave no answer within {self.args.timeout:g} s: {_tail(log)}")
                time.sleep(POLL_SECONDS)
            if scenario.expected is not None:
                got = json.loads(answer)
                if not (len(got) == 1 and math.isclose(got[0], scenario.expected, rel_tol=1e-9)):
                    raise RuntimeError(f"{scenario.label} answered {got!r}, expected [{scenario.expected!r}]")
            if settle:  # until the supervisor says the model is prepared: what the restart starts from
                _wait(lambda: PREPARED.search(log.read_text(errors="replace")) is not None, proc, log, self.args)
            if measure:
                workers = self.args.workers
                _wait(
                    lambda: len(WORKER_READY.findall(log.read_text(errors="replace"))) >= workers, proc, log, self.args
                )
                for _ in range(WARM_REQUESTS):
                    _post(port, scenario.body)
                rss, pss = tree_memory_mib(proc.pid)
                scenario.rss_mib.append(rss)
                scenario.pss_mib.append(pss)
                scenario.found_by.append(_found_by(log))
            return elapsed
        finally:
            _stop(proc)


def _wait(done: Callable[[], bool], proc: subprocess.Popen, log: Path, args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting on the server: {_tail(log)}")
        time.sleep(0.05)


def _post(port: int, body: bytes) -> bytes | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        payload = answer.read()
        return payload if answer.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def _found_by(log: Path) -> str:
    text = log.read_text(errors="replace")
    return "cache" if "from the prepared-model cache" in text else "prepared"


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """RSS and PSS of process `pid` and all its descendants, each summed, in MiB."""
    root = psutil.Process(pid)
    rss = pss = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        pss += info.pss
    return rss / 2**20, pss / 2**20


def expected_answer(cache: Path, scenario: Scenario) -> float:
    """The registered model's own prediction for the scenario's row, with scikit-learn, in a child."""
    folder = next(cache.rglob("MLmodel")).parent  # the version's download, in the model cache
    done = subprocess.run(
        [sys.executable, "-c", EXPECTED, str(folder), json.dumps([scenario.row]), json.dumps(scenario.columns)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])[0]


def report(scenarios: list[Scenario], workers: int) -> tuple[str, bool]:
    by_key = {s.key: s for s in scenarios}
    head = ["served", "first start s", "restart s", "× numeric", "tree RSS MiB", "tree PSS MiB", "restarts from"]
    rows = []
    numeric = statistics.median(by_key["numeric"].restart)
    for s in scenarios:
        restart = statistics.median(s.restart)
        rows.append(
            [
                s.label,
                f"{statistics.median(s.first):.2f}",
                f"{restart:.2f}",
                f"{restart / numeric:.2f}×",
                f"{statistics.median(s.rss_mib):.0f}",
                f"{statistics.median(s.pss_mib):.0f}",
                ",".join(sorted(set(s.found_by))),
            ]
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in [head, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    ours = by_key["pipeline"]
    ratio = statistics.median(ours.restart) / numeric
    rss = statistics.median(ours.rss_mib)
    checks = [
        (
            f"typed pipeline, {workers} workers: tree RSS ≤ {TREE_MIB_TARGET:g} MiB",
            f"{rss:.0f} MiB",
            rss <= TREE_MIB_TARGET,
        ),
        (
            f"typed pipeline restart ≤ {RESTART_RATIO_TARGET:g}× the numeric example's",
            f"{ratio:.2f}×",
            ratio <= RESTART_RATIO_TARGET,
        ),
    ]
    lines.append("")
    for name, measured, ok in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}  {name}: {measured}")
    return "\n".join(lines), all(ok for _, _, ok in checks)


def progress(message: str) -> None:
    print(f"[pipelines {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.pipelines",
        description="A typed pipeline's restart to first answer and process-tree memory, beside the numeric "
        "example's, in the same run (issue 26 item 4).",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the table gives medians (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server (default 2)")
    parser.add_argument(
        "--also-baseline",
        type=Path,
        metavar="DIR",
        help="also serve the pipeline with another checkout's service code (DIR holds its service/ folder)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a start may take (default 120)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.workers < 1:
        parser.error("--repeat and --workers must be ≥ 1")
    if args.also_baseline and not (args.also_baseline / "service" / "diabetes_service").is_dir():
        parser.error(f"--also-baseline {args.also_baseline}: no service/diabetes_service there")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="diabetes-pipelines-") as tmp:
        try:
            scenarios = Bench(args, Path(tmp)).run()
        except KeyboardInterrupt:
            return 130
        except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    text, passed = report(scenarios, args.workers)
    print(
        f"{time.strftime('%Y-%m-%d')}: {args.workers} workers, median of {args.repeat} rounds; restart = seconds from "
        "process start to the first correct answer, the model prepared before (in the cache)"
    )
    print()
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    s.key: {
                        "label": s.label,
                        "first": s.first,
                        "restart": s.restart,
                        "rss_mib": s.rss_mib,
                        "pss_mib": s.pss_mib,
                        "found_by": s.found_by,
                    }
                    for s in scenarios
                },
                indent=2,
            )
        )
    if not passed:
        progress("a target was missed (FAIL above): on a shared machine, repeat and compare the ratios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
