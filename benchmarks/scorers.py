"""Benchmark of the BT scorers on simulated comparisons: ``python benchmarks/scorers.py`` (repo root).

1. Grid (the published protocol, eq. 13) vs exact Newton on N = 1100 test × R = 350 references
   (SCUT-like scores, LMOL bank rule, a mis-calibrated noisy simulated comparator), hard and soft
   labels: time of each side by side in one run, their ratios (grid argmin alone / exact, grid
   with its posterior / exact), and the largest |difference| of the scores.
2. The default link vs one fitted (Link.fit) on validation pairs of the same comparator.
3. Active reference selection: the scorer time of one row (every test image, ``--row-budget``
   comparisons, batches of 4) with the exact and the grid base scorer, comparator calls excluded.
4. Active selection quality: PC / MAE against the true scores vs comparisons per image
   (4, 8, 16, 32, 64, all), next to choosing the same number of references at random.

Prints markdown tables. Options: ``--device cuda``, ``--tests``, ``--refs``, ``--seed``, ``--threads``.
Times are wall-clock (best of ``--repeats``); the header prints the machine's load average, since
on a shared machine other jobs slow every column alike and only the ratios compare.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    # run as a script, this file's folder comes first on sys.path, and its name would shadow the
    # `scorers` package: import from the repository root instead
    sys.path[0] = str(REPO)

import torch  # noqa: E402

from benchmarks.simulate import SCUT_STD, binned_reference_indices, scut_like_scores, simulated_probs  # noqa: E402
from scorers.active import ActiveScorer, compare_from_probs  # noqa: E402
from scorers.base import Scores  # noqa: E402
from scorers.exact import ExactBTScorer  # noqa: E402
from scorers.grid import GridBTScorer  # noqa: E402
from scorers.link import Link  # noqa: E402
from orderlearn.types import labels_from_delta  # noqa: E402


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def timed(fn: Callable[[], Scores], device: torch.device, repeats: int) -> tuple[Scores, float]:
    """Result and best-of-``repeats`` wall time in seconds (after one warm-up call)."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return out, best


