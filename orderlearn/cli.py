"""The ``orderlearn`` command line.

  orderlearn demo                          the main job on the embedded synthetic default
  orderlearn run --config C [-o k=v ...]   train a comparator, build the bank, score, evaluate
  orderlearn score --run DIR [--images P..] score a run's test split or image files/folders against its bank
  orderlearn evaluate --scores CSV         metrics (PC, MAE, RMSE, Spearman) of a scores CSV
  orderlearn synth --out DIR               write the synthetic SCUT-FBP5500-layout dataset
  orderlearn compare RUN_DIR ... --out D   direct vs order-learned table over runs (fold mean ± std)
  orderlearn active --run DIR [--budgets]  PC / MAE vs comparisons per image (active reference selection)
  orderlearn predict PHOTO|DIR --model M   score your own photos (M: a run folder, a bundle, a hub id)
  orderlearn export RUN --out BUNDLE       a self-contained model folder (safetensors, JSON, model card)
  orderlearn serve --model M               a web page to score a photo (needs the `serve` extra)
"""
from __future__ import annotations

import argparse
import shlex
import csv
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from orderlearn.errors import ConfigError, DataError, WeightsNotFoundError

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEMO_CONFIG = REPO_CONFIGS / "synthetic" / "demo.yaml"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, DataError, OSError, WeightsNotFoundError) as exc:  # OSError: missing files, checkpoints
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderlearn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(required=True, metavar="command")

    run = sub.add_parser("run", help="train a comparator, build the bank, score and evaluate")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="e.g. -o train.epochs=2")
    run.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint of output_dir")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="the main job on the embedded synthetic dataset")
    demo.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    demo.set_defaults(func=lambda a: cmd_run(argparse.Namespace(config=DEMO_CONFIG, override=a.override, resume=False)))

    score = sub.add_parser("score", help="score images against a run's reference bank")
    score.add_argument("--run", required=True, type=Path, help="output_dir of `orderlearn run` (any method)")
    score.add_argument("--images", type=Path, nargs="+", help="image files and/or folders (default: the run's test split)")
    score.add_argument("--out", type=Path, help="CSV to write (default RUN/scored.csv)")
    score.add_argument("--scorer", help="scorer name (default: the run's)")
    score.add_argument("--plot", type=int, default=0, metavar="N", help="pictures of the decision for the first N images")
    score.add_argument("--plot-dir", type=Path, help="folder for the pictures (default RUN/plots)")
    score.set_defaults(func=cmd_score)

    evaluate = sub.add_parser("evaluate", help="metrics of a scores CSV with true_score and score columns")
    evaluate.add_argument("--scores", required=True, type=Path)
    evaluate.add_argument("--out", type=Path, help="folder for metrics.json and metrics.md (default: beside the CSV)")
    evaluate.set_defaults(func=cmd_evaluate)

    synth = sub.add_parser("synth", help="write the synthetic dataset (SCUT-FBP5500 layout)")
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--images", type=int, default=1000)
    synth.add_argument("--size", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--ages", action="store_true", help="the age-estimation variant (manifest.csv)")
    synth.set_defaults(func=cmd_synth)

    compare = sub.add_parser("compare", help="one direct-vs-order-learned table over trained runs (fold mean ± std)")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="output_dir of `orderlearn run` (any task)")
    compare.add_argument("--out", required=True, type=Path, help="folder for compare.md/.csv/.json and the plots")
    compare.add_argument("--with-table", type=Path, metavar="CSV",
                         help="an earlier compare.csv: its rows for methods without runs here are kept (the table grows method by method)")
    compare.set_defaults(func=cmd_compare)

    active = sub.add_parser("active", help="active reference selection: PC / MAE vs comparisons per image on a trained run")
    active.add_argument("--run", required=True, type=Path, help="output_dir of `orderlearn run` (any method)")
    active.add_argument("--budgets", nargs="+", type=int, default=[4, 8, 16, 32, 64], help="comparisons per test image")
    active.add_argument("--out", type=Path, help="folder for active.md/.csv/.json/.png (default RUN/active)")
    active.add_argument("--batch", type=int, default=4, help="comparisons asked per image and round")
    active.add_argument("--scorer", help="base scorer name (default: the run's)")
    active.add_argument("--link", choices=["run", "default", "calibrated"], default="run",
                        help="base scorer's link: as the run (default), the configured default, or fitted on validation x bank")
    active.add_argument("--references", choices=["run", "known", "calibrated"], default="run",
                        help="where the references sit: as the run (default), their known scores, or positions fitted "
                             "on validation x bank")
    active.add_argument("--select", choices=["val_pc", "val_mae"], default="val_pc",
                        help="validation metric the best scoring variant is chosen on (ages: val_mae)")
    active.set_defaults(func=cmd_active)
    add_photo_commands(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from orderlearn.config import load_config
    from orderlearn.runs.recipe import run_experiment

    config = load_config(args.config, args.override)
    command = shlex.join(["orderlearn", "run", "--config", str(args.config), *(x for o in args.override for x in ("-o", o))]
                         + (["--resume"] if args.resume else []))
    run_experiment(config, resume=args.resume, command=command)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from orderlearn.commands.score import score_run

    out, failed = score_run(args.run, args.images, args.out, args.scorer, args.plot, args.plot_dir)
    print(f"wrote {out}")
    for path, why in failed:
        print(f"error: not scored: {path}: {why}", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from orderlearn.files import atomic_write_json
    from orderlearn.report.markdown import markdown_table
    from orderlearn.report.metrics import score_metrics
    from orderlearn.report.scores_csv import read_scores_csv

    table = read_scores_csv(args.scores, require_truth=True)
    truth = table.truth.tolist()
    results = {"order_learned": score_metrics(table.scores.tolist(), truth)}
    if table.direct is not None:
        results["direct"] = score_metrics(table.direct.tolist(), truth)
    out = args.out or args.scores.parent
    atomic_write_json(out / "metrics.json", results, default=float)
    markdown = markdown_table([{"route": k, **v} for k, v in results.items()], ["route", "pc", "mae", "rmse", "spearman", "n"])
    (out / "metrics.md").write_text(markdown + "\n")
    print(markdown)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from orderlearn.data import synthetic

    if args.ages:
        root = synthetic.generate_synthetic_ages(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    else:
        root = synthetic.generate_synthetic_scut(args.out, n_images=args.images, image_size=args.size, seed=args.seed)
    print(f"wrote {root}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from orderlearn.report.tables import main_compare

    return main_compare(args.runs, args.out, args.with_table)


def cmd_active(args: argparse.Namespace) -> int:
    from orderlearn.commands.active import run_active

    run_active(args.run, args.budgets, args.out, args.batch, scorer_name=args.scorer, link=args.link,
               references=args.references, select=args.select)
    return 0


# ---------------------------------------------------------------------------- photos: predict, export, serve
def add_photo_commands(sub: "argparse._SubParsersAction") -> None:
    """``predict``, ``export`` and ``serve``: scoring your own photos with a trained model."""
    predict = sub.add_parser("predict", help="score photos (files and folders) with a run or an exported bundle")
    predict.add_argument("photos", nargs="+", type=Path, metavar="PHOTO|DIR")
    predict.add_argument("--model", required=True, help="a run folder, a bundle folder, or a hub id owner/name")
    predict.add_argument("--align", choices=["mtcnn", "none"], default="mtcnn",
                         help="mtcnn: detect the face and align it like the training faces (default); none: score as is")
    predict.add_argument("--one-face", action="store_true", help="a photo with several faces is an error (default: the largest)")
    predict.add_argument("--csv", type=Path, help="also write the table as CSV")
    predict.add_argument("--json", type=Path, help="also write the predictions and failures as JSON")
    predict.add_argument("--plot", type=Path, metavar="DIR", help="pictures of each decision into DIR")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="write a self-contained bundle of a run (safetensors, JSON, model card)")
    export.add_argument("run", type=Path, metavar="RUN", help="output_dir of `orderlearn run`")
    export.add_argument("--out", required=True, type=Path, help="the bundle folder to create")
    export.add_argument("--thumbnail-size", type=int, default=64, help="reference thumbnails' side in px (0: none)")
    export.add_argument("--template-faces", type=int, default=200, help="training faces the alignment template averages")
    export.add_argument("--push-to-hub", metavar="OWNER/NAME", help="also upload the bundle as a hub model repository")
    export.set_defaults(func=cmd_export)

    serve = sub.add_parser("serve", help="a web page to score a photo (Gradio)")
    serve.add_argument("--model", required=True, help="a bundle folder, a run folder, or a hub id")
    serve.add_argument("--align", choices=["mtcnn", "none"], default="mtcnn")
    serve.add_argument("--one-face", action="store_true")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.set_defaults(func=cmd_serve)


def cmd_predict(args: argparse.Namespace) -> int:
    import tempfile

    from orderlearn.commands import predict as photos
    from orderlearn.runs.loaded import LoadedRun

    model = LoadedRun.load(args.model)
    with tempfile.TemporaryDirectory(prefix="orderlearn-crops-") as work:
        result = photos.predict(model, args.photos, Path(work), args.align, args.one_face)
        if result.items:
            print(photos.format_table(result.items))
        if args.plot and result.items:
            from orderlearn.report.decision_plots import decisions_for, plot_decisions

            decisions = decisions_for([Path(p.file).name for p in result.items], [s.path for s in result.scored],
                                      result.comparisons.for_scoring, result.scores, model.bank.scores)
            plot_decisions(args.plot, decisions, model.recipe, model.references.get)
            print(f"wrote {len(decisions)} pictures into {args.plot}")
    if args.csv:
        photos.write_csv(args.csv, result.items)
    if args.json:
        photos.write_json(args.json, result)
    for path, why in result.failed:
        print(f"error: not scored: {path}: {why}", file=sys.stderr)
    return 1 if result.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from orderlearn.runs.bundle import check_thumbnail_size, export_bundle, push_bundle

    out = export_bundle(args.run, args.out, check_thumbnail_size(args.thumbnail_size), args.template_faces)
    print(f"wrote {out}")
    if args.push_to_hub:
        print(f"pushed to {push_bundle(out, args.push_to_hub)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from orderlearn.runs.loaded import LoadedRun
    from orderlearn.commands.serve import import_gradio, serve

    import_gradio()  # the missing extra is a one-line error before the model loads
    serve(LoadedRun.load(args.model), args.align, args.one_face, args.host, args.port)
    return 0
# ---------------------------------------------------------------------------- end of photo commands


if __name__ == "__main__":
    sys.exit(main())
