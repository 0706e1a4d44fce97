"""Issue 31, cases 14 and 18 (files and values named on the command line): a folder, a symbolic
link loop, a photo or a scores file with one image twice given where a CSV is expected, and
``synth`` sizes the generator cannot write, are each one line saying what is wrong, never a
traceback or a message about something else (a folder "does not exist", a loop "no such file")."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from orderlearn.cli import build_parser, main

HEADER = ["path", "true_score", "score", "std", "lower95", "upper95"]


def write_scores(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for name, truth, score in rows:
            writer.writerow([name, truth, score, "", "", ""])
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


@pytest.fixture
def loop(tmp_path) -> Path:
    os.symlink(tmp_path / "loop_b.csv", tmp_path / "loop_a.csv")
    os.symlink(tmp_path / "loop_a.csv", tmp_path / "loop_b.csv")
    return tmp_path / "loop_a.csv"


# --- evaluate --scores ---------------------------------------------------------------------------

def test_evaluate_a_folder_says_it_is_a_folder(tmp_path, capsys):
    assert main(["evaluate", "--scores", str(tmp_path)]) == 2
    assert one_error_line(capsys) == f"error: scores file {tmp_path} is a folder, not a file"


def test_evaluate_a_symlink_loop_says_so(loop, capsys):
    assert main(["evaluate", "--scores", str(loop)]) == 2
    assert one_error_line(capsys) == f"error: scores file {loop} is a symbolic link loop"


def test_evaluate_a_dangling_link_names_its_target(tmp_path, capsys):
    os.symlink(tmp_path / "gone.csv", tmp_path / "link.csv")
    assert main(["evaluate", "--scores", str(tmp_path / "link.csv")]) == 2
    assert one_error_line(capsys) == (f"error: scores file {tmp_path / 'link.csv'} is a symbolic link to "
                                      f"{tmp_path / 'gone.csv'}, which does not exist")


def test_evaluate_a_missing_file_still_says_it_does_not_exist(tmp_path, capsys):
    assert main(["evaluate", "--scores", str(tmp_path / "none.csv")]) == 2
    assert one_error_line(capsys) == f"error: scores file {tmp_path / 'none.csv'} does not exist"


def test_evaluate_a_photo_is_not_a_csv(photo, capsys):
    assert main(["evaluate", "--scores", str(photo)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {photo}: not a CSV text file (") and "UnicodeDecodeError" not in err


def test_evaluate_refuses_a_path_listed_twice(tmp_path, capsys):
    scores = write_scores(tmp_path / "scores.csv", [("a.jpg", 3.0, 2.9), ("b.jpg", 2.0, 2.2), ("a.jpg", 3.0, 2.9)])
    assert main(["evaluate", "--scores", str(scores)]) == 2
    assert one_error_line(capsys) == f"error: {scores}:4: path 'a.jpg' is listed twice (first on line 2)"
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_distinct_paths_still_work(tmp_path, capsys):
    scores = write_scores(tmp_path / "scores.csv", [("a.jpg", 3.0, 2.9), ("b.jpg", 2.0, 2.2), ("c.jpg", 4.0, 3.5)])
    assert main(["evaluate", "--scores", str(scores)]) == 0
    assert (tmp_path / "metrics.json").is_file()


# --- compare --with-table ------------------------------------------------------------------------

def test_compare_with_a_photo_as_table_is_one_line(photo, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--with-table", str(photo)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {photo}: not a CSV text file (") and "UnicodeDecodeError" not in err


def test_compare_with_a_folder_as_table_says_it_is_a_folder(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--with-table", str(tmp_path)]) == 2
    assert one_error_line(capsys) == f"error: table {tmp_path} is a folder, not a file (--with-table takes a compare.csv)"


# --- synth ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--images", "0"], ["--images", "3"], ["--images", "-5"], ["--size", "0"],
                                  ["--size", "15"], ["--seed", "-1"], ["--images", "many"]])
def test_synth_sizes_it_cannot_write_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["synth", "--out", "D", *argv])
    assert stop.value.code == 2
    assert f"argument {argv[0]}: expected an integer >=" in capsys.readouterr().err


def test_synth_the_smallest_sizes_parse():
    args = build_parser().parse_args(["synth", "--out", "D", "--images", "5", "--size", "16"])
    assert (args.images, args.size, args.overwrite) == (5, 16, False)


def test_synth_into_another_dataset_names_the_option_not_a_keyword(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["synth", "--out", str(out), "--images", "5", "--size", "16"]) == 0
    capsys.readouterr()
    assert main(["synth", "--out", str(out), "--images", "6", "--size", "16"]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: --out: {out} exists with different content") and "overwrite=True" not in err
    assert err.endswith("Pass --overwrite to replace it, or choose another --out.")
    assert main(["synth", "--out", str(out), "--images", "6", "--size", "16", "--overwrite"]) == 0
    assert len(list((out / "Images").iterdir())) == 6
