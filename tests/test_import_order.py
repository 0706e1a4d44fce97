"""The import order of the project, checked from the source text (nothing is imported).

Every module of ``orderlearn/``, ``comparators/`` and ``scorers/`` belongs to one unit: a
top-level package (``comparators``, ``scorers``), a subpackage of ``orderlearn`` (``orderlearn.data``
with all its modules) or a top-level module of ``orderlearn`` (``orderlearn.cli``). ``LAYERS``
lists the units from the bottom up; a module may import its own unit and the units of lower
layers, never a unit of its own layer or above. Lazy imports inside functions count: they are
dependencies all the same, and the only way a cycle stays hidden until some command runs.

``orderlearn --help`` is checked apart, by running it: the command line answers without
importing torch (nor anything that imports it), so asking for help takes a fraction of a second.

A new subpackage fails ``test_every_unit_is_placed_in_a_layer`` until it is placed in ``LAYERS``:
where it goes is a decision, not something to infer.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("orderlearn", "comparators", "scorers")

LAYERS: list[tuple[str, ...]] = [
    # the vocabulary, the errors, atomic file writes, and the package's own lazy front door: nothing of the project
    ("orderlearn", "orderlearn.errors", "orderlearn.types", "orderlearn.files", "orderlearn.user_files"),
    ("scorers",),                  # Bradley–Terry scorers, links, intervals
    ("comparators",),              # the models, their backbones and views
    ("orderlearn.config_files",),  # YAML reading, base: inheritance
    ("orderlearn.config_sections",),  # the config's dataclasses and their choices
    ("orderlearn.config_typing",),    # YAML values into typed fields
    ("orderlearn.config_checks",),    # the value checks (model and scorer names among them)
    ("orderlearn.config",),        # the validated experiment config: loading, and its public names
    ("orderlearn.data",),          # faces, splits, pairs, the synthetic generator
    ("orderlearn.engine",),        # the training loop, checkpoints, features
    ("orderlearn.bank",),          # references, comparisons, the scoring recipe
    ("orderlearn.report",),        # metrics, tables, plots (decision plots read the scoring recipe)
    ("orderlearn.runs",),          # the run recipe, loaded runs, bundles
    ("orderlearn.commands", "orderlearn.api"),  # one module per CLI command; their Python twins (neither imports the other)
    ("orderlearn.cli",),           # the command line
]

ALLOWED_UPWARD: set[tuple[str, str]] = set()
"""Known module -> module imports against ``LAYERS``, each to be removed, never added to."""


def module_files(repo: Path, packages: Iterable[str] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    modules = {}
    for package in packages:
        for path in sorted((repo / package).rglob("*.py")):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may refer to, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]


def _owning_module(name: str, modules: Mapping[str, object]) -> str:
    """The longest project module that ``name`` is or lies in; '' for anything outside the project."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph(repo: Path = REPO, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (any import statement, at any depth).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``."""
    modules = module_files(repo, packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = _imported_names(node, name, is_package)
            if isinstance(node, ast.ImportFrom):  # the submodule if it is one, else the module named
                submodules = [n for n in names[:-1] if n in modules]
                names = submodules if len(submodules) == len(names) - 1 else submodules + [names[-1]]
            for target in (_owning_module(n, modules) for n in names):
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph.get(successor, ()))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
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
                        cycles.append(sorted(component))
    return cycles


def unit_of(module: str, layers: list[tuple[str, ...]] = LAYERS) -> str:
    """The unit a module belongs to: the longest unit named in ``layers`` that is it or contains it,
    else its top-level package or its ``orderlearn.<name>`` (so that an unplaced unit shows up)."""
    named = [u for layer in layers for u in layer if module == u or module.startswith(u + ".")]
    if named and max(named, key=len) != module.split(".")[0]:
        return max(named, key=len)
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "orderlearn" and len(parts) > 1 else parts[0]


def layer_violations(graph: Mapping[str, Iterable[str]], layers: list[tuple[str, ...]] = LAYERS,
                     allowed: set[tuple[str, str]] = ALLOWED_UPWARD) -> list[str]:
    """Each import of a unit in the same or a higher layer, as 'a -> b (unit a, layer i; unit b, layer j)'."""
    level = {unit: i for i, layer in enumerate(layers) for unit in layer}
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            source_unit, target_unit = unit_of(module, layers), unit_of(target, layers)
            if source_unit == target_unit or (module, target) in allowed:
                continue
            if source_unit not in level or target_unit not in level:
                continue  # reported by unplaced_units
            if level[target_unit] >= level[source_unit]:
                problems.append(f"{module} -> {target} ({source_unit}, layer {level[source_unit]}; "
                                f"{target_unit}, layer {level[target_unit]})")
    return problems


