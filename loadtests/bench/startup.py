"""`python -m loadtests.bench.startup`: seconds from process start to the first correct scoring answer.

What a client waiting on a new replica sees: not readiness, an answer. Each start is a new process
(or container) on a free loopback port; a POST of one test row is sent every 5 ms from the moment
the process starts (the kernel queues it once the port is bound) until one is answered 200 with
the registered model's own prediction (computed once, in a child, with scikit-learn). Started one
at a time, stopped before the next, rounds interleaved so that the neighbours' noise spreads over
every scenario; the table gives the median per scenario and its ratio to the constant-reply app's
median in the same run, which is what the targets are checked on.

Every server starts with its Python byte-code compiled, as an installed package (pip compiles at
install) or the image (diabetes_service.supervisor.bytecode) has it: the repository's sources are compiled
once before the first start, since a development environment with PYTHONDONTWRITEBYTECODE=1 would
otherwise compile our ~60 modules (~0.15 s) on every start, and the constant app's two not at all.
A first start is left running, untimed, until its model is prepared (verified and in the cache),
so that the restart after it is a restart of an artifact prepared before.

Issue 26's peers, unless --no-peers: a first start of the worked example registered on a real
`mlflow server` (tracking_server.py: REST and the artifact proxy), and the Azure ML inference
server started on the same model (azureml_server.py, its own virtualenv); both registry first
starts must answer within 2.5 s and ahead of it, in the same run. --also-baseline DIR times both
registry first starts on another checkout's code in the same rounds (the before of an A/B).
"""

from __future__ import annotations

import argparse
import contextlib
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

from loadtests.bench import servers
from loadtests.bench.data import azureml_body, example_test_rows
from loadtests.bench.processes import free_port
from loadtests.bench.store import BIN, Store, clean_env, download_model_folder, train

POLL_SECONDS = 0.005
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Target:
    seconds: float
    constant_ratio: float | None = None  # passes on either: the ratio is what survives a noisy machine
    # And, where set, only when faster than this scenario's median in the same run (a peer server).
    ahead_of: str | None = None


