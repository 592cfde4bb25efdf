"""The shape of the package, read from the code itself (ast, no imports executed).

* no import cycles anywhere in ``src/astrid`` (module-level and function-level imports alike;
  only imports under ``if TYPE_CHECKING:`` are left out, since they never run);
* the layer rule: settings/errors → science → model | store → domain → pipeline → api/cli;
* every name in a module's ``__all__`` exists;
* no two public classes/functions of ``src/astrid`` share a name with different definitions.

An edge ``a → b`` means module ``a`` imports module ``b`` (``from p import n`` is an edge to
``p.n`` when that is a module, else to ``p``). Parent packages are not added as edges: their
``__init__`` re-exporting a child is not a cycle of the code's logic.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "astrid"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth, except under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        parent = _resolve(module, path.name == "__init__.py", node)
        names = set()
        for alias in node.names:
            child = f"{parent}.{alias.name}"
            names.add(child if child in MODULES else parent)
    found = set()
    for name in names:
        # ``import astrid.a.b`` may name a module or, for a missing file, its nearest package.
        while name and name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the ``astrid`` modules it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(module, path, node)
        edges.discard(module)
        graph[module] = edges
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _cycle_edges(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]


GRAPH = import_graph()


def test_the_graph_sees_function_level_imports_and_skips_type_checking() -> None:
    tree = ast.parse(
        "import astrid.errors\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from astrid.store import db\n"
        "def f():\n    from astrid.store.tables import Observation\n"
    )
    found = set()
    for node in _imports(tree):
        found |= _targets("astrid.x", SRC / "astrid" / "x.py", node)
    assert found == {"astrid.errors", "astrid.store.tables"}
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = strongly_connected(GRAPH)
    report = "\n".join(
        f"cycle {i}: {', '.join(c)}\n    " + "\n    ".join(_cycle_edges(GRAPH, c))
        for i, c in enumerate(cycles, 1)
    )
    assert not cycles, f"import cycles in src/astrid:\n{report}"


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# Which astrid packages each layer must not import (the layers above it).
FORBIDDEN = {
    "store": {"domain", "pipeline", "api", "cli", "runtime"},
    "model": {"domain", "pipeline", "api", "cli", "runtime"},
    "domain": {"pipeline", "api", "cli"},
    "pipeline": {"api", "cli"},
    "settings": {"science", "store", "model", "domain", "pipeline", "api", "cli", "runtime"},
    "errors": {"science", "store", "model", "domain", "pipeline", "api", "cli", "runtime"},
    "logs": {"science", "store", "model", "domain", "pipeline", "api", "cli", "runtime"},
}


def test_layers_import_only_downwards() -> None:
    violations = []
    for module, targets in sorted(GRAPH.items()):
        layer = _layer(module)
        for target in sorted(targets):
            other = _layer(target)
            if layer == "science":
                if other not in {"science", "errors"}:
                    violations.append(f"{module} -> {target} (science imports only science/errors)")
            elif other in FORBIDDEN.get(layer, set()):
                violations.append(f"{module} -> {target} ({layer} must not import {other})")
    assert not violations, "layer violations:\n" + "\n".join(violations)


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (also inside top-level if/try blocks)."""
    names: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return names


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert node.value is not None
            return list(ast.literal_eval(node.value))
    return None


def test_every_name_in_all_exists() -> None:
    missing = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = _declared_all(tree)
        if declared is None:
            continue
        defined = _top_level_names(tree)
        if "__getattr__" in defined:
            continue
        missing += [f"{module}.{name}" for name in declared if name not in defined]
        duplicated = {name for name in declared if declared.count(name) > 1}
        missing += [f"{module}.{name} (listed twice)" for name in sorted(duplicated)]
    assert not missing, "names in __all__ that the module does not define:\n" + "\n".join(missing)


