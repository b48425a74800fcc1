"""Declared layers: every import in the package, at module level or inside a function, goes
down (or sideways within a layer) the order written in ARCHITECTURE.md, and no modules import
each other in a cycle.

The layer table is read from ARCHITECTURE.md (section "Layers"), so the document and the test
are one source of truth.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The folders installed as neuralsolve's packages (pyproject.toml's package-dir).
SOURCE_ROOTS = {
    "neuralsolve": "neuralsolve",
    "solvers": "neuralsolve.solvers",
    "operators": "neuralsolve.operators",
    "datasets": "neuralsolve.datasets",
    "optim": "neuralsolve.optim",
}


@dataclass(frozen=True)
class Layers:
    """The declared table: which modules each layer holds, and which layers it may import."""

    members: dict[str, str]  # module-name prefix -> layer
    allowed: dict[str, frozenset[str]]  # layer -> the other layers it may import

    def layer_of(self, key: str) -> str | None:
        """The layer of a module key (a module's dotted name; ``pkg.__init__`` for a
        package's own file): the longest listed name that is the key or a package above it."""
        best = None
        for prefix in self.members:
            if (key == prefix or key.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best)
            ):
                best = prefix
        return None if best is None else self.members[best]


def read_layers(text: str) -> Layers:
    """Parse the table under ``## Layers`` of ARCHITECTURE.md: ``| layer | modules | may
    import |``, module names in backquotes, allowed layers separated by commas."""
    section = re.search(r"^## Layers\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        raise AssertionError("ARCHITECTURE.md has no '## Layers' section")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.group(1).splitlines()
        if line.lstrip().startswith("|")
    ]
    members: dict[str, str] = {}
    allowed: dict[str, frozenset[str]] = {}
    for row in rows[2:]:  # past the header and its separator
        if len(row) != 3:
            raise AssertionError(f"a layer row needs 3 cells (layer, modules, may import): {row}")
        layer, modules, may_import = row
        names = re.findall(r"`([\w.]+)`", modules)
        if not names:
            raise AssertionError(f"layer {layer!r} lists no modules in backquotes")
        for name in names:
            members[name] = layer
        allowed[layer] = frozenset(x.strip() for x in may_import.split(",") if x.strip() != "")
    unknown = {x for deps in allowed.values() for x in deps} - set(allowed)
    if unknown:
        raise AssertionError(f"the layer table names undeclared layers: {sorted(unknown)}")
    return Layers(members, allowed)


def module_files() -> dict[str, Path]:
    """Every module key of the package -> its file."""
    out: dict[str, Path] = {}
    for folder, package in SOURCE_ROOTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            out[".".join([package, *parts])] = path
    return out


def _package_of(key: str) -> str:
    """The package a module's relative imports start from."""
    return key[: -len(".__init__")] if key.endswith(".__init__") else key.rpartition(".")[0]


def _resolve(name: str, known: set[str]) -> str:
    """A dotted module name -> its module key (``pkg.__init__`` for a package)."""
    return f"{name}.__init__" if f"{name}.__init__" in known else name


