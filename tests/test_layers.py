"""The package's layers (shared/DESIGN.md, "Layout"): each module imports only from its own layer or
the layers below, imports inside functions included; no import cycle; no module over 900 lines;
``reslab --help`` loads neither torch nor pandas."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reslab"

#: Layer of each module, lowest first; a module not named here belongs to the layer of its package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("reslab", "reslab._version", "reslab._env", "reslab._io", "reslab._errors", "reslab.profiles", "reslab.claims",
              "reslab.evidence", "reslab.stats", "reslab.paths", "reslab.results")),
    ("domain", ("reslab.data", "reslab.models", "reslab.distributed")),
    ("engine", ("reslab.train", "reslab.checkpoint", "reslab.progress", "reslab.gradcam", "reslab.plots", "reslab.params")),
    ("runs.spec", ("reslab.runs", "reslab.runs.spec")),
    ("runs.store", ("reslab.runs.store",)),
    ("runs.cost", ("reslab.runs.cost",)),
    ("runs.jobs", ("reslab.runs.jobs",)),
    ("runs.execute", ("reslab.runs.execute",)),
    ("tables", ("reslab.tables",)),
    ("catalog", ("reslab.catalog",)),
    ("app", ("reslab.app",)),
    ("cli", ("reslab.cli",)),
]
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if (module == m or module.startswith(m + ".")) and len(m) > best:
                best, rank = len(m), i
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to DESIGN.md's layout)")
    return rank


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """``(imported reslab module, line, inside a function)`` for every reslab import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node) if n is not node}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for name in names:
            if name == "reslab" or name.startswith("reslab."):
                while name not in MODULES:
                    name = name.rpartition(".")[0]
                if name != module:
                    out.append((name, node.lineno, id(node) in in_function))
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_import_goes_to_the_same_layer_or_below():
    wrong = [f"{m}:{line} imports {target} ({LAYERS[layer_of(target)][0]} above {LAYERS[layer_of(m)][0]})"
             for m, edges in GRAPH.items() for target, line, _ in edges if layer_of(target) > layer_of(m)]
    assert not wrong, "\n".join(wrong)


def test_no_reslab_import_inside_a_function():
    """Hidden imports hid the old cycle: only the CLI loads its commands late (by name, importlib)."""
    lazy = [f"{m}:{line} imports {target} inside a function" for m, edges in GRAPH.items()
            for target, line, inside in edges if inside]
    assert not lazy, "\n".join(lazy)


def test_no_import_cycle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in {t for t, _, _ in GRAPH[v]}:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_summary_imports_no_table_module():
    """The summary reads the tables' CSVs; it never calls a table's code."""
    tables = {t for t, _, _ in GRAPH["reslab.tables.summary"] if t.startswith("reslab.tables.")}
    assert tables <= {"reslab.tables._common"}, tables


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_900_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= 900, f"{module}: {lines} lines; split it along its sections"


def test_the_layer_test_knows_every_module():
    assert {LAYERS[layer_of(m)][0] for m in MODULES} == {name for name, _ in LAYERS}


def test_help_loads_neither_torch_nor_pandas():
    code = ("import sys, io, contextlib\nfrom reslab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_lazy_public_api_gives_the_functions():
    """``reslab.train`` is the training function even after the submodule of that name has loaded."""
    code = ("from reslab.train import TrainConfig\nimport reslab\nfrom reslab import train, create_model\n"
            "print(callable(train) and train.__module__ == 'reslab.train', reslab.TrainConfig is TrainConfig,\n"
            "      create_model.__name__, sorted(set(reslab.__all__) - set(dir(reslab))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "create_model", "[]"], out


def _environ_uses(module: str) -> list[tuple[int, str, bool]]:
    """``(line, variable or "?", written)`` for every ``os.environ`` / ``os.getenv`` use of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}

    def text(arg: ast.expr) -> str | None:  # a string constant, or a module-level name bound to one
        if isinstance(arg, ast.Constant):
            return str(arg.value)
        return constants.get(arg.id) if isinstance(arg, ast.Name) else None

    uses = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            target = node
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getenv":
            target = node
        if target is None:
            continue
        parent = next((p for p in ast.walk(tree) for c in ast.iter_child_nodes(p) if c is target), None)
        grand = next((p for p in ast.walk(tree) for c in ast.iter_child_nodes(p) if c is parent), None)
        key, written = "?", False
        if isinstance(parent, ast.Subscript):
            key, written = text(parent.slice) or "?", isinstance(parent.ctx, ast.Store)
        elif isinstance(grand, ast.Call) and isinstance(parent, ast.Attribute):
            key = (text(grand.args[0]) if grand.args else None) or "?"
            written = parent.attr in ("setdefault", "pop", "update")
        elif isinstance(target, ast.Call) and target.args:
            key = text(target.args[0]) or "?"
        uses.append((node.lineno, key, written))
    return uses


def test_only_paths_reads_the_path_variables():
    """Folders are resolved once where a command or notebook starts (reslab.paths) and passed down:
    no other module reads RESLAB_RESULTS, RESLAB_RUNS, RESLAB_RECORD, RESLAB_DATA or RESLAB_CACHE."""
    from reslab.paths import VARIABLES

    readers = [f"{m}:{line} reads {key}" for m in MODULES if m != "reslab.paths"
               for line, key, _ in _environ_uses(m) if key in VARIABLES.values()]
    assert not readers, readers
    settings = [f"{m}:{line} reads {key}" for m in MODULES if m != "reslab._env"
                for line, key, _ in _environ_uses(m) if key in ("RESLAB_COMPILE", "RESLAB_DOWNLOAD")]
    assert not settings, settings  # the switches are read where a command starts (reslab._env), not in training
    source = "\n".join(MODULES[m].read_text() for m in MODULES if m != "reslab.paths")
    for name in VARIABLES.values():  # nor through a name that holds the variable
        assert f'os.environ.get("{name}"' not in source and f'os.environ["{name}"]' not in source


def test_nothing_below_the_entry_points_writes_the_environment():
    """Only the scoped helper that hands settings to a child process (reslab._env.environment) and
    torch.distributed's rendezvous variables (reslab.distributed) write os.environ."""
    writers = [f"{m}:{line} writes {key}" for m in MODULES if m not in ("reslab._env", "reslab.distributed")
               for line, key, written in _environ_uses(m) if written]
    assert not writers, writers
