"""``orderlearn score``: score a test split or a folder of images against a run's bank.

Loads the run's resolved config, its validation-selected checkpoint and its bank; embeds
each image once (bank embeddings are reused when saved), compares with every reference and
writes a CSV with the score, its posterior std and 95% interval, using the run's scorer settings:
both orders, the link and the interval width it calibrated on validation.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import torch

import comparators
import scorers

from scorers.intervals import widen

from .bank import ReferenceBank
from .config import load_config
from .data import load_test
from .embedding import compare_all, embed_samples
from .errors import DataError
from .training import load_weights, make_accelerator
from .types import ScoredImage

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def best_checkpoint(run: Path) -> Path:
    state_file = run / "comparator" / "trainer_state.json"
    if not state_file.is_file():
        raise DataError(f"{run} is not a finished comparator run of `orderlearn run` (no {state_file})")
    best = json.loads(state_file.read_text())["best_epoch"]
    return run / "comparator" / "checkpoints" / f"epoch_{best:03d}" / "model.safetensors"


def folder_samples(folder: Path) -> list[ScoredImage]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return [ScoredImage(path=p, score=float("nan")) for p in files]


def score_run(run: Path, images: Optional[Path] = None, out: Optional[Path] = None, scorer_name: Optional[str] = None) -> Path:
    run = Path(run)
    config = load_config(run / "config.yaml")
    accelerator = make_accelerator(config, run, log_with="none")
    model = comparators.create(config.model.name, **config.model.args)
    load_weights(model, best_checkpoint(run))
    model.to(accelerator.device).eval()
    bank = ReferenceBank.load(run / "bank.json")
    transform = model.preprocess()
    if bank.embeddings is None:
        bank.embeddings = embed_samples(model.embed, bank.samples, transform, accelerator, config.train.eval_batch_size, desc="embed bank")
    samples = folder_samples(images) if images else load_test(config.data)
    test_emb = embed_samples(model.embed, samples, transform, accelerator, config.train.eval_batch_size, desc="embed images")
    probs = compare_all(model, test_emb, bank.embeddings, accelerator)
    if config.scorer.both_orders:
        probs = scorers.combine_orders(probs, compare_all(model, bank.embeddings, test_emb, accelerator).transpose(0, 1))
    same_scorer = scorer_name in (None, config.scorer.name)
    args = dict(config.scorer.args) if same_scorer else {}
    run_results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    calibrated_link = run_results.get("link_calibration")
    if same_scorer and calibrated_link:  # the link the run fitted on its validation images
        args["link"] = {"slope": calibrated_link["slope"], "tie_width": calibrated_link["tie_width"]}
    scorer = scorers.create(scorer_name or config.scorer.name, low=config.data.score_low, high=config.data.score_high, **args)
    scores = scorer.score(probs.double(), bank.scores)
    intervals = run_results.get("interval_calibration")
    if same_scorer and intervals and scores.std is not None:  # the run's validation-calibrated interval width
        scores = widen(scores, intervals["std_scale"], config.data.score_low, config.data.score_high)
    out = out or run / "scored.csv"
    if accelerator.is_main_process:
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "true_score", "score", "std", "lower95", "upper95"])
            for i, s in enumerate(samples):
                cells = [scores.value, scores.std, scores.lower, scores.upper]
                writer.writerow([str(s.path), "" if s.score != s.score else f"{s.score:.6f}"] + ["" if c is None else f"{float(c[i]):.6f}" for c in cells])
    return out
