"""Every fenced code block of README.md and docs/quickstart.md runs, or says why it cannot.

A ``bash`` block's commands are checked without running them: each command's first word is a real
entry point (``orderlearn`` — its line parses with the real parser and ``orderlearn SUB --help``
works —, ``bash`` with a script that exists, ``python`` with a script or module that exists,
``pip install`` of extras that pyproject.toml declares, ``accelerate launch`` of a script or
``-m orderlearn.cli`` line that parses). A ``python`` block is executed, the blocks of a file in
order in one namespace, in a sandbox where the paths the blocks name are tiny stand-ins: the config
they run is the tiny run of tests/builders.py, the photos are synthetic faces. A ``yaml`` block is a
config fragment that loads. A ``text`` block is a picture, not code. A block right after a line
``<!-- skip: REASON -->`` is not run and is reported as skipped with that reason (e.g. ``needs a GPU``).
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import tomllib
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Optional

import pytest
import yaml

from builders import tiny_config

REPO = Path(__file__).resolve().parents[1]
FILES = ("README.md", "docs/quickstart.md")
LANGUAGES = {"bash", "python", "yaml", "text"}
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- skip: (.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    language: str
    code: str
    skip: Optional[str]  # the reason given right before the block, or None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.language}"


def blocks_of(file: str, text: str) -> list[Block]:
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        found.append(Block(file, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2),
                           skip.group(1) if skip else None))
    return found


BLOCKS = [b for f in FILES for b in blocks_of(f, (REPO / f).read_text(encoding="utf-8"))]


def _of(language: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and b.skip is None]


def test_the_blocks_are_found_and_each_has_a_known_language():
    assert {b.file for b in BLOCKS} == set(FILES)
    assert {b.id: b.language for b in BLOCKS if b.language not in LANGUAGES} == {}
    assert _of("bash") and _of("python")


def test_the_block_reader_honours_a_skip_marker():
    text = "a\n\n<!-- skip: needs a GPU -->\n```python\nimport cuda_only\n```\n\n```bash\nls\n```\n"
    first, second = blocks_of("x.md", text)
    assert (first.line, first.language, first.skip, first.code) == (4, "python", "needs a GPU", "import cuda_only\n")
    assert (second.language, second.skip) == ("bash", None)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip], ids=lambda b: b.id)
def test_a_block_marked_skip_is_reported(block):
    pytest.skip(f"{block.id}: {block.skip}")


# --------------------------------------------------------------------------- bash blocks
def commands(code: str) -> list[list[str]]:
    """Each command of a bash block as words: comments dropped, ``a && b`` split."""
    found = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            found.append(words[:cut])
            words = words[cut + 1:]
    return found


def check_orderlearn(args: list[str]) -> None:
    from orderlearn.cli import build_parser

    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"`orderlearn {shlex.join(args)}` does not parse (exit {exc.code})") from None
    with redirect_stdout(StringIO()) as shown, pytest.raises(SystemExit) as done:
        build_parser().parse_args([args[0], "--help"])
    assert done.value.code == 0 and "usage: orderlearn " + args[0] in shown.getvalue()


def check_pip(args: list[str]) -> None:
    assert args[0] == "install", f"pip {args[0]}"
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
    for spec in args[1:]:
        asked = re.fullmatch(r"\.\[([a-z,]+)\]", spec)
        if asked:
            assert set(asked.group(1).split(",")) <= extras, f"pip install {spec}: extras not in pyproject.toml"


def check_python(args: list[str]) -> None:
    if args[0] == "-m":
        assert importlib.util.find_spec(args[1]) is not None, f"python -m {args[1]}: no such module"
    else:
        assert (REPO / args[0]).is_file(), f"python {args[0]}: no such script"


def check_accelerate(args: list[str]) -> None:
    assert importlib.util.find_spec("accelerate") is not None and args[0] == "launch"
    rest = args[1:]
    while rest and rest[0].startswith("--"):
        option, rest = rest[0], rest[1:]
        if "=" not in option:
            value, rest = rest[0], rest[1:]
            if option == "--config_file":
                assert (REPO / value).is_file(), value
    if rest[:2] == ["-m", "orderlearn.cli"]:
        check_orderlearn(rest[2:])
    else:
        assert (REPO / rest[0]).is_file(), f"accelerate launch {rest[0]}: no such script"


ENTRY_POINTS = {
    "orderlearn": check_orderlearn, ".venv/bin/orderlearn": check_orderlearn,
    "bash": lambda args: (REPO / args[0]).is_file() or pytest.fail(f"bash {args[0]}: no such script"),
    "pip": check_pip, "python": check_python, "accelerate": check_accelerate,
}


@pytest.mark.parametrize("block", _of("bash"), ids=lambda b: b.id)
def test_each_command_of_a_bash_block_is_a_real_entry_point(block):
    for words in commands(block.code):
        assert words[0] in ENTRY_POINTS, f"{block.id}: `{shlex.join(words)}` does not start with an entry point"
        ENTRY_POINTS[words[0]](words[1:])


def test_a_command_the_parser_rejects_fails_the_check():
    with pytest.raises(AssertionError, match="does not parse"):
        check_orderlearn(["predict", "photo.jpg"])  # --model is required
    with pytest.raises(AssertionError, match="extras not in pyproject"):
        check_pip(["install", "-e", ".[align,nonexistent]"])
    assert commands("a b && c # note\n\n# only a comment\nd 'e f'\n") == [["a", "b"], ["c"], ["d", "e f"]]


# --------------------------------------------------------------------------- yaml blocks
@pytest.mark.parametrize("block", _of("yaml"), ids=lambda b: b.id)
def test_a_yaml_block_is_a_config_fragment_that_loads(block):
    from orderlearn.config import config_from_dict

    config_from_dict(yaml.safe_load(block.code))


# --------------------------------------------------------------------------- python blocks
@pytest.fixture
def sandbox(tmp_path, synthetic_root, monkeypatch):
    """A working folder holding tiny stand-ins for what the blocks name: ``configs/synthetic/demo.yaml``
    is the tiny run (its output ``runs/synthetic-demo``), ``photos/`` and ``photo.jpg`` synthetic faces."""
    config = tiny_config(synthetic_root, Path("runs/synthetic-demo"), epochs=1)
    config["output_dir"] = "runs/synthetic-demo"
    (tmp_path / "configs" / "synthetic").mkdir(parents=True)
    (tmp_path / "configs" / "synthetic" / "demo.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    faces = sorted((synthetic_root / "Images").glob("*.jpg"))[:2]
    (tmp_path / "photos").mkdir()
    for face in faces:
        shutil.copy(face, tmp_path / "photos" / face.name)
    shutil.copy(faces[0], tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("file", FILES)
def test_the_python_blocks_run_on_tiny_data(file, sandbox):
    blocks = [b for b in _of("python") if b.file == file]
    assert blocks, f"{file} has no python block to run"
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        with redirect_stdout(StringIO()) as printed:
            exec(compile(block.code, block.id, "exec"), namespace)
        assert printed.getvalue().strip(), f"{block.id} printed nothing"
    assert (sandbox / "runs" / "synthetic-demo" / "results.json").is_file()


def test_the_readme_fits_in_200_lines_and_its_first_screen_says_install_and_predict():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:60])
    assert "pip install -e \".[align,serve]\"" in first_screen and "orderlearn predict" in first_screen


def test_the_readme_model_table_lists_every_registered_model():
    import comparators

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- generated: models -->\n(.*?)<!-- end generated -->", readme, re.DOTALL)
    assert block, "README.md has no generated model table"
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (\w+) \|", block.group(1), re.MULTILINE)}
    # the project's own models (other test files register toy models while the suite runs)
    own = [n for n in comparators.available() if comparators.factory_of(n).__module__.startswith("comparators.")]
    assert rows == {name: comparators.kind_of(name) for name in own}


def test_the_readme_model_table_is_the_catalog_rendering():
    """The table is generated: ``python docs/hooks/generated.py`` rewrites it from the registries."""
    spec = importlib.util.spec_from_file_location("docs_generated", REPO / "docs" / "hooks" / "generated.py")
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    import comparators

    data = generated.catalog()  # the project's own models (other test files register toy models while the suite runs)
    data["models"] = [m for m in data["models"] if comparators.factory_of(m["name"]).__module__.startswith("comparators.")]
    assert generated.readme_models_block(readme) == generated.models_table(data), \
        "README.md's model table is stale: run python docs/hooks/generated.py"
