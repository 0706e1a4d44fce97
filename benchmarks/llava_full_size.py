"""LLaVA-1.5-7B at its real size with random weights: the whole LMOL comparator path, measured.

No LLaVA weights are available here, but every shape-, dtype- and memory-dependent cost is the
same with random weights of the real configuration: ``llava_15_7b_config()`` (CLIP ViT-L/14 at
336 px, 32 Llama layers of width 4096, 2 x 576 image tokens in a ~1,180-token prompt), built on
the meta device and drawn in bf16 (``random_llava``: ~14 GB, never a float32 copy), wrapped by
``LlavaComparator.from_model`` exactly as a loaded checkpoint is, with the options of
``configs/lmol/balanced3_ce.yaml`` (LoRA r 8 on 7 projections x 32 layers, the projector trained
in float32, gradient checkpointing on) and the real tokenizer. Then, in this order:

1. one training step on a few balanced pairs (the run's objective, optimizer and schedule);
2. ``compare_grid`` of one face against a handful of references three ways — naive (the full
   LLaVA forward per pair), cached (``embed`` once, ``compare``) and cached + shared prefix
   (``compare_grid``) — agreeing to bf16 rounding;
3. epoch 1's checkpoint and resume state written and read back through the project's checkpoint
   code; the next step taken, the resume state loaded back into the model, optimizer, scheduler
   and random generators, and the same step taken again: resuming must reproduce its loss and
   the weights it leaves exactly.

Printed and written to ``--out``/llava_full_size.json: trainable parameters (exact), peak
resident memory (and peak GPU memory on cuda), seconds per step, the measured sizes on disk of
the epoch checkpoint and the resume state, and whether resuming reproduced the next step.

    python benchmarks/llava_full_size.py --device cpu --tokenizer DIR --pairs 1 [--out DIR]   # 24.8 GB peak, ~10 min on 2 cores
                                                                # (--pairs 3 needs more than 24 GB: docs/results/llava-full-size-cpu.md)
    python benchmarks/llava_full_size.py --device cpu --tiny --tokenizer DIR        # the same path in seconds (CI)
    python benchmarks/llava_full_size.py --device cuda --throughput --tokenizer DIR # rates (benchmarks/gpu_llava.sh)

``--tokenizer``: a folder holding the Llama-2 ``tokenizer.model``, a tokenizer folder, or the
hub id ``llava-hf/llava-1.5-7b-hf``. ``--throughput`` measures rates instead (see
:mod:`benchmarks.llava_throughput`).
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
# `python benchmarks/x.py` puts benchmarks/ first on the path, where benchmarks/scorers.py would hide
# the scorers package: the repository takes its place
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

RUN_CONFIG = REPO / "configs" / "lmol" / "balanced3_ce.yaml"
FIGURES = "llava_full_size.json"
BF16_ULP = 2.0 ** -8  # bf16 keeps 8 significant bits: one unit in the last place relative to 1
AGREEMENT_ULPS = 8  # three paths round differently through 32 layers; they agree within 8 ulps of the largest logit


# ---------------------------------------------------------------------- building
def run_config(tokenizer: str) -> Any:
    """The LMOL run's resolved config (configs/lmol/balanced3_ce.yaml) with ``model.tokenizer`` set."""
    from orderlearn.config import load_config

    return load_config(RUN_CONFIG, [f"model.tokenizer={tokenizer}"])


def comparator_options(config: Any, tiny: bool) -> Any:
    """The run's comparator options, naming random weights as the checkpoint (they are built, not loaded)."""
    from comparators.llava_config import LlavaComparatorConfig

    args = {k: v for k, v in config.model.args.items() if k not in ("tiny", "image_size", "patch_size")}
    arch = "tiny LLaVA" if tiny else "llava-hf/llava-1.5-7b-hf architecture"
    return LlavaComparatorConfig.from_dict({**args, "checkpoint": f"random weights ({arch})"})