def imports_of(key: str, source: str, known: set[str]) -> list[tuple[int, str]]:
    """``(line, target key)`` for every import of a ``neuralsolve`` module in ``source``, at
    any depth (module level, functions, methods, ``if TYPE_CHECKING``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(key).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod
            targets = [
                f"{module}.{alias.name}"
                if _resolve(f"{module}.{alias.name}", known) in known
                else module
                for alias in node.names
            ]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target == "neuralsolve" or target.startswith("neuralsolve."):
                found.append((node.lineno, _resolve(target, known)))
    return found


def layer_violations(
    layers: Layers, files: dict[str, Path], sources: dict[str, str] | None = None
) -> list[str]:
    """One line per import against the declared order (or of a module no layer holds);
    ``sources`` replaces the text of some files (the test of the test)."""
    known = set(module_files())
    problems: list[str] = []
    for key, path in files.items():
        source = (sources or {}).get(key) or path.read_text()
        where = path.relative_to(ROOT) if path.is_absolute() else path
        own = layers.layer_of(key)
        if own is None:
            problems.append(f"{where}: module {key} is in no declared layer")
            continue
        for line, target in imports_of(key, source, known):
            if target not in known:
                problems.append(f"{where}:{line}: {key} imports {target}, which does not exist")
                continue
            theirs = layers.layer_of(target)
            if theirs is None:
                problems.append(f"{where}:{line}: {target} is in no declared layer")
            elif theirs != own and theirs not in layers.allowed[own]:
                problems.append(
                    f"{where}:{line}: {key} ({own}) imports {target} ({theirs}): "
                    + (
                        f"{own} may import only {', '.join(sorted(layers.allowed[own]))}"
                        if layers.allowed[own]
                        else f"{own} may import no other layer"
                    )
                )
    return problems


def import_cycles(files: dict[str, Path]) -> list[list[str]]:
    """The strongly connected components (more than one module, or a module importing itself)
    of the import graph, function-level imports included (Tarjan)."""
    known = set(files)
    graph = {
        key: sorted({t for _, t in imports_of(key, path.read_text(), known) if t in known})
        for key, path in files.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


@pytest.fixture(scope="module")
def layers() -> Layers:
    return read_layers((ROOT / "ARCHITECTURE.md").read_text())


def test_every_import_follows_the_declared_layers(layers: Layers) -> None:
    problems = layer_violations(layers, module_files())
    assert not problems, "imports against the layers of ARCHITECTURE.md:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    cycles = import_cycles(module_files())
    assert not cycles, "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_nothing_imports_the_cli() -> None:
    files = module_files()
    known = set(files)
    users = [
        f"{path.relative_to(ROOT)}:{line}: {key} imports {target}"
        for key, path in files.items()
        if not key.startswith("neuralsolve.cli.")
        for line, target in imports_of(key, path.read_text(), known)
        if target.startswith("neuralsolve.cli.")
    ]
    assert not users, "the CLI is the top: nothing imports it\n" + "\n".join(users)


def test_the_table_orders_the_layers_without_a_cycle(layers: Layers) -> None:
    # a declared order: some layer imports nothing, and following "may import" never returns
    seen: dict[str, int] = {}

    def depth(layer: str, path: tuple[str, ...] = ()) -> int:
        assert layer not in path, f"the layer table has a cycle: {' -> '.join((*path, layer))}"
        if layer not in seen:
            seen[layer] = 1 + max(
                (depth(x, (*path, layer)) for x in layers.allowed[layer]), default=0
            )
        return seen[layer]

    assert min(depth(layer) for layer in layers.allowed) == 1
    assert layers.layer_of("neuralsolve.linop") == "core"
    assert layers.layer_of("neuralsolve.__init__") != "core"  # the facade imports solvers


@pytest.mark.parametrize(
    "key, source, bad",
    [
        # a function-level import upward: solvers may not use the gallery
        (
            "neuralsolve.solvers.krylov",
            "def f():\n    from neuralsolve.datasets import gallery\n",
            True,
        ),
        # the same by a relative import from a nested package
        ("neuralsolve.solvers.precond.base", "from ...datasets import gallery\n", True),
        # optim is below solvers: it must not import them
        ("neuralsolve.optim.curvature", "import neuralsolve.solvers.krylov\n", True),
        # the core must not import the facade (which imports the solvers)
        ("neuralsolve.linop.base", "def f():\n    import neuralsolve as ns\n", True),
        # downward and sideways imports are fine
        ("neuralsolve.datasets.gallery", "from neuralsolve.solvers import solve\n", False),
        ("neuralsolve.solvers.krylov", "from .precond import make_preconditioner\n", False),
    ],
)
def test_a_wrong_import_is_reported_with_file_line_and_edge(
    layers: Layers, key: str, source: str, bad: bool
) -> None:
    files = module_files()
    problems = layer_violations(layers, {key: files[key]}, sources={key: source})
    # the import under test is on the last line of `source`
    line = source.rstrip("\n").count("\n") + 1
    if bad:
        assert len(problems) == 1, problems
        assert f"{files[key].relative_to(ROOT)}:{line}: {key} (" in problems[0]
    else:
        assert problems == []
