"""LMOL comparator figures on the tiny LLaVA: pairs/s of the three inference paths at the real
token layout, forwards per face with active selection, and the learnable synthetic data set.

Run from the repository root:

    python benchmarks/llava.py speed                 # table: naive / cached / cached + shared prefix
    python benchmarks/llava.py speed --device cuda --dtype bfloat16
    python benchmarks/llava.py learnable-data runs/data/lmol-brightness-faces

``speed`` builds the tiny random LLaVA (LLaVA-1.5's structure and special ids, the real
Llama-2 tokenizer, toy widths) at 336 px / patch 14, i.e. 576 image tokens per face and the
real prompt (1,180 tokens), and times the three ways of answering the same test x bank pairs:

* naive: the full ``LlavaForConditionalGeneration`` forward per pair (the CLIP tower runs on
  both faces of every pair);
* cached: every face embedded once, then ``compare`` (the language model) per pair;
* cached + shared prefix: ``compare_grid``, which also reuses the key/value cache of the prompt
  up to the end of the test face across that face's references.

Each time is the best of ``--repeats`` runs of the same work, side by side in one process, so
the ratios hold on a loaded machine even where the absolute figures do not. The widths are toy
widths: the ratios say what the layout costs, not what a 7B model runs at.

``learnable-data`` writes the project's synthetic faces with their score coded as brightness
(see :func:`write_brightness_coded_faces`), the data of ``configs/lmol/tiny_learns.yaml``.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
# `python benchmarks/x.py` puts benchmarks/ first on the path, where benchmarks/scorers.py would hide
# the scorers package: the repository takes its place
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

DEFAULT_TOKENIZER = REPO / ".." / "shared" / "models" / "llama2-tokenizer"
FULL_BANK = 350  # LMOL's reference bank: ~350 training faces
BUDGET = 32  # scorer.budget: comparisons per face with active reference selection


# ---------------------------------------------------------------------- learnable data
def brightness_factor(score: float, low: float = 1.0, high: float = 5.0) -> float:
    """Pixel gain of a face with ``score``: 0.3 at ``low`` to 1.0 at ``high`` (linear).

    The generator's own lighting varies too (a nuisance), so the comparator must compare the
    two faces' brightness rather than read a fixed threshold.
    """
    return 0.3 + 0.7 * (score - low) / (high - low)


def write_brightness_coded_faces(out: str | Path, n_images: int = 400, image_size: int = 64, seed: int = 0,
                                 split: str = "fold1") -> Path:
    """The synthetic SCUT look-alike with each face darkened by :func:`brightness_factor` of its
    score; returns the manifest (``path, score, split``) of ``split``'s train and test files.

    Why: the look-alike's score lives in small facial traits (eye size, blemishes, symmetry) that
    a tiny random CLIP tower at 32 px barely resolves, so a tiny LLaVA cannot show in minutes
    that gradients through the LMOL path learn an ordering. Brightness survives any resolution.
    Deterministic: the same arguments write the same files.
    """
    from orderlearn.data.scut import read_split
    from orderlearn.data.synthetic import generate_synthetic_scut

    out = Path(out)
    faces = generate_synthetic_scut(out / "faces", n_images=n_images, image_size=image_size, seed=seed)
    train, test = read_split(faces, split)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for part, samples in (("train", train), ("test", test)):
        for s in samples:
            pixels = np.asarray(Image.open(s.path).convert("RGB"), dtype=np.float32) * brightness_factor(s.score)
            target = images / (s.path.stem + ".png")  # lossless: the coding is not blurred by JPEG
            Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).save(target)
            rows.append({"path": f"images/{target.name}", "score": f"{s.score:.6f}", "split": part})
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "score", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


# ---------------------------------------------------------------------- speed
def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` runs (a shared machine only ever adds time)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


@torch.inference_mode()
def pairs_per_second(model: Any, n_test: int = 2, n_refs: int = 32, batch: Optional[int] = None,
                     repeats: int = 2, seed: int = 0) -> dict[str, float]:
    """Pairs/s of naive, cached and cached + shared prefix on the same ``n_test x n_refs`` grid.

    Every path answers the same (test i, reference j) pairs in chunks of ``batch`` sequences
    (default ``model.pair_batch_size``), and embedding time is included in both cached paths
    (each face embedded once per run). Ratios are naive time / path time.
    """
    if n_test < 1 or n_refs < 1:
        raise ValueError("pairs_per_second: need n_test >= 1 and n_refs >= 1")
    batch = model.pair_batch_size if batch is None else batch
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    size = model.image_size
    test = torch.randn(n_test, 3, size, size, generator=gen).to(model.device)
    refs = torch.randn(n_refs, 3, size, size, generator=gen).to(model.device)
    chunks = [slice(j, j + batch) for j in range(0, n_refs, batch)]

    def embed_all(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.embed(images[i: i + batch]) for i in range(0, len(images), batch)])

    def naive() -> None:
        for i in range(n_test):
            for c in chunks:
                model.forward_naive(test[i: i + 1].expand(refs[c].shape[0], -1, -1, -1), refs[c])

    def cached() -> None:
        emb_t, emb_r = embed_all(test), embed_all(refs)
        for i in range(n_test):
            for c in chunks:
                model.compare(emb_t[i: i + 1].expand(emb_r[c].shape[0], -1, -1), emb_r[c])

    def shared() -> None:
        model.compare_grid(embed_all(test), embed_all(refs), batch=batch)

    cached()  # warm-up (allocator, kernels)
    pairs = n_test * n_refs
    t_naive, t_cached, t_shared = (_best_time(fn, repeats) for fn in (naive, cached, shared))
    return {"naive_pairs_per_s": pairs / t_naive, "cached_pairs_per_s": pairs / t_cached,
            "shared_prefix_pairs_per_s": pairs / t_shared, "cached_vs_naive": t_naive / t_cached,
            "shared_prefix_vs_naive": t_naive / t_shared}


@torch.inference_mode()
def forwards_per_face(model: Any, bank_size: int = FULL_BANK, budget: int = BUDGET, n_test: int = 4,
                      seed: int = 0) -> dict[str, float]:
    """Language-model pair forwards per test face: the full bank vs active selection at ``budget``.

    Counted, not computed: ``scorers.ActiveScorer`` (exact BT) drives the tiny comparator's
    ``compare`` on random faces against a bank with SCUT-like scores in 1.3..4.7, and every pair
    it asks for is one forward; the full-bank route asks for all ``bank_size`` references.
    """
    import scorers

    gen = torch.Generator().manual_seed(seed)
    size = model.image_size
    batch = model.pair_batch_size
    test = torch.randn(n_test, 3, size, size, generator=gen).to(model.device)
    bank = torch.randn(bank_size, 3, size, size, generator=gen).to(model.device)
    emb_t = model.embed(test)
    emb_r = torch.cat([model.embed(bank[i: i + batch]) for i in range(0, bank_size, batch)])
    ref_scores = torch.linspace(1.3, 4.7, bank_size, dtype=torch.float64)
    asked = torch.zeros(n_test, dtype=torch.long)

    def compare_fn(test_idx: torch.Tensor, ref_idx: torch.Tensor) -> torch.Tensor:
        asked.add_(torch.bincount(test_idx, minlength=n_test))
        out = [model.compare(emb_t[test_idx[i: i + batch]], emb_r[ref_idx[i: i + batch]]).float().softmax(-1)
               for i in range(0, len(test_idx), batch)]
        return torch.cat(out).cpu()

    active = scorers.ActiveScorer(scorers.create("bt-exact", low=1.0, high=5.0), budget=budget)
    result = active.score(compare_fn, ref_scores, n_test, num_classes=model.num_classes)
    if not torch.equal(result.num_comparisons, asked):
        raise RuntimeError(f"forwards_per_face: scorer counted {result.num_comparisons.tolist()}, "
                           f"comparator answered {asked.tolist()}")
    per_face = asked.double().mean().item()
    return {"full_bank_forwards_per_face": float(bank_size), "active_forwards_per_face": per_face,
            "budget": float(budget), "forward_reduction": bank_size / per_face}


def tiny_real_layout(tokenizer: str | Path, device: str, dtype: str) -> Any:
    """The tiny LLaVA at LLaVA-1.5's token layout: 336 px, patch 14 -> 576 image tokens per face."""
    from comparators.llava import LlavaComparator, LlavaComparatorConfig

    config = LlavaComparatorConfig(checkpoint="tiny-random", torch_dtype=dtype)
    return LlavaComparator.tiny(tokenizer, image_size=336, patch_size=14, config=config).to(device).eval()


