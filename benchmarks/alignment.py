"""Alignment robustness on SCUT-FBP5500 test faces: ``python benchmarks/alignment.py --model RUN_OR_BUNDLE``.

For each of ``--faces`` test faces of the model's own split (the first ones of its test list),
re-framed copies are made the way a user's photo differs from a dataset crop (padded, shifted,
scaled down/up, rotated ±10°; :func:`orderlearn.data.alignment.reframe`) and every copy is scored
twice through `orderlearn predict`'s function: with MTCNN alignment onto the model's template,
and without (``--align none``, the copy as is). The baseline is the original crop's own score
without alignment: the score the run gives its test image. The table prints, per re-framing,
the mean, 95th percentile and max of |score − baseline|, and the share within ``--tolerance``;
aligned copies are also compared with the aligned original (does alignment bring a copy back to
the same crop?). "Original, MTCNN aligned" against the original crop is the price of aligning a
crop that needed none: the model was trained on the dataset's own framing, not the template's.

Prints a markdown table; needs facenet-pytorch.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path[0] = str(REPO)  # the repository's packages, not this folder's scripts

import numpy as np  # noqa: E402
import torch  # noqa: E402

from orderlearn.data.alignment import REFRAMINGS, reframe  # noqa: E402
from orderlearn.data.images import load_image  # noqa: E402
from orderlearn.runs.loaded import LoadedRun  # noqa: E402
from orderlearn.data.splits import load_test  # noqa: E402
from orderlearn.runs.predictions import Predictions, predict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a run folder or bundle trained on SCUT-FBP5500")
    parser.add_argument("--faces", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = LoadedRun.load(args.model)
    faces = [s.path for s in load_test(model.config.data)[: args.faces]]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copies = {"original": faces}
        for how in REFRAMINGS:
            folder = work / how
            folder.mkdir()
            copies[how] = []
            for path in faces:
                out = folder / f"{path.stem}.png"
                reframe(load_image(path), how).save(out)
                copies[how].append(out)
        every = [p for group in copies.values() for p in group]
        aligned = scores_by_file(predict(model, every, work / "crops", align="mtcnn"))
        raw = scores_by_file(predict(model, every, work / "raw", align="none"))
    baseline = np.array([raw[str(p)] for p in faces])
    aligned_original = np.array([aligned.get(str(p), np.nan) for p in faces])
    rows = []
    for how, group in copies.items():
        got_aligned = np.array([aligned.get(str(p), np.nan) for p in group])
        rows.append(row(f"{how}, MTCNN aligned", "original crop", got_aligned, baseline, args.tolerance))
        if how != "original":
            rows.append(row(f"{how}, MTCNN aligned", "original crop, aligned", got_aligned, aligned_original, args.tolerance))
            rows.append(row(f"{how}, not aligned", "original crop", np.array([raw[str(p)] for p in group]), baseline,
                            args.tolerance))
    print(f"model {args.model} ({model.config.model.name}, scorer {model.recipe.scorer}); {len(faces)} "
          f"SCUT-FBP5500 test faces; {time.time() - started:.0f} s\n")
    print(f"| copy | compared with | scored | mean abs diff | p95 abs diff | max abs diff | within {args.tolerance:g} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def scores_by_file(result: Predictions) -> dict[str, float]:
    for path, why in result.failed:
        print(f"not scored: {path}: {why}", file=sys.stderr)
    return {p.file: p.score for p in result.items}


def row(name: str, against: str, got: np.ndarray, baseline: np.ndarray, tolerance: float) -> list[str]:
    ok = ~np.isnan(got) & ~np.isnan(baseline)
    diff = np.abs(got[ok] - baseline[ok])
    return [name, against, f"{ok.sum()}/{len(got)}", f"{diff.mean():.3f}", f"{np.percentile(diff, 95):.3f}", f"{diff.max():.3f}",
            f"{(diff <= tolerance).mean():.0%}"]


if __name__ == "__main__":
    main()
