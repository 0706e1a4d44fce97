"""``orderlearn serve --model BUNDLE``: a web page to score a photo (Gradio, the optional extra ``serve``).

Upload or drop a photo; the page shows the aligned crop, the score with its 95% interval and
its percentile among the bank's references, and the picture of the decision (NLL curve,
comparisons with the bank, nearest references). Every number comes from
:func:`orderlearn.runs.predictions.predict`, the function behind ``orderlearn predict``, on the uploaded
file: the page and the command give the same score for the same photo. The upload is kept
lossless (PNG of the decoded pixels), so nothing is re-compressed on the way.
"""
from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from orderlearn.runs.loaded import LoadedRun
from orderlearn.report.decision_plots import decisions_for, plot_decision
from orderlearn.errors import ConfigError
from orderlearn.runs.predictions import predict

if TYPE_CHECKING:  # pragma: no cover
    import argparse

SERVE_HINT = "the web page needs gradio: `pip install orderlearn[serve]`"


def import_gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise ConfigError(f"{SERVE_HINT} ({exc})") from None
    return gradio


class PhotoScorer:
    """What the page calls for one uploaded photo: predict, then draw the decision."""

    def __init__(self, model: LoadedRun, align: str, one_face: bool, work_dir: Path) -> None:
        self.model, self.align, self.one_face, self.work_dir = model, align, one_face, Path(work_dir)

    def __call__(self, photo: Optional[str]) -> tuple[str, str, str, str, str]:
        """(crop file, score, interval, percentile, decision picture file); a one-line page error
        when the photo cannot be scored."""
        gr = import_gradio()
        if not photo:
            raise gr.Error("upload a photo first")
        call_dir = self.work_dir / uuid.uuid4().hex[:12]
        result = predict(self.model, [Path(photo)], call_dir, self.align, self.one_face)
        if result.failed:
            raise gr.Error(f"not scored: {result.failed[0][1]}")
        item = result.items[0]
        (stem, decision), = decisions_for(["your photo"], [result.scored[0].path], result.comparisons.for_scoring,
                                          result.scores, self.model.bank.scores)
        picture = plot_decision(call_dir / f"{stem}.png", decision, self.model.recipe, self.model.references.get)
        interval = "" if item.lower95 is None else f"{item.lower95:.3f} – {item.upper95:.3f}"
        return str(result.scored[0].path), f"{item.score:.6f}", interval, f"{item.percentile:.1f}", str(picture)


def build_app(model: LoadedRun, align: str = "mtcnn", one_face: bool = False, work_dir: Optional[Path] = None) -> Any:
    """The Gradio Blocks page of ``model``."""
    gr = import_gradio()
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="orderlearn-serve-"))
    scorer = PhotoScorer(model, align, one_face, work)
    low, high = model.recipe.low, model.recipe.high
    with gr.Blocks(title=f"orderlearn: {model.config.name}") as app:
        gr.Markdown(f"## {model.config.name}\nA score from {low:g} to {high:g} by comparison with "
                    f"{len(model.bank)} scored reference faces ({model.config.model.name}, "
                    f"{'aligned with MTCNN' if align == 'mtcnn' else 'no alignment'}). Upload a photo of one face.")
        with gr.Row():
            photo = gr.Image(type="filepath", format="png", image_mode="RGB", sources=["upload"], label="photo",
                             elem_id="photo", height=300)
            crop = gr.Image(label="scored crop", elem_id="crop", interactive=False, height=300, format="png")
            with gr.Column():
                score = gr.Textbox(label="score", elem_id="score", interactive=False)
                interval = gr.Textbox(label="95% interval", elem_id="interval", interactive=False)
                rank = gr.Textbox(label="percentile among the references", elem_id="percentile", interactive=False)
        picture = gr.Image(label="the decision", elem_id="decision", interactive=False, format="png")
        photo.upload(scorer, inputs=photo, outputs=[crop, score, interval, rank, picture])
    return app


def serve(model: LoadedRun, align: str, one_face: bool, host: str, port: int) -> None:
    """Start the page and block until interrupted."""
    build_app(model, align, one_face).launch(server_name=host, server_port=port, show_error=True)


def main(args: "argparse.Namespace") -> int:
    """The command: check the extra is installed before the model loads, then serve until interrupted."""
    from orderlearn.runs.loaded import LoadedRun

    import_gradio()  # the missing extra is a one-line error before the model loads
    serve(LoadedRun.load(args.model), args.align, args.one_face, args.host, args.port)
    return 0
