"""The ``orderlearn`` command line: the argument parser and the dispatch, nothing else.

Contract: every command ``NAME`` has its module :mod:`orderlearn.commands.NAME` with
``main(args: argparse.Namespace) -> int`` (the exit status). The options of all commands are
declared here, in one parser, so ``orderlearn --help`` and ``orderlearn NAME --help`` import no
command module (none of torch, timm, numpy): the chosen command's module is imported only after
the line is parsed. A bad input is a one-line ``error: ...`` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from orderlearn.config_checks import SEED_LIMIT, SYNTHETIC_MIN_IMAGES, SYNTHETIC_MIN_SIZE
from orderlearn.errors import ConfigError, DataError, TrainingDivergedError, WeightsNotFoundError

# The description ``orderlearn --help`` shows: one line per command.
OVERVIEW = """The ``orderlearn`` command line.

  orderlearn demo                          the main job on the embedded synthetic default
  orderlearn run --config C [-o k=v ...]   train a comparator, build the bank, score, evaluate
  orderlearn score --run DIR [--images P..] score a run's test split or image files/folders against its bank
  orderlearn evaluate --scores CSV         metrics (PC, MAE, RMSE, Spearman) of a scores CSV
  orderlearn synth --out DIR               write the synthetic SCUT-FBP5500-layout dataset
  orderlearn compare RUN_DIR ... --out D   direct vs order-learned table over runs (fold mean ± std)
  orderlearn active --run DIR [--budgets]  PC / MAE vs comparisons per image (active reference selection)
  orderlearn blend RUN_A RUN_B ... --out D  runs' scores averaged, the weights chosen on validation (a table folder)
  orderlearn predict PHOTO|DIR --model M   score your own photos (M: a run folder, a bundle, a hub id)
  orderlearn export RUN --out BUNDLE       a self-contained model folder (safetensors, JSON, model card)
  orderlearn serve --model M               a web page to score a photo (needs the `serve` extra)
  orderlearn models [--json]               the registered models, scorers and backbones
"""

COMMAND_KEY = "command"  # the parsed line's attribute naming the command (its module's name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_command(args)
    except (ConfigError, DataError, OSError, TrainingDivergedError, WeightsNotFoundError) as exc:  # OSError: missing files, checkpoints
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_command(args: argparse.Namespace) -> int:
    """``orderlearn.commands.<command>.main(args)``: the module is imported here, not before."""
    module = importlib.import_module(f"orderlearn.commands.{getattr(args, COMMAND_KEY)}")
    return module.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderlearn", description=OVERVIEW, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(required=True, metavar="command")
    for add in (add_run, add_demo, add_score, add_evaluate, add_synth, add_compare, add_active, add_blend, add_predict,
                add_export, add_serve, add_models):
        add(sub)
    return parser


def integer_at_least(low: int, high: Optional[int] = None):
    """An argparse ``type``: an integer in ``[low, high]``, else a usage error (exit status 2)
    saying the range, before any command module is imported."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            upper = f" and <= {high}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}{upper}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


def _command(sub: "argparse._SubParsersAction", name: str, help: str) -> argparse.ArgumentParser:
    """The sub-parser of command ``name``, dispatched to :mod:`orderlearn.commands.<name>`."""
    parser = sub.add_parser(name, help=help)
    parser.set_defaults(**{COMMAND_KEY: name})
    return parser


def add_run(sub: "argparse._SubParsersAction") -> None:
    run = _command(sub, "run", "train a comparator, build the bank, score and evaluate")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="e.g. -o train.epochs=2")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint of output_dir")
    again.add_argument("--overwrite", action="store_true", help="empty a non-empty output_dir first (else it is refused)")


def add_demo(sub: "argparse._SubParsersAction") -> None:
    demo = _command(sub, "demo", "the main job on the embedded synthetic dataset")
    demo.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    demo.add_argument("--overwrite", action="store_true", help="empty the demo's output_dir of an earlier demo first")


