"""An import-linter contract type: what a module must not import *when it is imported*.

import-linter's own contracts count every import, one deferred into a function included. Some of
our rules are about import time only: `diabetes_store` is MLflow-free at import (`import mlflow`
took 8.0 s on this shared 2-core machine, `python -X importtime`), and defers MLflow to the call
that needs it, exactly as the service's resolver does. This contract follows the imports that run
when a module is imported (module level, class bodies, `if`/`try`/`with` blocks; not function
bodies, not `if TYPE_CHECKING:`) through our own modules to any depth, and fails on the first chain
that reaches a forbidden module. pyproject.toml registers it as `import_time`:

    [[tool.importlinter.contracts]]
    type = "import_time"
    source_modules = ["diabetes_store"]
    forbidden_modules = ["mlflow"]
"""

from __future__ import annotations

import ast
import importlib.util
from collections import deque
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.helpers import module_expressions_to_modules


class ImportTimeContract(Contract):
    type_name = "import_time"

    source_modules = fields.SetField(subfield=fields.ModuleExpressionField())
    forbidden_modules = fields.SetField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        forbidden = tuple(str(name) for name in self.forbidden_modules)  # type: ignore[attr-defined]
        sources: set[str] = set()
        for module in module_expressions_to_modules(graph, self.source_modules):  # type: ignore[attr-defined]
            sources |= {module.name, *graph.find_descendants(module.name)}
        known = graph.modules
        chains = [chain for name in sorted(sources) if (chain := _chain(name, known, forbidden))]
        return ContractCheck(kept=not chains, metadata={"chains": chains})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for chain in check.metadata["chains"]:
            hops = " -> ".join(f"{module} (l.{line})" for module, line in chain[:-1])
            output.print_error(f"{hops} -> {chain[-1][0]}", bold=False)
            output.new_line()


def _chain(start: str, known: set[str], forbidden: tuple[str, ...]) -> list[tuple[str, int]] | None:
    """The import-time path from `start` to a forbidden module: [(module, line of its import), ...]."""
    came_from: dict[str, tuple[str, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for imported, line in _eager_imports(module, known):
            if any(imported == name or imported.startswith(name + ".") for name in forbidden):
                path = [(module, line), (imported, 0)]
                while (step := came_from[path[0][0]]) is not None:
                    path.insert(0, step)
                return path
            for target in _internal_modules(imported, known):
                if target not in came_from:
                    came_from[target] = (module, line)
                    queue.append(target)
    return None


def _internal_modules(name: str, known: set[str]) -> list[str]:
    """Our modules that importing `name` runs: it (or the module holding it) and its packages."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known]


def _eager_imports(module: str, known: set[str]) -> list[tuple[str, int]]:
    found = _source_file(module)
    if found is None:
        return []
    file, is_package = found
    visitor = _ImportTime(module if is_package else module.rpartition(".")[0], known)
    visitor.visit(ast.parse(file.read_text(), str(file)))
    return visitor.found


def _source_file(module: str) -> tuple[Path, bool] | None:
    """The module's file (and whether it is a package), found from its top-level package's folder:
    unlike importlib.util.find_spec on a submodule, this imports nothing."""
    root, _, rest = module.partition(".")
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest.split(".") if rest else ())
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py", True
    file = folder.with_suffix(".py")
    return (file, False) if file.is_file() else None


class _ImportTime(ast.NodeVisitor):
    def __init__(self, package: str, known: set[str]) -> None:
        self.package, self.known = package, known
        self.found: list[tuple[str, int]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # its body runs when called
        return

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, node.lineno) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self.found.append((full if full in self.known else base, node.lineno))
