"""Every section of a run config, the model's and the scorer's own options included, is checked
when the config is loaded — before any data is read — with one-line errors naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from orderlearn.cli import main
from orderlearn.config import load_config
from orderlearn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "synthetic" / "demo.yaml"

BAD = {  # override -> what the message must say
    "scorer.name=bt-gird": "scorer.name: unknown scorer 'bt-gird'; did you mean 'bt-grid'?",
    "scorer.stpe=0.01": "unknown key 'scorer.stpe'; did you mean 'scorer.step'?",
    "scorer.step=-1": "step must be > 0",
    "scorer.link={slope: -2}": "slope must be finite and > 0",
    "model.backbone=resnet9000": "model.backbone: unknown backbone 'resnet9000'",
    "model.projecton=64": "unknown key 'model.projecton'; did you mean 'model.projection'?",
    "model.image_size=big": "model.image_size: expected int, got 'big'",
    "model.num_classes=4": "model.num_classes: must be 2 or 3",
    "model.name=siamse": "model.name: unknown model 'siamse'; did you mean 'siamese'?",
    "train.eval_batch_size=0": "train.eval_batch_size: bad value 0",
    "pairs.val_total=0": "pairs.val_total: bad value 0",
    "data.limit_test=0": "data.limit_test: bad value 0",
    "data.limit_train=-5": "data.limit_train: bad value -5",
}


@pytest.mark.parametrize("override", list(BAD))
def test_bad_option_is_a_config_error_naming_the_key(override):
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [override])
    assert BAD[override] in str(err.value)
    assert "\n" not in str(err.value)


def test_the_command_line_fails_before_reading_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's synthetic data would be generated under ./runs
    assert main(["run", "--config", str(DEMO), "-o", "scorer.name=bt-gird"]) == 2
    assert "did you mean 'bt-grid'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing generated, read or trained


def test_a_regressor_option_is_checked_against_its_own_options():
    with pytest.raises(ConfigError, match="unknown key 'model.intervl'; did you mean 'model.interval'"):
        load_config(REPO / "configs" / "synthetic" / "dld.yaml", ["model.intervl=0.1"])