def add_score(sub: "argparse._SubParsersAction") -> None:
    score = _command(sub, "score", "score images against a run's reference bank")
    score.add_argument("--run", required=True, type=Path, help="output_dir of `orderlearn run` (any method)")
    score.add_argument("--images", type=Path, nargs="+", help="image files and/or folders (default: the run's test split)")
    score.add_argument("--out", type=Path, help="CSV to write (default RUN/scored.csv)")
    score.add_argument("--scorer", help="scorer name (default: the run's)")
    score.add_argument("--plot", type=integer_at_least(0), default=0, metavar="N", help="pictures of the decision for the first N images")
    score.add_argument("--plot-dir", type=Path, help="folder for the pictures (default RUN/plots)")
    score.add_argument("--references", type=Path, metavar="REFS", help="score on the scale of your own references: a manifest (CSV/JSONL path,score[,std]) or a folder holding one")


def add_evaluate(sub: "argparse._SubParsersAction") -> None:
    evaluate = _command(sub, "evaluate", "metrics of a scores CSV with true_score and score columns")
    evaluate.add_argument("--scores", required=True, type=Path)
    evaluate.add_argument("--out", type=Path, help="folder for metrics.json and metrics.md (default: beside the CSV)")


def add_synth(sub: "argparse._SubParsersAction") -> None:
    synth = _command(sub, "synth", "write the synthetic dataset (SCUT-FBP5500 layout)")
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--images", type=integer_at_least(SYNTHETIC_MIN_IMAGES), default=1000)
    synth.add_argument("--size", type=integer_at_least(SYNTHETIC_MIN_SIZE), default=128, help="image side in px")
    synth.add_argument("--seed", type=integer_at_least(0, SEED_LIMIT - 1), default=0)
    synth.add_argument("--ages", action="store_true", help="the age-estimation variant (manifest.csv)")
    synth.add_argument("--overwrite", action="store_true", help="replace a folder that holds another synthetic dataset")


def add_compare(sub: "argparse._SubParsersAction") -> None:
    compare = _command(sub, "compare", "one direct-vs-order-learned table over trained runs (fold mean ± std)")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="output_dir of `orderlearn run` (any task)")
    compare.add_argument("--out", required=True, type=Path, help="folder for compare.md/.csv/.json and the plots")
    compare.add_argument("--with-table", type=Path, metavar="CSV",
                         help="an earlier compare.csv: its rows for methods without runs here are kept (the table grows method by method)")
    compare.add_argument("--new-scale", choices=("share", "target-groups"), metavar="PROTOCOL",
                         help="instead of the table: the comparator runs scored on a scale they never saw from N references, "
                              "both routes (share: SCUT's share of raters giving 4 or 5; target-groups: a cross-group run's "
                              "references from its test groups' training faces); writes new_scale.md/.csv/.json/.png")
    compare.add_argument("--sizes", type=integer_at_least(2), nargs="+", default=[10, 25, 50, 100, 200], metavar="N",
                         help="--new-scale: references per draw (default 10 25 50 100 200)")
    compare.add_argument("--draws", type=integer_at_least(1), default=5, help="--new-scale: seeded draws per N (default 5)")
    compare.add_argument("--seed", type=integer_at_least(0), default=0, help="--new-scale: seed of the draws (default 0)")


def add_blend(sub: "argparse._SubParsersAction") -> None:
    blend = _command(sub, "blend", "finished runs' scores averaged per route, the weights chosen on validation")
    blend.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                       help="2 to 5 `orderlearn run` folders of the same data and split")
    blend.add_argument("--out", required=True, type=Path, help="the blend's folder (config.yaml, results.json, scores.csv, report.md)")
    blend.add_argument("--select", choices=["val_pc", "val_mae"], default="val_pc",
                       help="the validation metric the weights are chosen on (default val_pc)")


