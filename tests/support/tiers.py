"""The suite's two tiers, by rule: a test that starts a process is marked `process`, every other is fast.

Why a rule and not hand marks: 47 of 67 test files started processes and only 63 tests carried a
marker (issue 22); teammates add files every day, and a hand mark is the one they forget. So:

- At collection, `classify` reads the code a test can reach (its function, every fixture it uses,
  and what those call in `tests/`, `loadtests/` and our packages, followed name by name through
  module globals and imports inside functions) and marks the test `process` when that code names a
  way to start one (`subprocess`, `multiprocessing.Process`, `os.fork`, `os.system`, ...). `make test-fast`
  deselects them (`-m "not process"`).
- Reading code can miss a call made by a name it cannot follow (`getattr`, a module imported later),
  so at run time every test the rule left fast runs under `no_processes`: starting a process there
  fails the test, naming the call and the fix. A misclassified test is caught the first time it runs,
  in either tier, never silently slow or silently skipped.
- `xdist_group` marks for `make test` (pytest-xdist, `--dist loadgroup`) are rules too (`groups`):
  tests that share one Docker engine and its fixed container names, tests that need the service's
  fixed default ports, tests that run loads against latency targets, and each module whose
  module-scoped fixture starts a server (so it starts once, on one worker) run one after another on
  one worker.
"""

from __future__ import annotations

