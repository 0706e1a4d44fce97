"""``orderlearn serve --model BUNDLE``: a web page to score a photo (Gradio, the optional extra ``serve``).

Upload or drop a photo; the page shows the aligned crop, the score with its 95% interval and
its percentile among the bank's references, and the picture of the decision (NLL curve,
comparisons with the bank, nearest references). Every number comes from
:func:`orderlearn.runs.predictions.predict`, the function behind ``orderlearn predict``, on the
uploaded file itself: the page and the command give the same score for the same photo.

What one upload may cost is bounded:

* size: an upload over ``--max-upload-mb`` (default :data:`DEFAULT_MAX_UPLOAD_MB` MB) is refused
  by the server before it is stored, and by the handler should it get one;
* pixels: a photo whose longer side exceeds :data:`MAX_PHOTO_SIDE` px is shrunk to it before
  alignment and scoring (a phone's 4000 px photo aligns to the same face; an 8000 px one would
  hold the single queue for half a minute). Photos within it are scored from their own file;
* disk: each request works in its own temporary folder, deleted when the request ends (the
  pictures go back to the page from memory); Gradio's copies of the uploads are deleted once
  an hour is past (:data:`UPLOAD_CACHE_S`), and all when the server restarts.

The page decodes the upload itself (Gradio's own decoding is turned off), with
:func:`orderlearn.data.images.load_image`'s rules, so a file that is not a photo gets the same
one-line reason ``predict`` prints, naming the uploaded file by its own name.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from PIL import Image

from orderlearn.data.images import load_image, within_side
from orderlearn.errors import ConfigError, DataError
from orderlearn.report.decision_plots import decisions_for, plot_decision
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.predictions import predict

if TYPE_CHECKING:  # pragma: no cover
    import argparse

SERVE_HINT = "the web page needs gradio: `pip install orderlearn[serve]`"
DEFAULT_MAX_UPLOAD_MB = 20  # a phone's JPEG is 2-12 MB; a larger upload is refused
MAX_PHOTO_SIDE = 2048  # px: the longer side a photo is shrunk to before alignment (a face in it keeps >= 100 px)
UPLOAD_CACHE_S = 3600  # Gradio's copies of uploads older than this are deleted, checked as often
MB = 1_000_000

Upload = Union[str, Path, Mapping[str, Any], None]  # a file path, or Gradio's file payload {"path", "orig_name", ...}


def import_gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise ConfigError(f"{SERVE_HINT} ({exc})") from None
    return gradio


class PhotoScorer:
    """What the page calls for one uploaded photo: predict, then draw the decision."""

    def __init__(self, model: LoadedRun, align: str, one_face: bool, work_dir: Path,
                 max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, max_side: int = MAX_PHOTO_SIDE) -> None:
        self.model, self.align, self.one_face, self.work_dir = model, align, one_face, Path(work_dir)
        self.max_upload_mb, self.max_side = max_upload_mb, max_side

    def __call__(self, photo: Upload) -> tuple[Image.Image, str, str, str, Image.Image]:
        """:meth:`score`, a refused photo shown as the page's one-line error."""
        gr = import_gradio()
        try:
            return self.score(photo)
        except (DataError, ConfigError) as exc:  # the user's photo, not the server: no traceback on its console
            raise gr.Error(str(exc), print_exception=False) from None

    def score(self, photo: Upload) -> tuple[Image.Image, str, str, str, Image.Image]:
        """(scored crop, score, interval, percentile, decision picture), the pictures in memory;
        a photo that cannot be scored is a one-line DataError naming it by its uploaded name."""
        path, name = _upload_path(photo)
        size = path.stat().st_size if path.is_file() else 0
        if size > self.max_upload_mb * MB:
            raise DataError(f"{name} is {size / MB:.1f} MB; this page takes photos up to {self.max_upload_mb} MB")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="request-", dir=self.work_dir) as folder:
            try:
                return self._score_in(Path(folder), path)
            except DataError as exc:
                raise DataError(str(exc).replace(str(path), name)) from None

    def _score_in(self, folder: Path, path: Path) -> tuple[Image.Image, str, str, str, Image.Image]:
        scored_file = within_side(path, self.max_side, folder)
        result = predict(self.model, [scored_file], folder, self.align, self.one_face)
        if result.failed:
            raise DataError(f"not scored: {result.failed[0][1]}")
        item = result.items[0]
        (stem, decision), = decisions_for(["your photo"], [result.scored[0].path], result.comparisons.for_scoring,
                                          result.scores, self.model.bank.scores)
        picture = plot_decision(folder / f"{stem}.png", decision, self.model.recipe, self.model.references.get)
        interval = "" if item.lower95 is None else f"{item.lower95:.3f} – {item.upper95:.3f}"
        return (load_image(result.scored[0].path), f"{item.score:.6f}", interval, f"{item.percentile:.1f}",
                load_image(picture))


