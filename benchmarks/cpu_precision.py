"""float32 vs bf16 autocast vs channels-last on this machine's CPU, side by side, one process.

What a partially fine-tuned run spends its time on: the frozen trunk's features of every face and
view (once, then cached), and the training steps of the trainable top on those cached maps. Both
are timed for the same batch of real faces, the same model and weights, in three settings:

* float32 (``train.mixed_precision: "no"``);
* bf16 autocast (``train.mixed_precision: bf16``: weights and optimizer stay float32);
* float32 with channels-last tensors (``train.channels_last: true``, the memory format timm's
  ``--channels-last`` selects).

Printed: seconds per batch for each (median of ``--repeats``), the ratio to float32, and the
largest difference of the features from float32's. bf16 pays off only where the CPU has native
bf16 arithmetic (AVX512-BF16 or AMX); elsewhere it is slower than float32.

    python -m benchmarks.cpu_precision --config configs/aaf/rapl_mobilenetv2_224_partial_cpu.yaml
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from typing import Callable, ContextManager

import torch

from comparators.base import Regressor
from orderlearn.config import load_config
from orderlearn.errors import ConfigError
from orderlearn.data.splits import load_training
from orderlearn.data.images import load_image
from orderlearn.runs.recipe import build_model

SETTINGS: dict[str, tuple[Callable[[], ContextManager], torch.memory_format]] = {
    "float32": (contextlib.nullcontext, torch.contiguous_format),
    "bf16 autocast": (lambda: torch.autocast("cpu", dtype=torch.bfloat16), torch.contiguous_format),
    "float32 channels-last": (contextlib.nullcontext, torch.channels_last),
    "bf16 channels-last": (lambda: torch.autocast("cpu", dtype=torch.bfloat16), torch.channels_last),
}


def median_seconds(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up: first calls pick kernels and allocate
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a partially fine-tuned regressor's config (its model and data)")
    parser.add_argument("--batch", type=int, default=64, help="faces per batch (the configs' batch size)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = load_config(args.config)
    model = build_model(config)
    if not isinstance(model, Regressor):
        raise ConfigError(f"{args.config}: model.name {config.model.name!r} is not a regressor; the training step "
                          "timed here is a regressor's")
    faces = load_training(config.data).train[: args.batch]
    transform = model.preprocess()
    images = torch.stack([transform(load_image(s.path)) for s in faces])
    model.eval()
    with torch.no_grad():
        reference = model.forward_features(images)
    print(f"{config.name}: {len(faces)} faces at {tuple(images.shape[-2:])}, trunk maps {tuple(reference.shape[1:])}, "
          f"{args.threads} threads")
    print(f"{'setting':<24}{'trunk s/batch':>15}{'ratio':>8}{'max |Δ| feature':>18}{'train step s':>15}{'ratio':>8}")
    baseline: tuple[float, float] | None = None  # float32's seconds, the first setting
    for name, (autocast, memory_format) in SETTINGS.items():
        net = copy.deepcopy(model).to(memory_format=memory_format)
        batch = images.contiguous(memory_format=memory_format)
        net.eval()

        def trunk() -> torch.Tensor:
            with torch.no_grad(), autocast():
                return net.forward_features(batch)

        features = trunk().float()
        maps = reference.contiguous(memory_format=memory_format)
        net.train()

        def train_step() -> None:
            with autocast():
                output = net.forward_head(maps)
            output.score.float().sum().backward()

        seconds = (median_seconds(trunk, args.repeats), median_seconds(train_step, args.repeats))
        baseline = baseline or seconds
        print(f"{name:<24}{seconds[0]:>15.3f}{baseline[0] / seconds[0]:>7.2f}x"
              f"{(features - reference).abs().max().item():>18.2e}{seconds[1]:>15.3f}{baseline[1] / seconds[1]:>7.2f}x")


if __name__ == "__main__":
    main()