@dataclass
class Scenario:
    key: str
    label: str
    # A fresh start: called before each round with the round's number, returns (command, env).
    launch: Callable[[int], tuple[list[str], dict[str, str]]]
    target: Target | None = None
    stop: Callable[[], None] | None = None  # for containers: `docker rm -f`
    # After the first answer, untimed: wait until this holds (given the round's number) before stopping.
    settle: Callable[[int], bool] | None = None
    seconds: list[float] = field(default_factory=list)
    # Per round, how the service says it found its model: "cache" (the prepared-model cache),
    # "arrays" (a linear skops artifact served while scikit-learn verifies it), "prepared" (prepared
    # at this start) or "" (no such line: the constant app, a container).
    found_by: list[str] = field(default_factory=list)
    # The scenario whose time the ratio is taken against: the constant app started the same way
    # (a container for a container, so `docker run`'s own ~0.4 s counts on both sides).
    peer: str = "constant"
    # The prediction a correct answer carries, when not the embedded store's model's (another store's).
    expected: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.row = example_test_rows()[:1]
        self.body = azureml_body(self.row)
        self.expected: float | None = None

    # -- one start ---------------------------------------------------------------------------------

    def first_answer(self, scenario: Scenario, port: int, round_no: int) -> float:
        cmd, env = scenario.launch(round_no)
        log = self.workdir / f"{scenario.key}-{round_no}.log"
        with open(log, "ab") as out:
            started = time.monotonic()
            proc = subprocess.Popen(
                cmd, env=env, cwd=servers.REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = started + self.args.timeout
            while time.monotonic() < deadline:
                answer = self._post(port)
                if answer is not None:
                    elapsed = time.monotonic() - started
                    self._check(scenario, answer)
                    self._settle(scenario, proc, round_no, log)
                    return elapsed
                if proc.poll() is not None:
                    raise RuntimeError(f"{scenario.label} exited with {proc.returncode}: {_tail(log)}")
                time.sleep(POLL_SECONDS)
            raise TimeoutError(f"{scenario.label} gave no answer within {self.args.timeout:g} s: {_tail(log)}")
        finally:
            _stop(proc)
            if scenario.stop is not None:
                scenario.stop()

    def _settle(self, scenario: Scenario, proc: subprocess.Popen, round_no: int, log: Path) -> None:
        if scenario.settle is None:
            return
        deadline = time.monotonic() + self.args.timeout
        while not scenario.settle(round_no):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{scenario.label}: the model was never prepared: {_tail(log)}")
            time.sleep(0.05)

    def _post(self, port: int) -> bytes | None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/score", body=self.body, headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            payload = answer.read()
            return payload if answer.status == 200 else None
        except OSError:  # not listening yet, or reset by a container proxy with nothing behind it
            return None
        finally:
            conn.close()

    def _check(self, scenario: Scenario, payload: bytes) -> None:
        if scenario.key in ("constant", "docker-constant"):
            return
        got = json.loads(payload)
        want = scenario.expected if scenario.expected is not None else self.expected
        if not (len(got) == 1 and want is not None and math.isclose(got[0], want, rel_tol=1e-9)):
            raise RuntimeError(f"{scenario.label} answered {got!r}, expected [{want!r}]")

    # -- the run -----------------------------------------------------------------------------------

    def run(self) -> list[Scenario]:
        compile_sources(self.args.also_baseline)
        progress("training and registering the worked example in a temporary embedded store")
        store = train(self._mkdir("store"))
        folder = download_model_folder(store, self._mkdir("local-model"))
        self.expected = expected_prediction(folder, self.row)
        with contextlib.ExitStack() as stack:
            scenarios = self.scenarios(store, folder)
            if not self.args.no_peers:
                scenarios.extend(self.registry_scenarios(stack, store, folder))
            self._rounds(scenarios)
        return scenarios

    def _rounds(self, scenarios: list[Scenario]) -> None:
        for round_no in range(self.args.repeat):
            for scenario in scenarios:
                port = self.port_for(scenario)
                seconds = self.first_answer(scenario, port, round_no)
                scenario.seconds.append(seconds)
                scenario.found_by.append(found_by(self.workdir / f"{scenario.key}-{round_no}.log"))
                progress(f"round {round_no + 1}: {scenario.label}: first answer after {seconds:.3f} s")

    def port_for(self, scenario: Scenario) -> int:
        self._port = free_port()
        return self._port

    def serve(
        self, store: Store, uri: str, cache: Callable[[int], Path], **extra: str
    ) -> Callable[[int], tuple[list[str], dict[str, str]]]:
        """`diabetes serve` on `uri` with the round's model cache, and `extra` in its environment."""
        workers = str(self.args.workers)

        def launch(round_no: int) -> tuple[list[str], dict[str, str]]:
            cmd = [
                str(BIN / "diabetes"),
                "serve",
                "--model-uri",
                uri,
                "--port",
                str(self._port),
                "--workers",
                workers,
                # gRPC on, as by default, but on a free port: the default 8081 may be taken here.
                "--grpc-port",
                str(free_port()),
            ]
            env = clean_env(
                DIABETES_HOME=str(store.home),
                DIABETES_MODEL_CACHE=str(cache(round_no)),
                DIABETES_ACCESS_LOG="false",
                **extra,
            )
            return cmd, env

        return launch

    def fresh(self, name: str) -> Callable[[int], Path]:
        """A new cache per round for first starts; the start right after reuses it."""
        return lambda round_no: self.workdir / f"cache-{name}-{round_no}"

    def prepared(self, name: str) -> Callable[[int], bool]:
        """Whether the round's cache holds a prepared model (what a restart starts from)."""

        def done(round_no: int) -> bool:
            folder = self.fresh(name)(round_no) / "prepared"
            return folder.is_dir() and any(not entry.name.startswith(".") for entry in folder.iterdir())

        return done

    def scenarios(self, store: Store, folder: Path) -> list[Scenario]:
        def serve(uri: str, cache: Callable[[int], Path]) -> Callable[[int], tuple[list[str], dict[str, str]]]:
            return self.serve(store, uri, cache)

        fresh, prepared = self.fresh, self.prepared

        def constant(round_no: int) -> tuple[list[str], dict[str, str]]:
            return servers.constant(self.args.workers).cmd(self._port), clean_env()

        alias = f"models:/{store.model_name}@champion"
        found = [
            Scenario("constant", "constant-reply ASGI app", constant),
            Scenario(
                "local-first",
                "local folder, first start",
                serve(str(folder), fresh("local")),
                Target(1.5),
                settle=prepared("local"),
            ),
            Scenario("local-restart", "local folder, restart", serve(str(folder), fresh("local")), Target(0.6, 2.5)),
            Scenario(
                "version-first",
                f"{store.model_uri}, first start",
                serve(store.model_uri, fresh("registry")),
                # Issue 26: ahead of the Azure ML inference server, where the bench runs it.
                Target(2.5, ahead_of=None if self.args.no_peers else "azureml"),
                settle=prepared("registry"),
            ),
            Scenario(
                "version-seen",
                f"{store.model_uri}, seen before",
                serve(store.model_uri, fresh("registry")),
                Target(0.6, 2.5),
            ),
            Scenario("alias", f"{alias}, version seen before", serve(alias, fresh("registry")), Target(4.0)),
            Scenario("alias-first", f"{alias}, first start", serve(alias, fresh("alias"))),
        ]
        if self.args.docker:
            found.extend(self.docker_scenarios(folder))
        return found

    def registry_scenarios(self, stack: contextlib.ExitStack, store: Store, folder: Path) -> list[Scenario]:
        """A first start from a real `mlflow server` (the version registered over REST, its files behind
        the artifact proxy), the Azure ML inference server on the same model (its peer in issue 26),
        and with --also-baseline, both registry first starts on the code before, in the same rounds."""
        from loadtests.bench import azureml_server, tracking_server
        from loadtests.bench.mlserver import dump_estimator

        progress("starting an mlflow server and registering the worked example through it")
        uri = stack.enter_context(tracking_server.running(self.workdir / "mlflow-server"))
        server_store = tracking_server.train(self.workdir / "server-home", uri)
        server_folder = download_model_folder(server_store, self._mkdir("server-model"))
        server_expected = expected_prediction(server_folder, self.row)

        bin_dir = azureml_server.virtualenv(progress)
        estimator = dump_estimator(folder, self.workdir / "model.joblib")
        azureml_folder = azureml_server.model_dir(self.workdir / "azureml", estimator)

        def azureml(round_no: int) -> tuple[list[str], dict[str, str]]:
            return azureml_server.command(bin_dir, azureml_folder, self._port, self.args.workers)

        server_uri = server_store.model_uri
        found = [
            Scenario(
                "server-first",
                f"{server_uri} on mlflow server, first start",
                self.serve(store, server_uri, self.fresh("server"), DIABETES_TRACKING_URI=uri),
                Target(2.5, ahead_of="azureml"),
                settle=self.prepared("server"),
                expected=server_expected,
            ),
            Scenario("azureml", f"Azure ML inference server {azureml_server.AZMLINFSRV}, local model", azureml),
        ]
        if self.args.also_baseline:
            source = Path(self.args.also_baseline).resolve()
            before = {"PYTHONPATH": os.pathsep.join(str(source / part) for part in ("service", "cli", "client"))}
            found += [
                Scenario(
                    "baseline-version-first",
                    f"{store.model_uri}, first start, code of {source.name}",
                    self.serve(store, store.model_uri, self.fresh("baseline-registry"), **before),
                    settle=self.prepared("baseline-registry"),
                ),
                Scenario(
                    "baseline-server-first",
                    f"{server_uri} on mlflow server, first start, code of {source.name}",
                    self.serve(store, server_uri, self.fresh("baseline-server"), DIABETES_TRACKING_URI=uri, **before),
                    settle=self.prepared("baseline-server"),
                    expected=server_expected,
                ),
            ]
        return found

    def docker_scenarios(self, folder: Path) -> list[Scenario]:
        """The image `deploy local` builds, and its peer: the constant app run in the same image with
        the same `docker run` arguments (resources, read-only root) and the same byte-code seeding."""
        from loadtests.bench.image import build, constant_command, run_command

        name = f"diabetes-startup-{os.getpid()}"
        progress("building the image as `diabetes deploy local` does (minutes)")
        tag, spec = build(folder, self.workdir, name=name, cpus=self.args.workers)

        def launch(round_no: int) -> tuple[list[str], dict[str, str]]:
            return run_command(tag, spec, self._port), dict(os.environ)

        def launch_constant(round_no: int) -> tuple[list[str], dict[str, str]]:
            return constant_command(tag, spec, self._port, servers.REPO, self.args.workers), dict(os.environ)

        def remove() -> None:
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60, check=False)

        return [
            Scenario("docker-constant", "constant-reply app in the same container", launch_constant, stop=remove),
            Scenario(
                "docker",
                "image from `diabetes deploy local`",
                launch,
                Target(0.6, 2.5),
                stop=remove,
                peer="docker-constant",
            ),
        ]

    def _mkdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir()
        return path