def _upload_path(photo: Upload) -> tuple[Path, str]:
    """The uploaded file and the name to call it by (its own name, not Gradio's cache path)."""
    if isinstance(photo, Mapping):
        path, name = photo.get("path"), photo.get("orig_name")
    else:
        path, name = photo, None
    if not path:
        raise DataError("upload a photo first")
    return Path(path), str(name or Path(path).name)


def build_app(model: LoadedRun, align: str = "mtcnn", one_face: bool = False, work_dir: Optional[Path] = None,
              max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB) -> Any:
    """The Gradio Blocks page of ``model``."""
    gr = import_gradio()
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="orderlearn-serve-"))
    scorer = PhotoScorer(model, align, one_face, work, max_upload_mb)
    low, high = model.recipe.low, model.recipe.high
    with gr.Blocks(title=f"orderlearn: {model.config.name}", delete_cache=(UPLOAD_CACHE_S, UPLOAD_CACHE_S)) as app:
        gr.Markdown(f"## {model.config.name}\nA score from {low:g} to {high:g} by comparison with "
                    f"{len(model.bank)} scored reference faces ({model.config.model.name}, "
                    f"{'aligned with MTCNN' if align == 'mtcnn' else 'no alignment'}). Upload a photo of one face "
                    f"(up to {max_upload_mb} MB).")
        with gr.Row():
            photo = gr.Image(type="filepath", sources=["upload"], label="photo", elem_id="photo", height=300)
            crop = gr.Image(label="scored crop", elem_id="crop", interactive=False, height=300, format="png")
            with gr.Column():
                score = gr.Textbox(label="score", elem_id="score", interactive=False)
                interval = gr.Textbox(label="95% interval", elem_id="interval", interactive=False)
                rank = gr.Textbox(label="percentile among the references", elem_id="percentile", interactive=False)
        picture = gr.Image(label="the decision", elem_id="decision", interactive=False, format="png")
        # preprocess=False: the handler gets the uploaded file as sent and decodes it itself
        photo.upload(scorer, inputs=photo, outputs=[crop, score, interval, rank, picture], preprocess=False)
    return app


def launch_options(host: str, port: int, max_upload_mb: int) -> dict[str, Any]:
    """What ``launch`` is given: where to listen, and the upload size the server refuses above."""
    return {"server_name": host, "server_port": port, "show_error": True, "max_file_size": max_upload_mb * MB}


def serve(model: LoadedRun, align: str, one_face: bool, host: str, port: int,
          max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB) -> None:
    """Start the page and block until interrupted."""
    build_app(model, align, one_face, max_upload_mb=max_upload_mb).launch(**launch_options(host, port, max_upload_mb))


def main(args: "argparse.Namespace") -> int:
    """The command: check the extra is installed before the model loads, then serve until interrupted."""
    import_gradio()  # the missing extra is a one-line error before the model loads
    serve(LoadedRun.load(args.model), args.align, args.one_face, args.host, args.port, args.max_upload_mb)
    return 0