import inspect
import os
import platform
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# Modules whose use starts a process. `asyncio` reaches subprocess through its own functions, below.
SPAWNING_MODULES = frozenset(
    {"subprocess", "concurrent.futures.process", "pty", "asyncio.subprocess"}
    | {f"multiprocessing.{m}" for m in ("pool", "managers", "process", "popen_fork", "popen_spawn_posix")}
)
# multiprocessing's names that start a process; its shared memory, locks and queues (the rate
# limiter's RawArray) do not.
MULTIPROCESSING_SPAWNING = frozenset({"Process", "Pool", "Manager", "get_context", "ProcessPoolExecutor"})
OS_SPAWNING = frozenset(
    {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
    | {f"spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
    | {f"exec{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
)
ASYNCIO_SPAWNING = frozenset({"create_subprocess_exec", "create_subprocess_shell"})
# Library calls that start a process of their own, by top-level package. The guard names any other
# one the first time a fast test makes it: add it here.
LIBRARY_SPAWNING = {
    # Infers the model's pip requirements by loading it in a child Python (mlflow/utils/requirements_utils.py).
    "mlflow": frozenset({"save_model", "log_model"}),
}
# Code the rule follows into: the tests, the repo's fault harness and our packages. Libraries are not
# followed (a library that starts a process is named by what our code calls: the run-time guard).
FOLLOWED = ("tests", "loadtests", "diabetes_")
# Folders whose tests run loads and check latency or throughput against targets (the benchmarks, the
# Locust load tests, the fault runs): they run one at a time, in xdist's group `timing`.
TIMING_FOLDERS = frozenset({"bench", "loadtests", "faults"})
# The service's default ports (settings.py): a test that needs one of them free cannot share the
# machine with another such test (or a teammate's `make run`).
DEFAULT_PORTS = frozenset({8080, 8081, 8082})


def _followed(module: str | None) -> bool:
    return bool(module) and (module.split(".")[0] in FOLLOWED[:2] or module.startswith(FOLLOWED[2]))


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and those nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _functions(obj: Any) -> list[types.FunctionType]:
    """The plain functions behind a function, method, property or class (its own methods and its
    followed bases': a class's instances are used through them)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(obj, types.FunctionType):
        return [obj]
    if isinstance(obj, types.MethodType):
        return _functions(obj.__func__)
    if isinstance(obj, staticmethod | classmethod):
        return _functions(obj.__func__)
    if isinstance(obj, property):
        return [f for f in (obj.fget, obj.fset, obj.fdel) if isinstance(f, types.FunctionType)]
    if isinstance(obj, type):
        found = []
        for klass in obj.__mro__:
            if _followed(klass.__module__):
                for value in vars(klass).values():
                    found += (
                        _functions(value)
                        if isinstance(value, staticmethod | classmethod | property)
                        else ([value] if isinstance(value, types.FunctionType) else [])
                    )
        return found
    return []


class Reader:
    """Answers "can this code start a process?" with the path that shows it, memoised per function."""

    def __init__(self) -> None:
        self.memo: dict[types.FunctionType, str | None] = {}

    def spawns(self, obj: Any) -> str | None:
        for function in _functions(obj):
            reason = self._function(function)
            if reason:
                return reason
        return None

    def _function(self, function: types.FunctionType) -> str | None:
        if function in self.memo:
            return self.memo[function]
        self.memo[function] = None  # recursion (a function that calls itself, two that call each other)
        reason = self._read(function)
        self.memo[function] = reason
        return reason

    def _read(self, function: types.FunctionType) -> str | None:
        where = f"{function.__module__}.{function.__qualname__}"
        names: set[str] = set()
        for code in _codes(function.__code__):
            names.update(code.co_names)
        scope = dict(function.__globals__)
        if function.__closure__:  # names a nested function takes from the one around it
            for name, cell in zip(function.__code__.co_freevars, function.__closure__, strict=False):
                try:
                    scope[name] = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
        for name in sorted(names):
            # A global, or a module imported inside the function (`import subprocess` there puts its
            # name in co_names, and the module is in sys.modules once anything imported it).
            value = scope.get(name, sys.modules.get(name))
            if value is None:  # a module imported inside the function (`import mlflow.sklearn`), maybe not yet
                top = name.split(".")[0]
                known = name in SPAWNING_MODULES or top in ("subprocess", "multiprocessing") or top in LIBRARY_SPAWNING
                value = types.ModuleType(name) if known else None
            if value is None:
                continue
            reason = self._value(value, names)
            if reason:
                return f"{where} -> {reason}"
        return None

    def _value(self, value: Any, names: set[str]) -> str | None:
        if isinstance(value, types.ModuleType):
            module = value.__name__
            if module in SPAWNING_MODULES:
                return module
            if module.split(".")[0] == "multiprocessing" and names & MULTIPROCESSING_SPAWNING:
                return f"{module}.{min(names & MULTIPROCESSING_SPAWNING)}"
            if module == "os" and names & OS_SPAWNING:
                return f"os.{min(names & OS_SPAWNING)}"
            if module == "asyncio" and names & ASYNCIO_SPAWNING:
                return f"asyncio.{min(names & ASYNCIO_SPAWNING)}"
            library = names & LIBRARY_SPAWNING.get(module.split(".")[0], frozenset())
            if library:
                return f"{module.split('.')[0]} {min(library)}"
            if _followed(module):  # `from tests.support import processes; processes.start(...)`
                for attribute in sorted(names):
                    inner = getattr(value, attribute, None)
                    if inner is not None and not isinstance(inner, types.ModuleType):
                        reason = self._value(inner, names)
                        if reason:
                            return reason
            return None
        module = getattr(value, "__module__", None)
        if not isinstance(module, str):
            return None
        if module in SPAWNING_MODULES or (
            module.startswith("multiprocessing") and getattr(value, "__name__", "") in MULTIPROCESSING_SPAWNING
        ):
            return f"{module}.{getattr(value, '__qualname__', '?')}"
        name = getattr(value, "__name__", "")
        if module == "posix" and name in OS_SPAWNING:  # `from os import fork`
            return f"os.{name}"
        if name in LIBRARY_SPAWNING.get(module.split(".")[0], ()):  # `from mlflow.sklearn import save_model`
            return f"{module}.{name}"
        if _followed(module):
            return self.spawns(value)
        return None


def _fixture_functions(item: pytest.Item) -> Iterator[tuple[str, Any, str]]:
    """(name, function, scope) of every fixture the test uses, directly or through other fixtures."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    for name, definitions in info.name2fixturedefs.items():
        for definition in definitions:
            yield name, definition.func, definition.scope


def _constants(obj: Any) -> set[object]:
    found: set[object] = set()
    for function in _functions(obj):
        for code in _codes(function.__code__):
            for const in code.co_consts:
                found.update(const if isinstance(const, tuple) else (const,))
    return found


def classify(items: list[pytest.Item]) -> None:
    """Mark each test that can start a process `process` (with the reason, for `--collect-only -v`),
    and give the process tests that cannot share the machine their `xdist_group`."""
    reader = Reader()
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        reason = None
        if item.get_closest_marker("process") is None:
            reason = reader.spawns(item.obj)
            for name, function, _scope in _fixture_functions(item):
                if reason:
                    break
                found = reader.spawns(function)
                reason = found and f"fixture {name}: {found}"
            if not reason:
                continue
            item.add_marker(pytest.mark.process(reason=reason))
        group = _group(item, reader)
        if group and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))


def _group(item: pytest.Function, reader: Reader) -> str | None:
    """The serial group of a process test, or None when it may run beside any other."""
    if item.get_closest_marker("docker"):
        return "docker"  # one engine, fixed container and image names (tests/deploy/test_docker.py)
    folder = item.path.parent.name
    if item.get_closest_marker("timing") or (folder in TIMING_FOLDERS and item.path.parent.parent.name == "tests"):
        # Measures latency or runs a load: one at a time, and (`make test`) after the parallel phase,
        # alone on the machine: beside two other xdist workers, the fault suite's 100 ms and 2x p99
        # targets failed on their neighbours' load, not the service's (CI run of 2026-12-08).
        if item.get_closest_marker("timing") is None:
            item.add_marker(pytest.mark.timing)
        return "timing"
    if DEFAULT_PORTS & _constants(item.obj):
        return "default-ports"
    for _name, function, scope in _fixture_functions(item):
        if scope in ("module", "class", "package") and reader.spawns(function):
            return item.module.__name__  # the module's servers start once, on one worker
    return None


def carry_groups(items: list[pytest.Item]) -> None:
    """Make `--dist loadgroup` see the `xdist_group` marks again (run in each xdist worker).

    pytest-xdist learns a test's group from a `@group` suffix its worker adds to the node id at
    collection (xdist/remote.py), by writing `item._nodeid`. Since pytest 9.2 keeps the id as a
    structured `_id`, that write no longer reaches `item.nodeid`: every group was silently ignored
    and the run was a plain `--dist load` (pytest-xdist issue 1386, fix open as PR 1388). Measured in
    the CI run of 2026-12-08: a module's server or virtualenv fixture built again each time its
    tests were dealt to another worker (the azure-train virtualenv three times, ~200 s each), and the
    `default-ports` and `docker` groups not kept to one worker. This writes the same suffix where
    pytest keeps the id; where xdist's own write took effect it does nothing.
    """
    for item in items:
        names = sorted(
            {
                str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                for mark in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if not names or item.nodeid.endswith(suffix) or not hasattr(item, "_id"):
            continue
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(item.nodeid + suffix)  # type: ignore[attr-defined]


def warm_up() -> None:
    """The standard library's one-time process starts, made before the guard is up: they are cached for
    the session, so whichever test asked first would otherwise be failed for them. `platform.processor()`
    runs `uname -p` once (azure-ai-ml's MLClient puts it in its user agent)."""
    platform.processor()


class StartedAProcess(BaseException):
    """A BaseException so that the code under test's `except Exception` cannot swallow it."""


# The process-starting calls the guard replaces: every way Python starts one ends in one of them.
# subprocess binds `_posixsubprocess.fork_exec` at import as `_fork_exec` (or uses os.posix_spawn);
# multiprocessing's spawn and forkserver call `_posixsubprocess.fork_exec`, its fork `os.fork`.
_GUARDED = [("os", name) for name in sorted(OS_SPAWNING) if hasattr(os, name)] + [
    ("_posixsubprocess", "fork_exec"),
    ("subprocess", "_fork_exec"),
]


@contextmanager
def no_processes(item: pytest.Item) -> Iterator[None]:
    """Within: starting a process fails the test (recorded too, in case the code under test catches it).
    From any thread: a server thread the test started is the test's own."""
    warm_up()
    saved: list[tuple[types.ModuleType, str, Callable]] = []

    def refuse(module: str, name: str) -> Callable:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            message = (
                f"{item.nodeid} is in the fast tier but started a process ({module}.{name}); the rule in "
                "tests/support/tiers.py could not see it. Mark the test `@pytest.mark.process` (the reason "
                "in a comment), or make the call visible to the rule (docs/testing.md)."
            )
            item.stash[_VIOLATION] = message
            raise StartedAProcess(message)

        return guarded

    for module_name, name in _GUARDED:
        module = sys.modules.get(module_name) or __import__(module_name)
        original = getattr(module, name)
        saved.append((module, name, original))
        setattr(module, name, refuse(module_name, name))
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


_VIOLATION = pytest.StashKey[str]()


def violation(item: pytest.Item) -> str | None:
    """The guard's message for this test, once: the phase that started the process reports it."""
    message = item.stash.get(_VIOLATION, None)
    if message is not None:
        del item.stash[_VIOLATION]
    return message


def is_fast(item: pytest.Item) -> bool:
    return item.get_closest_marker("process") is None
