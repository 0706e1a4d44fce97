"""Issue 31, case 5: a fresh run into a folder that already holds a run is refused (it would
overwrite results.json, report.md and scores.csv and leave the old run's later epochs and
direct/ head beside the new run's); ``--overwrite`` empties the folder first, ``--resume``
continues it. Checked when the run folder is claimed, before any data is read."""
from __future__ import annotations

import pytest

from orderlearn import cli
from orderlearn.config import config_from_dict
from orderlearn.errors import ConfigError
from orderlearn.runs.lock import LOCK_NAME
from orderlearn.runs.recipe import setup

pytestmark = pytest.mark.usefixtures("one_thread")


def old_run(folder):
    """What a finished run leaves (names only: the claim never reads them)."""
    (folder / "comparator" / "checkpoints" / "epoch_006").mkdir(parents=True)
    (folder / "direct").mkdir()
    for name in ("results.json", "report.md", "scores.csv"):
        (folder / name).write_text("old\n")
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def tiny_config(out):
    return config_from_dict({"name": "claim", "output_dir": str(out), "model": {"name": "siamese"},
                             "train": {"tracker": "none", "mixed_precision": "no"}})


def test_a_fresh_run_into_a_folder_holding_a_run_is_refused_and_nothing_changes(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    before = old_run(out)
    with pytest.raises(ConfigError) as caught, setup(tiny_config(out)):
        pass
    message = str(caught.value)
    assert message.startswith(f"output_dir: {out} already holds a run (comparator/, direct/, report.md, results.json, scores.csv)")
    assert "--resume" in message and "--overwrite" in message and "\n" not in message
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.name != LOCK_NAME) == before


def test_overwrite_empties_the_folder_first(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    old_run(out)
    with setup(tiny_config(out), overwrite=True) as run:
        assert sorted(p.name for p in run.out.iterdir() if p.name != LOCK_NAME) == ["config.yaml"]


def test_an_empty_or_missing_folder_is_a_fresh_run(tmp_path):
    """So is a folder holding only the config.yaml of a run that stopped before training (a
    config error found once the model was built): the user fixes the config and runs again."""
    for out in (tmp_path / "missing", tmp_path / "empty", tmp_path / "config-only"):
        if out.name != "missing":
            out.mkdir()
        if out.name == "config-only":
            (out / "config.yaml").write_text("name: stopped\n")
        with setup(tiny_config(out)) as run:
            assert (run.out / "config.yaml").is_file()


def test_the_command_line_refuses_before_reading_data_and_offers_both_flags(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    old_run(out)
    config = tmp_path / "c.yaml"
    config.write_text(f"name: claim\noutput_dir: {out}\nmodel: {{name: siamese}}\n"
                      f"data: {{kind: scut, root: {tmp_path / 'no-such-data'}, split: fold1}}\n")
    assert cli.main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output_dir:") and "no-such-data" not in err
    with pytest.raises(SystemExit):
        cli.main(["run", "--config", str(config), "--resume", "--overwrite"])  # one or the other
