"""Issue 31, case 17: what one upload to ``orderlearn serve`` may cost is bounded, tested on the
page's handler directly (no browser): an upload over the size limit is refused, each request's
folder is gone when it ends, a huge photo is shrunk before alignment (a photo within the limit
is scored from its own file: the score ``predict`` gives), and a file that is not a photo gets
our one-line reason naming it by its uploaded name, not Gradio's message or its cache path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from orderlearn.cli import build_parser, main
from orderlearn.commands.serve import (DEFAULT_MAX_UPLOAD_MB, MAX_PHOTO_SIDE, MB, PhotoScorer, build_app,
                                       launch_options)
from orderlearn.errors import DataError
from orderlearn.runs.loaded import LoadedRun

from builders import tiny_comparator_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(synthetic_root, tmp_path_factory) -> Path:
    return tiny_comparator_run(synthetic_root, tmp_path_factory.mktemp("serve-limits") / "run")


@pytest.fixture(scope="module")
def model(run_dir) -> LoadedRun:
    return LoadedRun.load(run_dir)


@pytest.fixture
def face(synthetic_root, tmp_path) -> Path:
    source = sorted((synthetic_root / "Images").glob("*.jpg"))[0]
    return Path(shutil.copy(source, tmp_path / source.name))


def scorer(model: LoadedRun, work: Path, **limits) -> PhotoScorer:
    return PhotoScorer(model, "none", False, work, **limits)


def test_a_photo_within_the_limits_scores_as_predict_and_leaves_no_folder(model, run_dir, face, tmp_path):
    work = tmp_path / "work"
    crop, score, interval, percentile, picture = scorer(model, work).score(str(face))
    assert main(["predict", str(face), "--model", str(run_dir), "--align", "none", "--json", str(tmp_path / "p.json")]) == 0
    assert score == f"{json.loads((tmp_path / 'p.json').read_text())['predictions'][0]['score']:.6f}"
    assert isinstance(crop, Image.Image) and crop.size == Image.open(face).size
    assert isinstance(picture, Image.Image) and picture.size[0] > 100
    assert list(work.iterdir()) == []  # the request's folder is deleted with it


def test_a_huge_photo_is_shrunk_before_scoring(model, face, tmp_path):
    huge = tmp_path / "huge.jpg"
    Image.open(face).resize((MAX_PHOTO_SIDE + 952, 2 * MAX_PHOTO_SIDE + 904), Image.Resampling.BICUBIC).save(huge, quality=90)
    work = tmp_path / "work"
    crop, score, *_ = scorer(model, work).score({"path": str(huge), "orig_name": "mine.jpg"})
    assert max(crop.size) == MAX_PHOTO_SIDE and crop.size[1] == MAX_PHOTO_SIDE
    assert 1.0 <= float(score) <= 5.0
    assert list(work.iterdir()) == []


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(model, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(2 * MB))  # not even decoded: refused on its size
    with pytest.raises(DataError) as err:
        scorer(model, tmp_path / "work", max_upload_mb=1).score({"path": str(big), "orig_name": "holiday.jpg"})
    assert str(err.value) == "holiday.jpg is 2.0 MB; this page takes photos up to 1 MB"


def test_a_file_that_is_not_a_photo_is_one_line_naming_the_upload(model, tmp_path):
    cached = tmp_path / "gradio-cache" / "3f9a" / "notes.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("not a photo")
    with pytest.raises(DataError) as err:
        scorer(model, tmp_path / "work").score({"path": str(cached), "orig_name": "notes.txt"})
    message = str(err.value)
    assert message.startswith("image notes.txt cannot be decoded") and "gradio-cache" not in message
    assert "\n" not in message
    assert list((tmp_path / "work").iterdir()) == []


def test_the_page_shows_that_line_as_its_error(model, tmp_path):
    gr = pytest.importorskip("gradio")
    (tmp_path / "notes.txt").write_text("not a photo")
    with pytest.raises(gr.Error) as err:
        scorer(model, tmp_path / "work")({"path": str(tmp_path / "notes.txt"), "orig_name": "notes.txt"})
    assert err.value.message.startswith("image notes.txt cannot be decoded")
    with pytest.raises(gr.Error) as err:
        scorer(model, tmp_path / "work")(None)
    assert err.value.message == "upload a photo first"


def test_the_page_decodes_uploads_itself_and_ages_out_gradios_copies(model, tmp_path):
    pytest.importorskip("gradio")
    app = build_app(model, align="none", work_dir=tmp_path / "work")
    (upload,) = [fn for fn in app.fns.values() if isinstance(fn.fn, PhotoScorer)]
    assert upload.preprocess is False  # Gradio's decoder would answer a non-image with its own message
    assert app.delete_cache is not None
    assert launch_options("127.0.0.1", 7860, DEFAULT_MAX_UPLOAD_MB)["max_file_size"] == DEFAULT_MAX_UPLOAD_MB * MB


def test_the_upload_limit_option():
    assert build_parser().parse_args(["serve", "--model", "B"]).max_upload_mb == DEFAULT_MAX_UPLOAD_MB
    assert build_parser().parse_args(["serve", "--model", "B", "--max-upload-mb", "5"]).max_upload_mb == 5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--model", "B", "--max-upload-mb", "0"])
