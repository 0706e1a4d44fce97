"""Does test-time flip averaging help? Validation PC / MAE of a finished regressor run's direct
score with and without it (validation faces only, carved from the training files; the test
files are not read).

    python -m benchmarks.flip_validation runs/scut_plain_l1_mobilenetv2_partial_cpu/fold1

The run's validation-selected checkpoint is loaded into its model; the validation faces'
features come from the feature cache (the run stored both views). Prints one line per setting.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from accelerate import Accelerator

from comparators.views import ViewAveraged
from orderlearn.bank.comparisons import view_embeddings
from orderlearn.config import load_config
from orderlearn.data.splits import load_training
from orderlearn.report.metrics import score_metrics
from orderlearn.engine.features import FeatureCache, FeatureExtractor
from orderlearn.runs.recipe import build_model
from orderlearn.engine.checkpoints import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.run / "config.yaml")
    if config.task != "regressor":
        raise SystemExit(f"{args.run}: a regressor run is needed (its direct score); this one is a {config.task}")
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, args={**config.model.args, "test_flip": False}))
    results = json.loads((args.run / "results.json").read_text())
    best = args.run / "regressor" / "checkpoints" / f"epoch_{results['train']['best_epoch']:03d}" / "model.safetensors"
    model = build_model(config)
    load_weights(model, best)
    model.eval()
    val = load_training(config.data).val
    truth = [s.score for s in val]
    accelerator = Accelerator(cpu=True)
    extractor = FeatureExtractor(accelerator, 64, cache=FeatureCache.from_setting(config.feature_cache))
    plain = model.comparator_view()
    for name, view in (("without flip averaging", plain), ("with flip averaging", ViewAveraged(plain))):
        scores = view_embeddings(view, extractor(view, val, "features validation"), accelerator, 64).reshape(-1)
        m = score_metrics(scores.double().tolist(), truth)
        print(f"{args.run} validation ({len(val)} faces), {name}: PC {m['pc']:.4f}, MAE {m['mae']:.4f}, RMSE {m['rmse']:.4f}")


if __name__ == "__main__":
    main()
