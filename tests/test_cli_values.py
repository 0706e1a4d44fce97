"""Issue 31, cases 14 and 15: out-of-range numbers on the command line are argparse errors (one
line, exit status 2) before any run is loaded; an unknown --scorer is a one-line ConfigError."""
from __future__ import annotations

import pytest

from orderlearn.cli import build_parser, main
from orderlearn.commands.score import check_scorer_option
from orderlearn.errors import ConfigError

BAD = [
    ["active", "--run", "R", "--budgets", "0"],
    ["active", "--run", "R", "--budgets", "8", "-3"],
    ["active", "--run", "R", "--batch", "0"],
    ["score", "--run", "R", "--plot", "-1"],
    ["export", "R", "--out", "B", "--template-faces", "-5"],
    ["export", "R", "--out", "B", "--thumbnail-size", "-1"],
    ["serve", "--model", "B", "--port", "70000"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[:1] + a[-2:]) for a in BAD])
def test_an_out_of_range_number_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 2
    assert "expected an integer" in capsys.readouterr().err


def test_the_edges_of_each_range_are_accepted():
    build_parser().parse_args(["active", "--run", "R", "--budgets", "1", "--batch", "1"])
    build_parser().parse_args(["score", "--run", "R", "--plot", "0"])
    build_parser().parse_args(["export", "R", "--out", "B", "--template-faces", "1", "--thumbnail-size", "0"])


def test_an_unknown_scorer_names_the_option():
    with pytest.raises(ConfigError, match=r"^--scorer: unknown scorer 'nope'; registered: bt-exact, bt-grid"):
        check_scorer_option("nope")
    check_scorer_option(None)
    check_scorer_option("bt-exact")


def test_score_with_an_unknown_scorer_is_one_line_before_the_run_is_read(tmp_path, capsys):
    assert main(["score", "--run", str(tmp_path / "nowhere"), "--scorer", "nope"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --scorer: unknown scorer 'nope'; registered: bt-exact, bt-grid")
