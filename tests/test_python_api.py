"""The Python API mirrors the command line: ``orderlearn.load(...).predict`` gives the numbers
``orderlearn predict`` writes, ``orderlearn.run`` runs a config with ``-o``-style overrides (a
file's run records the command that reproduces it and scores as the same config given as a
mapping), ``orderlearn.compare`` gives the rows of ``orderlearn compare``; each raises the
command's one-line errors."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import orderlearn
from orderlearn.cli import main
from orderlearn.errors import ConfigError, DataError

from builders import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]


def tiny_raw(root: Path, out: Path) -> dict:
    raw = tiny_config(root, out, epochs=2)
    raw["pairs"] = {"total": 300, "val_total": 60}
    raw["bank"] = {"per_bin": 2}
    raw["direct_baseline"] = False
    return raw


@pytest.fixture(scope="module")
def api_run(synthetic_root, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny run made with ``orderlearn.run`` from a mapping and a mapping of overrides."""
    out = tmp_path_factory.mktemp("api") / "run"
    raw = tiny_raw(synthetic_root, out)
    given = json.loads(json.dumps(raw))
    results = orderlearn.run(raw, {"train.epochs": 1, "scorer.step": 0.02})
    assert raw == given  # the caller's mapping is left as it was
    return out, results


def same_json(a: object, b: object) -> bool:
    """Equal as JSON text (NaN metrics of a tiny run compare equal there, not as floats)."""
    return json.dumps(a, sort_keys=True, default=float) == json.dumps(b, sort_keys=True, default=float)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def photos_of(run: Path, folder: Path, count: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for row in read_rows(run / "scores.csv")[:count]:
        shutil.copy(row["path"], folder / Path(row["path"]).name)
    return folder


def test_run_applies_the_overrides(api_run):
    out, results = api_run
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["scorer"]["args"]["step"] == 0.02
    assert "command" not in results  # a mapping has no command line to record
    assert (out / "scores.csv").is_file()
    assert same_json(results, json.loads((out / "results.json").read_text()))


def test_predict_gives_the_numbers_of_the_predict_command(api_run, tmp_path, capsys):
    out, _ = api_run
    photos = photos_of(out, tmp_path / "photos")
    assert main(["predict", str(photos), "--model", str(out), "--align", "none", "--json", str(tmp_path / "p.json")]) == 0
    printed = capsys.readouterr().out
    rows = orderlearn.load(out).predict(photos, align="none")
    assert [dataclasses.asdict(r) for r in rows] == json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert len(rows) == 5 and all(r.file in printed for r in rows)
    assert all(r.lower95 <= r.score <= r.upper95 and 0 <= r.percentile <= 100 for r in rows)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows[0].score = 0.0
    (one,) = orderlearn.load(str(out)).predict(rows[0].file, align="none")  # one file, as text
    assert one.file == rows[0].file and one.score == rows[0].score
    assert one.std == pytest.approx(rows[0].std, rel=1e-12)  # the posterior's sum may round apart alone


def test_predict_and_load_raise_the_commands_one_line_errors(api_run, tmp_path, capsys):
    out, _ = api_run
    photos = photos_of(out, tmp_path / "photos", count=2)
    (photos / "broken.jpg").write_text("not a JPEG")
    model = orderlearn.load(out)
    with pytest.raises(DataError, match=r"^not scored: .*broken\.jpg: ") as caught:
        model.predict(photos, align="none")
    assert "\n" not in str(caught.value)
    kept = model.predict(photos, align="none", skip_failed=True)
    assert sorted(Path(r.file).name for r in kept) == sorted(p.name for p in photos.iterdir() if p.name != "broken.jpg")
    with pytest.raises(ConfigError, match=r"^align: 'dlib' is not one of \['mtcnn', 'none'\]$"):
        model.predict(photos, align="dlib")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        orderlearn.load(missing)
    capsys.readouterr()
    assert main(["predict", str(photos), "--model", str(missing)]) == 2
    assert f"error: {caught.value}\n" in capsys.readouterr().err


def test_run_from_a_file_with_keyword_overrides_records_the_command(api_run, tmp_path):
    """The file's run with ``**{"train.epochs": 1}`` is the mapping's run: same config, same scores."""
    out, _ = api_run
    raw = tiny_raw(Path(yaml.safe_load((out / "config.yaml").read_text())["data"]["root"]), tmp_path / "from-file")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    results = orderlearn.run(path, {"train.epochs": 3}, **{"train.epochs": 1, "scorer.step": 0.02})  # a keyword wins
    assert results["command"] == f"orderlearn run --config {path} -o train.epochs=1 -o scorer.step=0.02"
    assert read_rows(tmp_path / "from-file" / "scores.csv") == read_rows(out / "scores.csv")


def test_run_raises_the_loaders_error_before_any_data_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "never"), "data": {"root": str(tmp_path / "none")}}))
    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch'; did you mean 'train.epochs'\?"):
        orderlearn.run(path, **{"train.epoch": 1})
    with pytest.raises(ConfigError, match=r"^train.epochs: bad value 0$"):
        orderlearn.run({"output_dir": str(tmp_path / "never")}, {"train.epochs": 0})
    assert not (tmp_path / "never").exists()


def test_compare_gives_the_rows_of_the_compare_command(api_run, tmp_path, capsys):
    out, _ = api_run
    assert main(["compare", str(out), "--out", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "cli" / "compare.json").read_text())["rows"]
    rows = orderlearn.compare([out])
    assert same_json(rows, written)
    assert not (tmp_path / "api").exists()
    assert same_json(orderlearn.compare([str(out)], out=tmp_path / "api"), rows)
    assert (tmp_path / "api" / "compare.md").is_file()
    with pytest.raises(DataError, match="^compare needs at least one run folder$"):
        orderlearn.compare([])


def test_the_api_is_listed_by_the_package():
    for name in ("load", "run", "compare", "models", "config_reference", "Predictor", "Prediction"):
        assert name in dir(orderlearn) and callable(getattr(orderlearn, name))


@pytest.mark.slow  # a subprocess
def test_import_orderlearn_imports_no_torch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    code = "import sys, orderlearn; dir(orderlearn); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]