def add_active(sub: "argparse._SubParsersAction") -> None:
    active = _command(sub, "active", "active reference selection: PC / MAE vs comparisons per image on a trained run")
    active.add_argument("--run", required=True, type=Path, help="output_dir of `orderlearn run` (any method)")
    active.add_argument("--budgets", nargs="+", type=integer_at_least(1), default=[4, 8, 16, 32, 64], help="comparisons per test image")
    active.add_argument("--out", type=Path, help="folder for active.md/.csv/.json/.png (default RUN/active)")
    active.add_argument("--batch", type=integer_at_least(1), default=4, help="comparisons asked per image and round")
    active.add_argument("--scorer", help="base scorer name (default: the run's)")
    active.add_argument("--link", choices=["run", "default", "calibrated"], default="run",
                        help="base scorer's link: as the run (default), the configured default, or fitted on validation x bank")
    active.add_argument("--references", choices=["run", "known", "calibrated"], default="run",
                        help="where the references sit: as the run (default), their known scores, or positions fitted "
                             "on validation x bank")
    active.add_argument("--direct-prior", action="store_true",
                        help="also the fused route: each face's direct score as its prior (needs the run's direct head)")
    active.add_argument("--select", choices=["val_pc", "val_mae"], default="val_pc",
                        help="validation metric the best scoring variant is chosen on (ages: val_mae)")


def add_predict(sub: "argparse._SubParsersAction") -> None:
    predict = _command(sub, "predict", "score photos (files and folders) with a run or an exported bundle")
    predict.add_argument("photos", nargs="+", type=Path, metavar="PHOTO|DIR")
    predict.add_argument("--model", required=True, help="a run folder, a bundle folder, or a hub id owner/name")
    predict.add_argument("--align", choices=["mtcnn", "none"], default="mtcnn",
                         help="mtcnn: detect the face and align it like the training faces (default); none: score as is")
    predict.add_argument("--one-face", action="store_true", help="a photo with several faces is an error (default: the largest)")
    predict.add_argument("--csv", type=Path, help="also write the table as CSV")
    predict.add_argument("--json", type=Path, help="also write the predictions and failures as JSON")
    predict.add_argument("--plot", type=Path, metavar="DIR", help="pictures of each decision into DIR")
    predict.add_argument("--references", type=Path, metavar="REFS", help="score on the scale of your own references: a manifest (CSV/JSONL path,score[,std]) or a folder holding one")


def add_export(sub: "argparse._SubParsersAction") -> None:
    export = _command(sub, "export", "write a self-contained bundle of a run (safetensors, JSON, model card)")
    export.add_argument("run", type=Path, metavar="RUN", help="output_dir of `orderlearn run`")
    export.add_argument("--out", required=True, type=Path, help="the bundle folder to create")
    export.add_argument("--thumbnail-size", type=integer_at_least(0), default=64, help="reference thumbnails' side in px (0: none)")
    export.add_argument("--template-faces", type=integer_at_least(1), default=200, help="training faces the alignment template averages")
    export.add_argument("--push-to-hub", metavar="OWNER/NAME", help="also upload the bundle as a hub model repository")
    export.add_argument("--references", type=Path, metavar="REFS",
                        help="the bundle's bank: your own references (a manifest path,score[,std]; files scored as they are)")


def add_serve(sub: "argparse._SubParsersAction") -> None:
    serve = _command(sub, "serve", "a web page to score a photo (Gradio)")
    serve.add_argument("--model", required=True, help="a bundle folder, a run folder, or a hub id")
    serve.add_argument("--align", choices=["mtcnn", "none"], default="mtcnn")
    serve.add_argument("--one-face", action="store_true")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=integer_at_least(0, 65535), default=7860)
    serve.add_argument("--max-upload-mb", type=integer_at_least(1), default=20, metavar="MB",
                       help="the largest photo the page accepts, in MB (default 20)")



def add_models(sub: "argparse._SubParsersAction") -> None:
    models = _command(sub, "models", "the registered models (kind, paper, backbone, options, example config), scorers, backbones")
    models.add_argument("--json", action="store_true", help="print the same entries as JSON")


if __name__ == "__main__":
    sys.exit(main())
