"""The dependency rules: import-linter's contracts in pyproject.toml (run by `make lint`) hold on
this tree, and an import that breaks one makes lint-imports fail, naming that contract and no other.

lint-imports runs in this process (no subprocess): it finds the packages by import, so a check of a
copied tree puts the copy first on sys.path, with our modules out of sys.modules while it runs.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("client", "service", "trainer", "cli", "loadtests")
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}


def _ours(name: str) -> bool:
    return name.split(".")[0].startswith("diabetes_") or name.split(".")[0] == "scripts"


@pytest.fixture
def lint(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[Path], dict]]:
    """lint-imports on a tree: {contract id: "KEPT" | "BROKEN"}, and the exit status under None."""
    saved_modules = {name: module for name, module in sys.modules.items() if _ours(name)}
    saved_path = list(sys.path)

    def run(tree: Path) -> dict:
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.path[:0] = [str(tree / folder) for folder in PACKAGE_FOLDERS]
        monkeypatch.chdir(tree)  # where lint-imports looks for the contract type in scripts/
        status = lint_imports(config_filename=str(tree / "pyproject.toml"), no_cache=True, no_logo=True)
        text = " ".join(capsys.readouterr().out.split())  # contract names are wrapped at 80 columns
        outcome = {}
        for contract_id, name in CONTRACTS.items():
            outcome[contract_id] = "KEPT" if f"{name} KEPT" in text else "BROKEN" if f"{name} BROKEN" in text else text
        return {**outcome, None: status}

    yield run
    for name in [n for n in sys.modules if _ours(n)]:
        del sys.modules[name]
    sys.modules.update(saved_modules)
    sys.path[:] = saved_path


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "reports", "*.binpb")
    for folder in (*PACKAGE_FOLDERS, "scripts"):
        shutil.copytree(REPO / folder, tree / folder, ignore=skip)
    shutil.copy2(REPO / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract(lint: Callable[[Path], dict]) -> None:
    assert len(CONTRACTS) >= 3
    outcome = lint(REPO)
    assert outcome.pop(None) == 0
    assert outcome == dict.fromkeys(CONTRACTS, "KEPT")


# (file, the line added to it, the contracts it breaks)
BREAKS = {
    "trainer imports the service": (
        "trainer/diabetes_trainer/data.py",
        "from diabetes_service import settings",
        {"packages", "trainer-apart"},
    ),
    "client imports the store": (
        "client/diabetes_client/rows.py",
        "import diabetes_store.tracking_uri",
        {"packages", "client-alone"},
    ),
    "deploy reaches past the facade": (
        "service/diabetes_deploy/spec.py",
        "from diabetes_service.model import trust",
        {"deploy-facade"},
    ),
    "model reaches up into scoring": (
        "service/diabetes_service/model/trust.py",
        "from diabetes_service.scoring import core",
        {"wings"},
    ),
    "one protocol imports another": (
        "service/diabetes_service/protocols/mlflow.py",
        "from diabetes_service.protocols import azureml",
        {"protocols"},
    ),
    "the store imports MLflow at import": (
        "service/diabetes_store/tracking_uri.py",
        "import mlflow",
        {"store-mlflow-free"},
    ),
    "the worker imports scikit-learn at import": (
        "service/diabetes_service/supervisor/worker.py",
        "import sklearn",
        {"serving-lean"},
    ),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_an_import_that_breaks_a_rule_fails_lint_naming_it(case: str, tmp_path: Path, lint) -> None:
    file, line, broken = BREAKS[case]
    tree = _copy(tmp_path)
    source = tree / file
    source.write_text(source.read_text() + f"\n{line}  # noqa\n")
    outcome = lint(tree)
    assert outcome.pop(None) != 0
    assert {contract for contract, state in outcome.items() if state == "BROKEN"} == broken
    assert set(outcome.values()) == {"KEPT", "BROKEN"}


def test_a_deferred_import_keeps_an_import_time_rule(tmp_path: Path, lint) -> None:
    """MLflow inside a function of the store is fine: it loads when that call is made, not before."""
    tree = _copy(tmp_path)
    source = tree / "service/diabetes_store/tracking_uri.py"
    source.write_text(source.read_text() + "\n\ndef _later():\n    import mlflow\n\n    return mlflow\n")
    outcome = lint(tree)
    assert outcome.pop(None) == 0
    assert outcome == dict.fromkeys(CONTRACTS, "KEPT")


def test_every_package_ships_in_the_wheel_and_is_under_the_rules() -> None:
    """The wheel (and so the Docker image) lists its packages by hand, and import-linter its root
    packages: a new `diabetes_*` folder missing from either would be left out silently."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = {
        f"{where}/{path.name}"
        for where in PACKAGE_FOLDERS
        for path in (REPO / where).glob("diabetes_*")
        if (path / "__init__.py").exists()
    }
    assert folders == set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert {f.split("/")[1] for f in folders} == set(project["tool"]["importlinter"]["root_packages"])