def unplaced_units(graph: Mapping[str, Iterable[str]], layers: list[tuple[str, ...]] = LAYERS) -> set[str]:
    placed = {unit for layer in layers for unit in layer}
    return {unit_of(module, layers) for module in graph} - placed


def test_the_project_has_no_import_cycles():
    assert find_cycles(import_graph()) == []


def test_every_unit_is_placed_in_a_layer():
    assert unplaced_units(import_graph()) == set(), "place each new subpackage or module in LAYERS"


def test_no_module_imports_its_own_layer_or_one_above():
    assert layer_violations(import_graph()) == []


def test_the_bottom_imports_nothing_of_the_project():
    graph = import_graph()
    bottom = [m for m in graph if unit_of(m) in LAYERS[0]]
    assert set(bottom) >= {"orderlearn", "orderlearn.errors", "orderlearn.types", "orderlearn.files"}
    assert {m: sorted(graph[m]) for m in bottom if graph[m]} == {}


def test_every_allowed_upward_import_still_exists():
    """An exception that is no longer needed is deleted, not kept as a licence for later."""
    graph = import_graph()
    assert {(a, b) for a, b in ALLOWED_UPWARD if b not in graph.get(a, ())} == set()


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_relative_and_lazy_imports_is_found(tmp_path):
    repo = write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/b.py": "from .sub.c import thing\n",
        "pkg/sub/c.py": "def thing():\n    from ..a import x\n",
        "pkg/d.py": "import pkg.a\nimport os\n",
    })
    graph = import_graph(repo, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.d"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    del graph["pkg.sub.c"]
    assert find_cycles(graph) == []


def test_an_upward_or_sideways_import_and_an_unplaced_unit_are_found():
    layers = [("orderlearn.errors", "orderlearn.types"), ("orderlearn.data",), ("orderlearn.runs",)]
    graph = {"orderlearn.errors": set(), "orderlearn.types": {"orderlearn.errors"},
             "orderlearn.data.splits": {"orderlearn.runs.lock", "orderlearn.data.scut", "orderlearn.types"},
             "orderlearn.data.scut": set(), "orderlearn.runs.lock": {"orderlearn.data.splits"},
             "orderlearn.engine.loop": {"orderlearn.data.splits"}}
    assert layer_violations(graph, layers, allowed=set()) == [
        "orderlearn.data.splits -> orderlearn.runs.lock (orderlearn.data, layer 1; orderlearn.runs, layer 2)",
        "orderlearn.types -> orderlearn.errors (orderlearn.types, layer 0; orderlearn.errors, layer 0)",
    ]
    assert layer_violations(graph, layers, allowed={("orderlearn.data.splits", "orderlearn.runs.lock"),
                                                    ("orderlearn.types", "orderlearn.errors")}) == []
    assert unplaced_units(graph, layers) == {"orderlearn.engine"}


HEAVY = ("torch", "torchvision", "timm", "transformers", "accelerate", "peft")
"""What ``orderlearn --help`` must not import: each takes seconds, and help needs none of them."""


def modules_in_importtime(stderr: str) -> set[str]:
    """The modules a ``python -X importtime`` run imported, from its report on stderr."""
    return {line.rpartition("|")[2].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def heavy_imports(modules: Iterable[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.slow  # a subprocess
def test_help_imports_no_torch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "orderlearn.cli", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: orderlearn"), done.stderr[-2000:]
    modules = modules_in_importtime(done.stderr)
    assert {"orderlearn", "argparse"} <= modules  # the report was read
    assert heavy_imports(modules) == []


def test_the_importtime_report_is_read():
    report = ("import time: self [us] | cumulative | imported package\n"
              "import time:       120 |        120 |   torch._C\n"
              "import time:      9000 |       9120 | torch\n"
              "import time:        80 |         80 | argparse\n")
    assert modules_in_importtime(report) == {"imported package", "torch._C", "torch", "argparse"}
    assert heavy_imports(modules_in_importtime(report)) == ["torch", "torch._C"]
