"""In-batch pairs vs a fixed pair list, same trainable part, same wall time: pairs/s and accuracy.

Both paths train the same siamese comparator (ImageNet MobileNetV2, offline weights) with the
same trainable part (``trainable_from``, default blocks 4-6 + conv head + the comparator head)
on the same cached trunk maps of a seeded subset of one SCUT-FBP5500 fold's training faces,
from the same initial weights, with the same optimiser, for the same number of seconds:

* fixed: batches of ``--batch-pairs`` pairs from the balanced-3 recipe (the trainable top runs
  twice per pair), the project's ``HeadOnly`` + ``ComparatorObjective``;
* in-batch: batches of ``--batch-images`` faces, the balanced-3 mix of their ordered pairs (the
  top runs once per face), the project's ``InBatchComparator`` + ``InBatchObjective``.

Then both are measured on the same fixed validation pairs (balanced-3, drawn from validation
faces carved from the training files; each validation face embedded once). Printed: labelled
pairs per second, top passes per second, their ratios, the wall time one epoch would take at
full scale (90k pairs; or every training face once), validation loss and accuracy.

    python -m benchmarks.in_batch_pairs --train 600 --val 200 --seconds 150
"""
from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

import comparators
from comparators.losses import ComparatorLoss
from orderlearn.config import DataConfig
from orderlearn.data.splits import load_training
from orderlearn.engine.features import FeatureCache, FeatureExtractor
from orderlearn.engine.datasets import EmbeddingPairDataset, FeatureImageDataset
from orderlearn.engine.heads import HeadOnly, InBatchComparator
from orderlearn.engine.objectives import ComparatorObjective, InBatchObjective
from orderlearn.data.pairs import sample_pairs


def train_for(seconds: float, module: torch.nn.Module, loader: DataLoader, loss: Callable, lr: float) -> dict[str, float]:
    """AdamW steps over ``loader`` (cycled) until ``seconds`` of wall time have passed."""
    if len(loader) == 0:
        raise SystemExit(f"no full batch of {loader.batch_size} in {len(loader.dataset)} items: lower the batch size")
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    module.train()
    steps, started = 0, time.perf_counter()
    while True:
        for batch in loader:
            value = loss(module, batch)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - started >= seconds:
                return {"steps": steps, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/scut-fbp5500")
    parser.add_argument("--split", default="fold1")
    parser.add_argument("--train", type=int, default=600, help="training faces (seeded subset)")
    parser.add_argument("--val", type=int, default=200, help="validation faces (seeded subset)")
    parser.add_argument("--val-pairs", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=150.0, help="training wall time of each path")
    parser.add_argument("--batch-pairs", type=int, default=64)
    parser.add_argument("--batch-images", type=int, default=64)
    parser.add_argument("--trainable-from", default="blocks.4")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_training(DataConfig(kind="scut", root=args.root, split=args.split, val_fraction=0.1))
    rng = np.random.default_rng(0)
    train = [splits.train[i] for i in sorted(rng.choice(len(splits.train), args.train, replace=False))]
    val = [splits.val[i] for i in sorted(rng.choice(len(splits.val), min(args.val, len(splits.val)), replace=False))]
    torch.manual_seed(0)
    model = comparators.create("siamese", backbone="mobilenetv2_100", weights="imagenet", projection=128, hidden=128,
                               dropout=0.3, trainable_from=args.trainable_from)
    extractor = FeatureExtractor(Accelerator(cpu=True), 64, cache=FeatureCache.from_setting("auto"))
    t = time.perf_counter()
    train_x, val_x = extractor(model, train, "trunk train"), extractor(model, val, "trunk validation")
    print(f"trunk maps {tuple(train_x.shape[1:])} of {len(train)} + {len(val)} faces: {time.perf_counter() - t:.0f} s (cache: ~/.cache or $ORDERLEARN_CACHE_DIR)")
    val_pairs = sample_pairs([s.score for s in val], "balanced-3", args.val_pairs, 0.2, 1)
    initial = copy.deepcopy(model.state_dict())
    g = torch.Generator().manual_seed(0)

    def evaluate(trained: comparators.base.Comparator) -> dict[str, float]:
        objective = InBatchObjective(ComparatorLoss("ce"), 0.2, "balanced-3", val_pairs)
        loader = DataLoader(FeatureImageDataset(val_x, val), batch_size=64)
        return objective.evaluate(InBatchComparator(trained, from_features=True).eval(), loader, Accelerator(cpu=True))

    results = {}
    # fixed recipe: the published balanced-3 list, scaled to this subset (≈ 20 pairs per face)
    model.load_state_dict(initial)
    fixed_pairs = sample_pairs([s.score for s in train], "balanced-3", 20 * len(train), 0.2, 0)
    fixed = ComparatorObjective(ComparatorLoss("ce"))
    loader = DataLoader(EmbeddingPairDataset(train_x, fixed_pairs), batch_size=args.batch_pairs, shuffle=True, generator=g, drop_last=True)
    run = train_for(args.seconds, HeadOnly(model), loader, fixed.loss, args.lr)
    pairs = run["steps"] * args.batch_pairs
    results["fixed"] = {**run, "pairs": pairs, "top_passes": 2 * pairs, **evaluate(model)}
    # in-batch
    model.load_state_dict(initial)
    in_batch = InBatchObjective(ComparatorLoss("ce"), 0.2, "balanced-3", val_pairs, seed=0)
    loader = DataLoader(FeatureImageDataset(train_x, train), batch_size=args.batch_images, shuffle=True, generator=g, drop_last=True)
    run = train_for(args.seconds, InBatchComparator(model, from_features=True), loader, in_batch.loss, args.lr)
    results["in-batch"] = {**run, "pairs": in_batch.pairs_seen, "top_passes": run["steps"] * args.batch_images, **evaluate(model)}

    print(f"\nSCUT-FBP5500 {args.split}: {len(train)} training faces, {len(val)} validation faces "
          f"({len(val_pairs)} balanced-3 validation pairs), trainable from {args.trainable_from}, {args.seconds:.0f} s each, "
          f"{torch.get_num_threads()} threads")
    print("| path | steps | labelled pairs | pairs/s | top passes/s | epoch at full scale | val loss | val accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        pairs_s, passes_s = r["pairs"] / r["seconds"], r["top_passes"] / r["seconds"]
        epoch = 90_000 / pairs_s if name == "fixed" else 3960 / passes_s  # 90k pairs; or 3960 faces once
        print(f"| {name} | {r['steps']} | {r['pairs']} | {pairs_s:.0f} | {passes_s:.1f} | {epoch / 60:.1f} min | "
              f"{r['val_loss']:.4f} | {r['val_accuracy']:.4f} |")
    f, b = results["fixed"], results["in-batch"]
    ratio = (b["pairs"] / b["seconds"]) / (f["pairs"] / f["seconds"])
    print(f"\nlabelled pairs per second, in-batch / fixed: {ratio:.1f}x (target >= 10x); "
          f"validation accuracy in-batch {b['val_accuracy']:.4f} vs fixed {f['val_accuracy']:.4f} at equal wall time")


if __name__ == "__main__":
    main()