def public_definitions() -> dict[str, list[str]]:
    """Public top-level class/function name → the modules that define it (not re-export it)."""
    where: dict[str, list[str]] = defaultdict(list)
    for module, path in MODULES.items():
        if module.startswith(ALEMBIC_REVISIONS):
            continue  # every revision defines upgrade()/downgrade(), as Alembic requires
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if not node.name.startswith("_"):
                where[node.name].append(module)
    return where


ALEMBIC_REVISIONS = "astrid.store.migrations.versions."


def test_public_names_are_unique() -> None:
    duplicates = {
        name: modules for name, modules in sorted(public_definitions().items()) if len(modules) > 1
    }
    listing = "\n".join(f"{name}: {', '.join(mods)}" for name, mods in duplicates.items())
    assert not duplicates, f"public names defined more than once:\n{listing}"


@pytest.mark.parametrize("package", ["science", "store", "domain", "api"])
def test_package_docstring_maps_its_modules(package: str) -> None:
    init = SRC / PACKAGE / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    children = sorted(
        p.stem if p.is_file() else p.name
        for p in init.parent.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    )
    unmapped = [c for c in children if f"``{c}``" not in doc]
    assert not unmapped, f"astrid.{package} docstring does not map: {unmapped}"


def test_names_imported_from_store_domain_api_are_in_their_all() -> None:
    """What other modules import from a store/domain/api module is that module's public API."""
    declared = {}
    for module, path in MODULES.items():
        if _layer(module) in {"store", "domain", "api"}:
            names = _declared_all(ast.parse(path.read_text(encoding="utf-8")))
            declared[module] = set(names) if names is not None else None
    unlisted = []
    for module, path in MODULES.items():
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(module, path.name == "__init__.py", node)
            if source == module or source not in declared:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    continue
                public = declared[source]
                if public is None or alias.name not in public:
                    unlisted.append(f"{module} imports {source}.{alias.name}")
    assert not sorted(set(unlisted)), "imported but not in __all__:\n" + "\n".join(
        sorted(set(unlisted))
    )


# Function-level imports allowed in store/domain/api: optional extras (redis, mlflow, boto3)
# and slow imports only one route or command needs (alembic, matplotlib); each carries a
# comment saying which. FastAPI's route walker is imported where it may be missing.
DEFERRED_IMPORTS = {
    "alembic",
    "astropy.visualization",
    "boto3",
    "botocore",
    "fastapi.routing",
    "matplotlib",
    "mlflow",
    "redis",
}


def test_store_domain_api_import_at_module_level() -> None:
    found = []
    for module, path in MODULES.items():
        if _layer(module) not in {"store", "domain", "api"}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in _imports(fn):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for name in names:
                    if not any(name == d or name.startswith(d + ".") for d in DEFERRED_IMPORTS):
                        found.append(f"{module}:{node.lineno} imports {name} inside {fn.name}()")
    assert not found, "function-level imports without a reason:\n" + "\n".join(found)


def test_every_first_party_import_names_a_real_module() -> None:
    """mypy ignores missing imports (for third-party packages without stubs), so a stale
    ``from astrid.<moved module> import name`` would pass it, and benchmarks are not run by
    CI: check every one in src/, tests/ and benchmarks/ here (module and imported name)."""
    import importlib
    import importlib.util

    missing = []
    for root in (SRC, SRC.parent / "tests", SRC.parent / "benchmarks"):
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    pairs = [(node.module, a.name) for a in node.names]
                elif isinstance(node, ast.Import):
                    pairs = [(a.name, None) for a in node.names]
                else:
                    continue
                for module, name in pairs:
                    if module.split(".")[0] != "astrid":
                        continue
                    where = f"{path.relative_to(SRC.parent)}: {module}"
                    if importlib.util.find_spec(module) is None:
                        missing.append(where)
                    elif name and name != "*":
                        mod = importlib.import_module(module)
                        found = hasattr(mod, name) or (
                            importlib.util.find_spec(f"{module}.{name}") is not None
                            if hasattr(mod, "__path__")
                            else False
                        )
                        if not found:
                            missing.append(f"{where}.{name}")
    assert not missing, "imports of modules or names that do not exist:\n" + "\n".join(missing)