def compile_sources(baseline: Path | None = None) -> None:
    """The byte-code of the repository's packages (and the baseline checkout's), as an install leaves
    it (see the module's doc)."""
    progress("compiling the repository's Python sources to byte-code (as an install does)")
    folders = [str(servers.REPO / name) for name in ("service", "cli", "client", "loadtests")]
    if baseline is not None:
        folders += [str(Path(baseline) / name) for name in ("service", "cli", "client")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], check=True, capture_output=True, timeout=300)


def expected_prediction(folder: Path, rows: list[list[float]]) -> float:
    """The model's own prediction for `rows[0]`, computed with scikit-learn in a child process."""
    code = (
        "import json, sys; from diabetes_service.model.loading import load_model; import numpy as np; "
        "m = load_model(sys.argv[1]).estimator; print(float(m.predict(np.array(json.loads(sys.argv[2])))[0]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), json.dumps(rows)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their parent


def found_by(log: Path) -> str:
    """How the service's start-up lines say it found its model (`resolution.report`, `preparation`)."""
    text = log.read_text(errors="replace")
    if "from the prepared-model cache" in text:
        return "cache"
    if "served from its artifact's arrays" in text:
        return "arrays"
    return "prepared" if re.search(r"model \S+: prepared", text) else ""


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def progress(message: str) -> None:
    print(f"[startup {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(scenarios: list[Scenario]) -> tuple[str, bool]:
    medians = {s.key: s.median for s in scenarios}
    head = ["start", "median s", "min s", "max s", "× constant", "target", "result"]
    rows = []
    passed = True
    for s in scenarios:
        ratio = s.median / medians[s.peer]
        target, result = "", ""
        if s.target is not None:
            ok = s.median <= s.target.seconds or (
                s.target.constant_ratio is not None and ratio <= s.target.constant_ratio
            )
            ahead = s.target.ahead_of
            if ahead is not None and ahead in medians:
                ok = ok and s.median < medians[ahead]
            passed &= ok
            target = f"≤ {s.target.seconds:g} s" + (
                f" or ≤ {s.target.constant_ratio:g}×" if s.target.constant_ratio else ""
            )
            if ahead is not None and ahead in medians:
                target += f", < {ahead}"
            result = "PASS" if ok else "FAIL"
        rows.append(
            [
                s.label,
                f"{s.median:.3f}",
                f"{min(s.seconds):.3f}",
                f"{max(s.seconds):.3f}",
                f"{ratio:.2f}×",
                target,
                result,
            ]
        )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for r in [head, *rows]:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines), passed


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.startup",
        description="Seconds from process start to the first correct scoring answer, beside the constant-reply app.",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the table gives medians (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server (default 2)")
    parser.add_argument(
        "--docker",
        action="store_true",
        help="also the image `diabetes deploy local` builds "
        "(needs a Docker engine: DOCKER_HOST, e.g. scripts/docker-session.sh)",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the mlflow server and the Azure ML inference server (its own virtualenv, built once)",
    )
    parser.add_argument(
        "--also-baseline",
        type=Path,
        metavar="DIR",
        help="also time the registry first starts on another checkout's code (e.g. a worktree of main)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a start may take (default 120)")
    parser.add_argument("--json", type=Path, help="also write every measured start to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.workers < 1:
        parser.error("--repeat and --workers must be ≥ 1")
    if args.also_baseline and args.no_peers:
        parser.error("--also-baseline times the registry first starts, which --no-peers skips")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="diabetes-startup-") as tmp:
        try:
            scenarios = Bench(args, Path(tmp)).run()
        except KeyboardInterrupt:
            return 130
        except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    text, passed = table(scenarios)
    print(
        f"seconds from process start to the first correct answer, {args.workers} workers, median of "
        f"{args.repeat} rounds; targets pass on the time or on the ratio to the constant app"
    )
    print()
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {s.key: {"label": s.label, "seconds": s.seconds, "found_by": s.found_by} for s in scenarios},
                indent=2,
            )
        )
    if not passed:
        progress("a target was missed (FAIL above): on a shared machine, repeat and compare the ratios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