def speed_table(model: Any, n_test: int, n_refs: int, repeats: int) -> str:
    """The pairs/s and forwards-per-face figures as a printable table."""
    speed = pairs_per_second(model, n_test=n_test, n_refs=n_refs, repeats=repeats)
    forwards = forwards_per_face(model)
    device = torch.cuda.get_device_name() if model.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    lines = [f"tiny LLaVA on {device}: {model.layout.n_image_tokens} image tokens per face, prompt "
             f"{model.layout.length} tokens, {n_test} test x {n_refs} references, best of {repeats}",
             "| path | pairs/s | vs naive |", "| --- | --- | --- |",
             f"| naive (full LLaVA forward per pair) | {speed['naive_pairs_per_s']:.2f} | 1.00 |",
             f"| cached (embed once, compare) | {speed['cached_pairs_per_s']:.2f} | {speed['cached_vs_naive']:.2f} |",
             f"| cached + shared prefix (compare_grid) | {speed['shared_prefix_pairs_per_s']:.2f} | "
             f"{speed['shared_prefix_vs_naive']:.2f} |",
             "",
             "| scoring | LLaVA forwards per face |", "| --- | --- |",
             f"| full bank | {forwards['full_bank_forwards_per_face']:.0f} |",
             f"| active selection, budget {forwards['budget']:.0f} | {forwards['active_forwards_per_face']:.1f} |",
             f"forward reduction: {forwards['forward_reduction']:.1f}x (one presentation order; both orders double both)"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="pairs/s of naive / cached / cached + shared prefix, forwards per face")
    speed.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="folder with the Llama-2 tokenizer.model")
    speed.add_argument("--device", default="cpu", help="cpu | cuda")
    speed.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    speed.add_argument("--n-test", type=int, default=2)
    speed.add_argument("--n-refs", type=int, default=32)
    speed.add_argument("--repeats", type=int, default=2)
    speed.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    data = sub.add_parser("learnable-data", help="write the brightness-coded synthetic faces and their manifest")
    data.add_argument("out", type=Path)
    data.add_argument("--images", type=int, default=400)
    data.add_argument("--size", type=int, default=64)
    data.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "learnable-data":
        print(write_brightness_coded_faces(args.out, args.images, args.size, args.seed))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = tiny_real_layout(args.tokenizer, args.device, args.dtype)
    print(speed_table(model, args.n_test, args.n_refs, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
