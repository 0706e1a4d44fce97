"""Rates of the LMOL comparator at LLaVA-1.5-7B's real size (random weights), and what they cost a run.

``python benchmarks/llava_full_size.py --throughput --device cuda --tokenizer DIR`` (what
benchmarks/gpu_llava.sh runs on the GPU; ``--tiny --device cpu`` runs the same code in seconds):

* training pairs/s and peak GPU memory at per-device batch 8 / 16 / 32, gradient checkpointing
  on and off (a batch that does not fit is recorded as out of memory, not a failure);
* inference pairs/s of one face against a bank of 350 references and against 32 active
  references: naive (the full LLaVA forward per pair), cached (``embed`` once, ``compare``) and
  cached + shared prefix (``compare_grid``);
* from those rates, the wall time of the seed report's protocol (90k pairs x 5 epochs, then
  1,100 test faces x ~350 references, naive) and of ours (the same training, then 32 active
  comparisons per face with the shared prefix) on this device;
* all of it in bf16 and, on cuda, again in 4-bit (QLoRA): the random model is saved and loaded
  back through ``LlavaComparator.from_config`` with ``load_in_4bit`` — the real loading path.

Every figure is printed with the device's name (``torch.cuda.get_device_name``). ``--budget-s``
stops starting new measurements when the time is spent, so a fixed device slot is never overrun;
what was skipped is printed and recorded.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from benchmarks.llava import BUDGET, FULL_BANK
from benchmarks.llava_full_size import (balanced_pairs, device_name, fmt_bytes, random_model, report, run_config,
                                        synchronize, train_step)

TRAIN_BATCHES = (8, 16, 32)
SEED_PROTOCOL = {"train_pairs": 90_000, "epochs": 5, "test_faces": 1_100, "references": FULL_BANK}


class Budget:
    """Seconds left of ``--budget-s``; ``spent()`` is True once no new measurement may start."""

    def __init__(self, seconds: float) -> None:
        self.start, self.seconds = time.perf_counter(), seconds

    def spent(self) -> bool:
        return self.seconds > 0 and time.perf_counter() - self.start > self.seconds


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def training_rates(model: Any, config: Any, budget: Budget, rows: list[dict[str, Any]],
                   steps: int = 1) -> list[dict[str, Any]]:
    """Pairs/s of full training steps (forward, backward, AdamW) per batch size and checkpointing,
    appended to ``rows`` as they are measured (an interrupted run keeps what it has).

    One warm-up step (each shape compiles its own kernels), then ``steps`` timed ones; peak GPU
    memory over them. Out of memory is
    an answer (``"oom": true``) and the next configuration still runs.
    """
    from orderlearn.engine.fitting import comparator_loss
    from orderlearn.engine.objectives import ComparatorObjective
    from orderlearn.engine.training import make_optimizer

    objective = ComparatorObjective(comparator_loss(config))
    optimizer = make_optimizer(model.parameter_groups(), config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    device = model.device
    for checkpointing in (True, False):
        model.set_gradient_checkpointing(checkpointing)
        for batch_size in TRAIN_BATCHES:
            row: dict[str, Any] = {"batch": batch_size, "gradient_checkpointing": checkpointing}
            rows.append(row)
            if budget.spent():
                row["skipped"] = "time budget spent"
                continue
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                batch = balanced_pairs(model, batch_size, seed=batch_size)
                train_step(model, objective, optimizer, scheduler, batch)  # warm-up: kernels, AdamW state
                seconds = sum(train_step(model, objective, optimizer, scheduler, batch)[1] for _ in range(steps))
                row.update(pairs_per_s=batch_size * steps / seconds, seconds_per_step=seconds / steps)
            except torch.OutOfMemoryError:
                row["oom"] = True
            finally:
                optimizer.zero_grad(set_to_none=True)
                batch = None
                if device.type == "cuda":
                    row["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(device)
                free_memory(device)
            report(f"[{device_name(device)}] train batch {batch_size}, checkpointing {'on' if checkpointing else 'off'}: "
                   + ("out of memory" if row.get("oom") else f"{row['pairs_per_s']:.2f} pairs/s "
                      f"({row['seconds_per_step']:.2f} s/step)")
                   + (f", peak GPU memory {fmt_bytes(row['peak_gpu_memory_bytes'])}"
                      if "peak_gpu_memory_bytes" in row else ""))
    model.set_gradient_checkpointing(True)
    return rows


NAIVE_PAIRS = 64  # the naive path costs the same per pair at any bank size: 64 pairs time it well


def seconds_of(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def path_rates(model: Any, n_refs: int, seed: int = 0) -> dict[str, float]:
    """Pairs/s of one face against ``n_refs`` references: naive, cached, cached + shared prefix.

    Chunks of ``model.pair_batch_size`` sequences as the scorer runs them; embedding time is
    included in both cached paths (each face embedded once). The naive path is timed on at most
    :data:`NAIVE_PAIRS` of the pairs (its cost per pair does not depend on the bank); the shared
    prefix is timed on the whole bank, since sharing pays more the more references share it.
    """
    model.eval()
    device, batch = model.device, model.pair_batch_size
    gen = torch.Generator().manual_seed(seed)
    face = torch.randn(1, 3, model.image_size, model.image_size, generator=gen).to(device)
    refs = torch.randn(n_refs, 3, model.image_size, model.image_size, generator=gen).to(device)
    chunks = [slice(j, j + batch) for j in range(0, n_refs, batch)]

    def embed_all() -> torch.Tensor:
        return torch.cat([model.embed(refs[c]) for c in chunks])

    def naive(k: int) -> None:
        for j in range(0, k, batch):
            part = refs[j: min(j + batch, k)]
            model.forward_naive(face.expand(len(part), -1, -1, -1), part)

    def cached() -> None:
        emb_face, emb_refs = model.embed(face), embed_all()
        for c in chunks:
            part = emb_refs[c]
            model.compare(emb_face.expand(len(part), -1, -1), part)

    def shared() -> None:
        model.compare_grid(model.embed(face), embed_all())

    naive(2)  # warm-up of every path on two pairs (kernels, allocator)
    model.compare_grid(model.embed(face), model.embed(refs[:2]))
    k = min(n_refs, NAIVE_PAIRS)
    return {"naive_pairs_per_s": k / seconds_of(lambda: naive(k), device), "naive_pairs_timed": k,
            "cached_pairs_per_s": n_refs / seconds_of(cached, device),
            "shared_prefix_pairs_per_s": n_refs / seconds_of(shared, device)}


def inference_rates(model: Any, budget: Budget, out: dict[str, Any]) -> dict[str, Any]:
    """Pairs/s of the three paths for one face against the full bank and against the active budget (into ``out``)."""
    for name, refs in (("bank", FULL_BANK), ("active", BUDGET)):
        if budget.spent():
            out[name] = {"references": refs, "skipped": "time budget spent"}
            continue
        try:
            rates = path_rates(model, refs)
        except torch.OutOfMemoryError:
            rates = {"oom": True}
        free_memory(model.device)
        out[name] = {"references": refs, **rates}
        if "naive_pairs_per_s" in rates:
            report(f"[{device_name(model.device)}] inference, 1 face x {refs} references: naive "
                   f"{rates['naive_pairs_per_s']:.2f}, cached {rates['cached_pairs_per_s']:.2f}, cached + shared prefix "
                   f"{rates['shared_prefix_pairs_per_s']:.2f} pairs/s")
    return out


def protocol_hours(train: list[dict[str, Any]], infer: dict[str, Any], config: Any) -> dict[str, Any]:
    """Wall time of the seed report's protocol and of ours on this device, from the measured rates.

    Training: 90k pairs x 5 epochs at the run's per-device batch (``train.batch_size``, with
    gradient checkpointing as configured), and at the fastest batch that fit. Testing: the seed
    report's 1,100 faces x 350 references on the naive path (the public re-implementation runs the
    full LLaVA forward per pair); ours 1,100 x 32 active comparisons with the shared prefix (the
    active scorer asks in rounds, so the prefix is shared over fewer references per call: a lower
    bound on its time).
    """
    p = SEED_PROTOCOL
    pairs_trained = p["train_pairs"] * p["epochs"]
    fitted = [r for r in train if "pairs_per_s" in r]
    configured = next((r for r in fitted if r["batch"] == config.train.batch_size
                       and r["gradient_checkpointing"] == bool(config.model.args.get("gradient_checkpointing"))), None)
    fastest = max(fitted, key=lambda r: r["pairs_per_s"], default=None)
    bank, active = infer.get("bank", {}), infer.get("active", {})
    hours: dict[str, Any] = {"protocol": p}
    if configured:
        hours["train_hours_configured_batch"] = pairs_trained / configured["pairs_per_s"] / 3600
    if fastest:
        hours["train_hours_fastest"] = pairs_trained / fastest["pairs_per_s"] / 3600
        hours["fastest"] = {k: fastest[k] for k in ("batch", "gradient_checkpointing")}
    if "naive_pairs_per_s" in bank:
        hours["test_hours_seed_naive"] = p["test_faces"] * p["references"] / bank["naive_pairs_per_s"] / 3600
        hours["test_hours_full_bank_shared_prefix"] = (p["test_faces"] * p["references"]
                                                       / bank["shared_prefix_pairs_per_s"] / 3600)
    if "shared_prefix_pairs_per_s" in active:
        hours["test_hours_ours_active"] = p["test_faces"] * BUDGET / active["shared_prefix_pairs_per_s"] / 3600
    train_h = hours.get("train_hours_configured_batch", hours.get("train_hours_fastest"))
    if train_h is not None and "test_hours_seed_naive" in hours:
        hours["seed_protocol_hours"] = train_h + hours["test_hours_seed_naive"]
    if train_h is not None and "test_hours_ours_active" in hours:
        hours["ours_hours"] = train_h + hours["test_hours_ours_active"]
    return hours


def measure(model: Any, config: Any, budget: Budget, label: str, runs: list[dict[str, Any]]) -> None:
    """Training and inference rates of one built model and the protocol hours they imply, recorded in
    ``runs`` as they come."""
    name = device_name(model.device)
    run: dict[str, Any] = {"precision": label, "device": name, "training": [], "inference": {}}
    runs.append(run)
    training_rates(model, config, budget, run["training"])
    inference_rates(model, budget, run["inference"])
    run["hours"] = hours = protocol_hours(run["training"], run["inference"], config)
    parts = [f"{k.replace('_', ' ')} {v:.2f} h" for k, v in hours.items() if k.endswith("hours") or "hours_" in k]
    report(f"[{name}] {label}: " + ("; ".join(parts) if parts else "no projection (rates missing)"))


def four_bit_unavailable(device: torch.device, budget: Budget) -> Optional[str]:
    """Why the 4-bit run cannot happen here (None when it can)."""
    import importlib.util

    if device.type != "cuda":
        return "needs CUDA"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "needs bitsandbytes"
    return "time budget spent" if budget.spent() else None


def throughput_run(args: argparse.Namespace, figures: dict[str, Any]) -> dict[str, Any]:
    """bf16 rates, then (cuda) 4-bit rates of the same random weights, all with the device's name,
    recorded in ``figures`` as they come (the caller writes them even when interrupted).

    For 4-bit the random model is saved as a checkpoint folder *before* LoRA is injected (peft
    changes the modules in place), then loaded back through ``LlavaComparator.from_config`` with
    ``load_in_4bit``: the path a real checkpoint takes, bitsandbytes quantising while it loads.
    """
    from comparators.llava import LlavaComparator

    budget = Budget(args.budget_s)
    config = run_config(args.tokenizer)
    device = torch.device(args.device)
    kinds = [k.strip() for k in args.quantisation.split(",") if k.strip()]
    name = device_name(device)
    figures.update(device=name, torch=torch.__version__, tiny=args.tiny, runs=[])
    report(f"throughput on {name} ({'tiny LLaVA' if args.tiny else 'LLaVA-1.5-7B architecture'}, random weights)")
    llava, tokenizer, options = random_model(config, args.tiny, args.device, seed=args.seed)
    why_not = four_bit_unavailable(device, budget) if "4bit" in kinds else "not asked for"
    work = None
    if why_not is None:
        work = Path(tempfile.mkdtemp(prefix="llava-random-", dir=args.work_dir))
        start = time.perf_counter()
        llava.save_pretrained(work, max_shard_size="5GB")
        report(f"[{name}] random model saved as a checkpoint folder in {time.perf_counter() - start:.0f} s")
    try:
        model = LlavaComparator.from_model(llava, tokenizer, options)
        del llava
        if "none" in kinds:
            measure(model, config, budget, "bf16", figures["runs"])
        del model
        free_memory(device)
        if work is None:
            if "4bit" in kinds:
                report(f"[{name}] 4-bit: skipped ({why_not})")
                figures["runs"].append({"precision": "4bit", "skipped": why_not})
            return figures
        start = time.perf_counter()
        quantised = LlavaComparator.from_config(dataclasses.replace(options, checkpoint=str(work), load_in_4bit=True),
                                                tokenizer)
        report(f"[{name}] 4-bit: loaded through from_config (bitsandbytes NF4) in {time.perf_counter() - start:.0f} s")
        measure(quantised, config, budget, "4bit", figures["runs"])
        return figures
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
