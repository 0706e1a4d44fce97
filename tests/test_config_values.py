"""Issue 31, cases 12, 16 and 18 (config part): values that passed the checks and then crashed or
silently degraded a run (a negative seed, an infinite score range or margin, a learning rate of
1e12, SGD momentum -1, an empty output_dir) are one-line ConfigErrors naming the key when the
config loads; a non-finite float is refused wherever a config or an options dataclass holds one."""
from __future__ import annotations

from pathlib import Path

import pytest

from orderlearn.cli import main
from orderlearn.config import load_config
from orderlearn.config_checks import LR_MAX, SEED_LIMIT
from orderlearn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "synthetic" / "demo.yaml"

BAD = {  # override -> the key the message starts with, and words it must hold
    "seed=-1": ("seed", "bad value -1"),
    f"seed={2 ** 32}": ("seed", f"bad value {2 ** 32}"),
    "pairs.seed=-3": ("pairs.seed", "bad value -3"),
    "bank.seed=-3": ("bank.seed", "bad value -3"),
    "data.val_seed=-3": ("data.val_seed", "bad value -3"),
    "data.score_high=.inf": ("data.score_high", "finite"),
    "data.score_low=.nan": ("data.score_low", "finite"),
    "optim.lr=.inf": ("optim.lr", "finite"),
    "optim.lr=1e12": ("optim.lr", "bad value 1000000000000.0"),
    "optim.lr=-0.1": ("optim.lr", "bad value -0.1"),
    "optim.momentum=-1": ("optim.momentum", "bad value -1.0"),
    "optim.momentum=1": ("optim.momentum", "bad value 1.0"),
    "pairs.margin=.inf": ("pairs.margin", "finite"),
    "pairs.margin=-0.5": ("pairs.margin", "bad value -0.5"),
    "schedule.gamma=.nan": ("schedule.gamma", "finite"),
    "schedule.gamma=0": ("schedule.gamma", "bad value 0.0"),
    "schedule.warmup_epochs=.inf": ("schedule.warmup_epochs", "finite"),
    "bank.bin_width=.inf": ("bank.bin_width", "finite"),
    "optim.weight_decay=.nan": ("optim.weight_decay", "finite"),
    "loss.kl_weight=.inf": ("loss.kl_weight", "finite"),
    "model.dropout=.nan": ("model.dropout", "finite"),
    "scorer.step=.inf": ("scorer.step", "finite"),
    "cs_thresholds=[1.0, .inf]": ("cs_thresholds[1]", "finite"),
    "loss.class_weights=[1.0, .nan, 2.0]": ("loss.class_weights[1]", "finite"),
    "output_dir=''": ("output_dir", "empty"),
    "output_dir='  '": ("output_dir", "empty"),
}


@pytest.mark.parametrize("override", list(BAD))
def test_a_value_that_would_fail_later_is_refused_naming_its_key(override):
    key, words = BAD[override]
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [override])
    message = str(err.value)
    assert message.startswith(f"{DEMO}: {key}: "), message
    assert words in message and "\n" not in message


@pytest.mark.parametrize("override", ["seed=0", f"seed={SEED_LIMIT - 1}", "optim.lr=1e-8", f"optim.lr={LR_MAX}",
                                      "optim.momentum=0", "optim.momentum=0.99", "pairs.margin=0",
                                      "schedule.gamma=1.5", "data.score_low=-2.5", "output_dir=runs/x"])
def test_the_edges_of_each_range_load(override):
    load_config(DEMO, [override])


def test_a_bad_value_on_the_command_line_is_one_line_before_any_data_is_read(capsys, tmp_path):
    never = tmp_path / "never"  # a dataset that is not there: had the load passed, reading it fails at once
    assert main(["run", "--config", str(DEMO), "-o", "optim.lr=.inf", "-o", "data.kind=scut", "-o", f"data.root={never}",
                 "-o", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {DEMO}: optim.lr: expected a finite number, got inf"
    assert not (tmp_path / "run").exists()


def test_a_factory_keyword_is_typed_like_an_option(tmp_path):
    """The LLaVA comparator takes ``image_size`` as its factory's keyword, not in its options
    dataclass; a word there used to pass the load and fail when the model was built."""
    with pytest.raises(ConfigError, match=r"model\.image_size: expected int, got 'abc'"):
        load_config(REPO / "configs" / "lmol" / "balanced3_ce.yaml", ["model.image_size=abc"])


@pytest.mark.parametrize("key", ["model.args.image_size", "model.image_size"])
def test_case_16_an_args_override_names_no_untouched_key(key, capsys, tmp_path):
    """Case 16: ``-o model.args.image_size=32`` on the demo (its model options written flat) loads;
    a bad value there names ``model.image_size``, the key the user touched, not ``model.backbone``."""
    assert load_config(DEMO, [f"{key}=32"]).model.args["image_size"] == 32
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [f"{key}=0"])
    assert str(err.value) == f"{DEMO}: model.image_size: must be positive, got 0"
