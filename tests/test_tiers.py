"""The test tiers hold as tests are added: a test that starts another process is marked ``slow``.

``pytest -m "not slow"`` is the inner loop; one unmarked subprocess test (a second Python start-up
with torch, a browser, ``torch.distributed.run``) puts seconds back into it. Read from the source
text: a test reaches a subprocess when its body, a module-level helper or class it names, or a
fixture of its module it takes, names ``subprocess`` (transitively). Tests on the real datasets are
marked by conftest.py; tests that are merely long are marked by hand, from ``--durations``.
"""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
STARTS_A_PROCESS = {"subprocess"}
OUTSIDE = {"slow", "gpu", "benchmark"}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _parameters(node: ast.AST) -> set[str]:
    return {a.arg for a in node.args.args} if isinstance(node, ast.FunctionDef) else set()


def _outside_the_fast_tier(decorators: list[ast.expr]) -> bool:
    """Marked ``slow``, or ``gpu`` / ``benchmark`` (which run only when ``-m`` names them)."""
    return any(isinstance(n, ast.Attribute) and n.attr in OUTSIDE for d in decorators for n in ast.walk(d))


def unmarked_process_tests(source: str) -> list[str]:
    """The ``test_*`` functions of one test module that reach a subprocess and would run in the fast tier."""
    tree = ast.parse(source)
    defs = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    uses = {name: _names(node) | _parameters(node) for name, node in defs.items()}  # parameters: the fixtures it takes
    reaches = {name for name, names in uses.items() if names & STARTS_A_PROCESS}
    grown = True
    while grown:  # helpers, classes and fixtures that use one that reaches a subprocess
        more = {name for name, names in uses.items() if names & reaches} - reaches
        reaches |= more
        grown = bool(more)
    module_slow = any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets)
                      and _outside_the_fast_tier([node.value]) for node in tree.body)
    return sorted(name for name in reaches if name.startswith("test_") and isinstance(defs[name], ast.FunctionDef)
                  and not module_slow and not _outside_the_fast_tier(defs[name].decorator_list))


def test_every_test_that_starts_a_process_is_outside_the_fast_tier():
    found = {path.name: unmarked_process_tests(path.read_text(encoding="utf-8")) for path in sorted(TESTS.glob("test_*.py"))}
    assert {name: tests for name, tests in found.items() if tests} == {}


def test_a_process_reached_through_a_helper_or_fixture_is_found():
    source = '''
import subprocess
import pytest

def launch(cmd):
    return subprocess.run(cmd)

class Browser:
    def open(self):
        return launch(["chromium"])

@pytest.fixture
def page():
    return Browser().open()

def test_direct():
    subprocess.run(["true"])

def test_helper():
    launch(["true"])

def test_fixture(page):
    pass

@pytest.mark.slow
def test_marked(page):
    pass

@pytest.mark.gpu
def test_on_a_gpu(page):
    pass

def test_pure():
    assert 1 + 1 == 2
'''
    assert unmarked_process_tests(source) == ["test_direct", "test_fixture", "test_helper"]
    assert unmarked_process_tests(source.replace("import pytest\n", "import pytest\npytestmark = pytest.mark.slow\n")) == []
