"""The command line: one module per command, a light ``--help``, one-line errors for bad options."""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from orderlearn.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "demo", "score", "evaluate", "synth", "compare", "active", "blend", "predict", "export", "serve", "models")
HEAVY = ("torch", "timm", "numpy", "transformers", "accelerate")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_has_its_module_named_like_it_with_main():
    assert tuple(subcommands()) == COMMANDS
    for name, parser in subcommands().items():
        assert parser.get_default("command") == name
        module = importlib.import_module(f"orderlearn.commands.{name}")
        assert callable(module.main), name
    assert (REPO / "configs" / "synthetic" / "demo.yaml").is_file()
    from orderlearn.commands.demo import DEMO_CONFIG

    assert DEMO_CONFIG == REPO / "configs" / "synthetic" / "demo.yaml"


@pytest.mark.slow  # a subprocess
def test_help_imports_no_heavy_module():
    """``orderlearn --help`` and every ``orderlearn NAME --help``, in one fresh interpreter: after
    each, none of torch, timm, numpy, transformers, accelerate is loaded."""
    helps = [["--help"], *([name, "--help"] for name in COMMANDS)]
    code = ("import sys\nfrom orderlearn.cli import main\n"
            f"for argv in {helps!r}:\n"
            "    try:\n        main(argv)\n    except SystemExit as exc:\n        assert exc.code == 0, (argv, exc.code)\n"
            f"    print('HEAVY', argv, sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("HEAVY")]
    assert len(lines) == len(helps) and all(line.endswith(" []") for line in lines), lines


@pytest.mark.slow  # a subprocess
def test_python_dash_m_and_the_console_script_reach_main():
    done = subprocess.run([sys.executable, "-m", "orderlearn.cli", "synth", "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: orderlearn synth")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["orderlearn"]
    module, _, function = target.partition(":")
    assert getattr(importlib.import_module(module), function) is main


@pytest.mark.parametrize("argv,option", [
    (["--images", "3"], "--images"), (["--size", "8"], "--size"), (["--seed", "-1"], "--seed"),
])
def test_synth_sizes_the_generator_cannot_write_are_one_line_errors(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as stop:  # a usage error of the parser, before anything is written
        main(["synth", "--out", str(tmp_path / "data"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {option}: expected an integer >=" in err
    assert not (tmp_path / "data").exists()


def test_synth_limits_are_the_generators(tmp_path):
    """The shared minimums are the generator's own: one below each is refused by the generator too."""
    from orderlearn.config_checks import SYNTHETIC_MIN_IMAGES, SYNTHETIC_MIN_SIZE
    from orderlearn.data.synthetic import generate_synthetic_scut
    from orderlearn.data.synthetic.layout import N_FOLDS

    assert SYNTHETIC_MIN_IMAGES == N_FOLDS
    with pytest.raises(ValueError, match="image_size"):
        generate_synthetic_scut(tmp_path / "a", n_images=SYNTHETIC_MIN_IMAGES, image_size=SYNTHETIC_MIN_SIZE - 1)
    with pytest.raises(ValueError, match="n_images"):
        generate_synthetic_scut(tmp_path / "b", n_images=SYNTHETIC_MIN_IMAGES - 1, image_size=SYNTHETIC_MIN_SIZE)


def test_run_with_a_bad_config_is_a_one_line_error_before_any_data(tmp_path, capsys):
    """wce without class weights failed only at the first training batch, as a traceback."""
    config = tmp_path / "c.yaml"
    config.write_text(f"base: {REPO / 'configs' / 'synthetic' / 'demo.yaml'}\nloss:\n  name: wce\n")
    missing = tmp_path / "no-data"  # were the config read past, the run would stop at the data instead
    assert main(["run", "--config", str(config), "-o", f"output_dir={tmp_path / 'run'}", "-o", "data.kind=scut",
                 "-o", f"data.root={missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {config}: loss.class_weights: ") and "\n" not in err
    assert not (tmp_path / "run").exists()