def random_subset_mask(n: int, r: int, m: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """[n, r] bool with m random True per row (seeded)."""
    keys = torch.rand(n, r, generator=generator)
    idx = keys.topk(m, dim=1).indices
    mask = torch.zeros(n, r, dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask.to(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tests", type=int, default=1100)
    parser.add_argument("--refs", type=int, default=350)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budgets", default="4,8,16,32,64,all")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--row-budget", type=int, default=64, help="comparisons per image of the timed active row")
    parser.add_argument("--skip-quality", action="store_true", help="omit the (slow) active-selection quality table")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    gen = torch.Generator().manual_seed(args.seed)
    train = scut_like_scores(4 * args.tests, gen)
    test = scut_like_scores(args.tests, gen)
    refs = train[binned_reference_indices(train, args.seed, total=args.refs)]
    probs = simulated_probs(test, refs, gen)
    test, refs, probs = test.to(device), refs.to(device), probs.to(device)
    n, r = probs.shape[:2]
    acc = float((probs.argmax(-1) == _true_labels(test, refs)).double().mean())
    print(f"# BT scorer benchmark — N = {n} test × R = {r} references, device {device}, "
          f"{torch.get_num_threads()} CPU threads, seed {args.seed}, simulated comparator 3-class accuracy "
          f"{acc:.3f}\n")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"Times are the best of {args.repeats} wall-clock runs after a warm-up; {os.cpu_count()} CPUs, load "
          f"average {load} (1 / 5 / 15 min) at the start.\n")

    print("## Grid (eq. 13, step 1e-3) vs exact Newton\n")
    print("| labels | grid argmin only (s) | grid + posterior (s) | exact Newton + Laplace (s) | "
          "grid argmin / exact | grid + posterior / exact | max abs(grid − exact) | Newton iterations | "
          "PC grid | PC exact | MAE exact |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for soft in (False, True):
        grid, exact = GridBTScorer(soft=soft), ExactBTScorer(soft=soft)
        values = grid.grid(device)
        _, t_argmin = timed(lambda: Scores(values[grid.nll(probs, refs).argmin(1)]), device, args.repeats)
        g_out, t_grid = timed(lambda: grid.score(probs, refs), device, args.repeats)
        e_out, t_exact = timed(lambda: exact.score(probs, refs), device, args.repeats)
        diff = float((g_out.value - e_out.value).abs().max())
        print(f"| {'soft' if soft else 'hard'} | {t_argmin:.3f} | {t_grid:.3f} | {t_exact:.4f} | "
              f"{t_argmin / t_exact:.1f}× | {t_grid / t_exact:.1f}× | {diff:.2e} | {exact.last_iterations} | "
              f"{pearson(g_out.value, test):.4f} | {pearson(e_out.value, test):.4f} | {mae(e_out.value, test):.4f} |")

    print("\n## Link: default vs fitted on validation pairs (exact BT, hard labels)\n")
    val = scut_like_scores(200, gen).to(device)  # validation images: true δ against the bank known
    val_probs = simulated_probs(val.cpu(), refs.cpu(), gen).to(device)
    val_delta = (val[:, None] - refs[None, :]).reshape(-1)
    fitted = Link().fit(val_delta, val_probs.argmax(-1).reshape(-1), num_classes=3)
    print("| link | slope k | tie width τ | PC | MAE | mean std | 95% coverage |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, link in (("default", Link()), (f"fitted on {val_delta.numel()} validation pairs", fitted)):
        out = ExactBTScorer(link=link).score(probs, refs)
        cover = float(((out.lower <= test) & (test <= out.upper)).double().mean())
        print(f"| {name} | {link.slope:.3f} | {link.tie_width:.3f} | {pearson(out.value, test):.4f} | "
              f"{mae(out.value, test):.4f} | {float(out.std.mean()):.4f} | {cover:.3f} |")

    budget = min(args.row_budget, r)
    print(f"\n## Active selection: scorer time of one row ({n} images × {budget} comparisons, batches of 4)\n")
    print("Comparator answers are read from the precomputed probabilities (no comparator cost); the time is "
          "the selection plus the base scorer.\n")
    print("| base scorer | rounds | time (s) |")
    print("| --- | --- | --- |")
    for name, base in (("bt-exact (hard)", ExactBTScorer()), ("bt-grid (hard, step 1e-3)", GridBTScorer())):
        active = ActiveScorer(base, budget=budget, batch=4)
        _, t_row = timed(lambda: active.score(compare_from_probs(probs), refs, n).scores, device, 1)
        print(f"| {name} | {-(-budget // 4)} | {t_row:.2f} |")
    if args.skip_quality:
        return

    print("\n## Active reference selection (exact BT, batches of 4) vs random references\n")
    print("PC / MAE against the true scores; 'all' = every reference (the full-bank score). "
          "'95% coverage': share of true scores inside the hard, init=median 95% interval.\n")
    print("| comparisons / image | hard, init=median | hard, init=spread | hard, random refs | "
          f"hard, median, MAP prior σ={SCUT_STD} | soft, init=median | soft, init=spread | soft, random refs | "
          "max used | 95% coverage | time, whole row (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    budgets = [r if b == "all" else int(b) for b in args.budgets.split(",")]
    for budget in budgets:
        cells, used_max, cover, t0 = [], 0, float("nan"), time.perf_counter()
        for soft in (False, True):
            scorer = ExactBTScorer(soft=soft)
            for init in ("median", "spread"):
                if budget >= r:  # every reference: nothing to select
                    out, used = scorer.score(probs, refs), torch.full((n,), r)
                else:
                    res = ActiveScorer(scorer, budget=budget, batch=4, init=init).score(
                        compare_from_probs(probs), refs, n)
                    out, used = res.scores, res.num_comparisons
                used_max = max(used_max, int(used.max()))
                if not soft and init == "median":
                    cover = float(((out.lower <= test) & (test <= out.upper)).double().mean())
                cells.append(f"{pearson(out.value, test):.4f} / {mae(out.value, test):.4f}")
            rand = scorer.score(probs, refs, random_subset_mask(n, r, min(budget, r), gen, device))
            cells.append(f"{pearson(rand.value, test):.4f} / {mae(rand.value, test):.4f}")
            if not soft:  # the same with a Gaussian prior (MAP) around the bank's mean
                prior = ExactBTScorer(prior_std=SCUT_STD)
                out = (prior.score(probs, refs) if budget >= r else
                       ActiveScorer(prior, budget=budget, batch=4).score(compare_from_probs(probs), refs, n).scores)
                cells.append(f"{pearson(out.value, test):.4f} / {mae(out.value, test):.4f}")
        label = "all" if budget >= r else str(budget)
        print(f"| {label} | " + " | ".join(cells) + f" | {used_max} | {cover:.3f} | {time.perf_counter() - t0:.2f} |")


def _true_labels(test: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """PairLabel of every (test, reference) pair from the true scores, by the project's one rule."""
    return torch.from_numpy(labels_from_delta((test[:, None] - refs[None, :]).numpy()))


if __name__ == "__main__":
    main()