def random_model(config: Any, tiny: bool, device: str, seed: int = 0) -> tuple[Any, Any, Any]:
    """(model, tokenizer, options): LLaVA-1.5-7B's architecture (or the tiny one) with random bf16
    weights, the run's tokenizer (read first: a wrong ``--tokenizer`` fails before 14 GB are drawn)
    and the run's comparator options."""
    from comparators.llava_loading import llava_15_7b_config, load_tokenizer, random_llava, tiny_llava_config, torch_dtype

    options = comparator_options(config, tiny)
    tokenizer = load_tokenizer(options.tokenizer)
    llava = random_llava(tiny_llava_config() if tiny else llava_15_7b_config(), torch_dtype(options.torch_dtype),
                         device=device, seed=seed)
    return llava, tokenizer, options


def build_comparator(config: Any, tiny: bool, device: str, seed: int = 0) -> Any:
    """The random model wrapped by ``LlavaComparator.from_model``, exactly as a loaded checkpoint is wrapped."""
    from comparators.llava import LlavaComparator

    llava, tokenizer, options = random_model(config, tiny, device, seed)
    return LlavaComparator.from_model(llava, tokenizer, options)


def balanced_pairs(model: Any, n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` pairs of random preprocessed faces, labels FIRST, SECOND, SIMILAR in turn (balanced)."""
    gen = torch.Generator().manual_seed(seed)
    size = model.image_size
    a, b = (torch.randn(n, 3, size, size, generator=gen).to(model.device) for _ in range(2))
    return {"image_a": a, "image_b": b, "label": (torch.arange(n) % 3).to(model.device)}


# ---------------------------------------------------------------------- measuring
def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: Any, objective: Any, optimizer: Any, scheduler: Any, batch: dict) -> tuple[float, float]:
    """One optimizer step of the run's objective; (loss, seconds). bf16 autocast on cuda, as
    ``train.mixed_precision: bf16`` gives there (the weights are bf16 on either device)."""
    model.train()
    synchronize(model.device)
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.device.type == "cuda"):
        loss = objective.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    synchronize(model.device)
    return float(loss.detach()), time.perf_counter() - start


@torch.no_grad()
def three_paths(model: Any, n_refs: int, seed: int) -> dict[str, Any]:
    """Logits of one face against ``n_refs`` references: naive, cached, cached + shared prefix."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    size = model.image_size
    face = torch.randn(1, 3, size, size, generator=gen).to(model.device)
    refs = torch.randn(n_refs, 3, size, size, generator=gen).to(model.device)
    timed: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        synchronize(model.device)
        start = time.perf_counter()
        out = fn()
        synchronize(model.device)
        timed[name] = time.perf_counter() - start
        return out.float().cpu()

    naive = clock("naive", lambda: model.forward_naive(face.expand(n_refs, -1, -1, -1), refs))
    cached = clock("cached", lambda: model.compare(model.embed(face).expand(n_refs, -1, -1), model.embed(refs)))
    shared = clock("shared_prefix", lambda: model.compare_grid(model.embed(face), model.embed(refs))[0])
    scale = max(float(naive.abs().max()), 1.0)
    diffs = {"cached_vs_naive": float((cached - naive).abs().max()),
             "shared_prefix_vs_naive": float((shared - naive).abs().max()),
             "shared_prefix_vs_cached": float((shared - cached).abs().max())}
    tolerance = AGREEMENT_ULPS * BF16_ULP * scale
    return {"references": n_refs, "max_abs_logit": float(naive.abs().max()), "max_abs_difference": diffs,
            "tolerance": tolerance, "agree": all(d <= tolerance for d in diffs.values()),
            "same_answers": all(torch.equal(naive.argmax(-1), other.argmax(-1)) for other in (cached, shared)),
            "seconds": timed}


def disk_size(folder: Path) -> dict[str, int]:
    """Bytes of every file under ``folder``: as written (st_size) and as allocated on disk (st_blocks)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "allocated_bytes": sum(p.stat().st_blocks * 512 for p in files)}


def trained_copy(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().clone() for k, v in model.checkpoint_state_dict().items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if set(a) != set(b):
        return math.inf
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ---------------------------------------------------------------------- the project's checkpoint code
def checkpoint_round_trip(root: Path, model: Any, optimizer: Any, scheduler: Any, config_yaml: str,
                          trainer: dict[str, Any]) -> tuple[Path, Path, Callable[[], Path]]:
    """Epoch 1's weights and resume state written through the run's
    :class:`~orderlearn.engine.checkpoints.CheckpointStore` under ``root`` (the calls the training
    loop makes, one process); returns both folders and ``restore()``, which reads the newest resume
    state back into the model, optimizer, scheduler and random generators and loads the epoch
    weights through ``load_weights`` — the only place this benchmark touches the checkpoint API."""
    from orderlearn.engine.checkpoints import CheckpointStore, load_weights

    store = CheckpointStore(root)
    store.open(fresh=True)
    tensors = model.checkpoint_state_dict()
    store.begin_epoch(1)
    store.save_rng(1, 0)
    weights = store.save_epoch(1, tensors, config_yaml, {"train_loss": trainer["history"][-1]["train_loss"]},
                               optimizer, scheduler, None, trainer)
    state_dir = store.latest_resume_state().folder

    def restore() -> Path:
        state = store.latest_resume_state()
        load_weights(model, weights)
        model.load_checkpoint_state_dict({k: v.to(model.device) for k, v in state.trained().items()})
        state.load_training_state(optimizer, scheduler, None)
        state.restore_rng(0)
        return state.folder

    return weights.parent, state_dir, restore


# ---------------------------------------------------------------------- the run
def full_size_run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, train one step, compare three ways, checkpoint, resume; every figure measured."""
    import yaml

    from orderlearn.engine.fitting import comparator_loss
    from orderlearn.engine.objectives import ComparatorObjective
    from orderlearn.engine.training import lr_lambda, make_optimizer

    device = torch.device(args.device)
    config = run_config(args.tokenizer)
    steps_per_epoch = math.ceil(config.pairs.total / (config.train.batch_size * config.train.grad_accum))
    start = time.perf_counter()
    model = build_comparator(config, args.tiny, args.device, seed=args.seed)
    build_s = time.perf_counter() - start
    counts = model.trainable_parameters()
    figures: dict[str, Any] = {
        "model": "tiny LLaVA (random)" if args.tiny else "LLaVA-1.5-7B architecture (random weights)",
        "device": device_name(device), "torch": torch.__version__, "dtype": model.config.torch_dtype,
        "gradient_checkpointing": model.config.gradient_checkpointing, "prompt_tokens": model.layout.length,
        "image_tokens_per_face": model.layout.n_image_tokens, "label_ids": list(model.label_ids),
        "parameters": counts, "build_seconds": build_s, "peak_rss_after_build_bytes": peak_rss_bytes()}
    report(f"{figures['model']} on {figures['device']}: {counts['total']:,} parameters, trainable {counts['trainable']:,} "
           f"(LoRA {counts['lora']:,}, projector {counts['projector']:,}); prompt {model.layout.length} tokens; "
           f"built in {build_s:.1f} s")

    objective = ComparatorObjective(comparator_loss(config))
    optimizer = make_optimizer(model.parameter_groups(), config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, steps_per_epoch))
    first, second = balanced_pairs(model, args.pairs, args.seed + 1), balanced_pairs(model, args.pairs, args.seed + 2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss1, step1_s = train_step(model, objective, optimizer, scheduler, first)
    report(f"step 1: loss {loss1:.6f} on {args.pairs} balanced pairs, {step1_s:.3g} s")

    grid = three_paths(model, args.refs, args.seed + 3)
    d = grid["max_abs_difference"]
    report(f"compare_grid, 1 face x {args.refs} references: max |logit| {grid['max_abs_logit']:.4f}; max difference "
           f"cached-naive {d['cached_vs_naive']:.2e}, shared prefix-naive {d['shared_prefix_vs_naive']:.2e}, "
           f"shared prefix-cached {d['shared_prefix_vs_cached']:.2e} (bf16 rounding: <= {grid['tolerance']:.2e}): "
           f"{'agree' if grid['agree'] else 'DISAGREE'}; same answers {grid['same_answers']}; seconds "
           + ", ".join(f"{k} {v:.3g}" for k, v in grid["seconds"].items()))

    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="llava-full-size-"))
    trainer = {"epoch": 1, "global_step": 1, "best_epoch": 1, "best_metric": loss1,
               "history": [{"epoch": 1, "train_loss": loss1}], "lr_trace": [scheduler.get_last_lr()]}
    config_yaml = yaml.safe_dump(config.to_dict(), sort_keys=False)
    epoch_dir, state_dir, restore = checkpoint_round_trip(folder, model, optimizer, scheduler, config_yaml, trainer)
    after1 = trained_copy(model)
    sizes = {"epoch_checkpoint": disk_size(epoch_dir), "resume_state": disk_size(state_dir)}
    report(f"on disk: epoch checkpoint {fmt_bytes(sizes['epoch_checkpoint']['bytes'])} ({epoch_dir.name}/), "
           f"resume state {fmt_bytes(sizes['resume_state']['bytes'])} ({state_dir.name}/, "
           f"{sizes['resume_state']['files']} files)")

    loss2, step2_s = train_step(model, objective, optimizer, scheduler, second)
    after2 = trained_copy(model)
    restored_from = restore()
    read_back = max_difference(trained_copy(model), after1)
    loss2_again, step3_s = train_step(model, objective, optimizer, scheduler, second)
    weights_diff = max_difference(trained_copy(model), after2)
    resumed = {"read_back_max_difference": read_back, "next_loss": loss2, "next_loss_after_resume": loss2_again,
               "next_step_weights_max_difference": weights_diff,
               "reproduces": loss2 == loss2_again and weights_diff == 0.0 and read_back == 0.0, "from": restored_from.name}
    report(f"step 2: loss {loss2:.6f}, {step2_s:.3g} s; resumed from {restored_from.name} (read back exactly: "
           f"{read_back == 0.0}); step 2 again: loss {loss2_again:.6f}, {step3_s:.3g} s, weights after it differ by "
           f"{weights_diff:.1e}: resuming {'reproduces' if resumed['reproduces'] else 'does NOT reproduce'} the next step")

    figures.update(step_seconds=[step1_s, step2_s, step3_s], seconds_per_step=min(step2_s, step3_s),
                   losses=[loss1, loss2], compare_grid=grid, disk=sizes, resume=resumed,
                   peak_rss_bytes=peak_rss_bytes())
    if device.type == "cuda":
        figures["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    report(f"peak resident memory {fmt_bytes(figures['peak_rss_bytes'])}"
           + (f", peak GPU memory {fmt_bytes(figures['peak_gpu_memory_bytes'])}" if device.type == "cuda" else "")
           + f"; seconds per step {figures['seconds_per_step']:.3g} (gradient checkpointing on)")
    return figures


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def report(line: str) -> None:
    print(line, flush=True)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny LLaVA instead of LLaVA-1.5-7B (same path, seconds)")
    parser.add_argument("--tokenizer", required=True, help="model.tokenizer: a folder with the Llama-2 tokenizer.model, "
                                                            "a tokenizer folder or a hub id")
    parser.add_argument("--out", help="folder for the JSON of figures (and the checkpoints written)")
    parser.add_argument("--pairs", type=int, default=3, help="balanced pairs per training step")
    parser.add_argument("--refs", type=int, default=4, help="references of the compare_grid check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--throughput", action="store_true", help="measure rates instead (benchmarks/llava_throughput.py)")
    parser.add_argument("--budget-s", type=float, default=0.0, help="--throughput: start no measurement after this "
                                                                    "many seconds (0 = no limit)")
    parser.add_argument("--quantisation", default="none,4bit", help="--throughput: none and/or 4bit (QLoRA; cuda only)")
    parser.add_argument("--work-dir", help="--throughput: where the random model is saved for the 4-bit reload")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.throughput:
        write_figures(args.out, FIGURES, full_size_run(args))
        return 0
    from benchmarks.llava_throughput import throughput_run

    figures: dict[str, Any] = {}
    try:
        throughput_run(args, figures)
    except KeyboardInterrupt:  # the device slot's time ran out: keep what was measured
        figures["interrupted"] = True
        report("interrupted: writing the figures measured so far")
        write_figures(args.out, "llava_throughput.json", figures)
        return 130
    write_figures(args.out, "llava_throughput.json", figures)
    return 0


def write_figures(out: Optional[str], name: str, figures: dict[str, Any]) -> None:
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / name).write_text(json.dumps(figures, indent=1, default=str))
        report(f"figures: {Path(out) / name}")


if __name__ == "__main__":
    sys.exit(main())
