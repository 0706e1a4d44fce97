"""Per-image features: each image goes through a model's frozen part once, cached on disk.

:class:`FeatureExtractor` runs a model's :meth:`~comparators.base.Model.forward_features` (a
comparator's ``embed``, a regressor's backbone) over samples in evaluation mode, batched and
spread over accelerate's processes. With a :class:`FeatureCache` every image's features are
stored in a file of its own, content-addressed twice:

* per **model**: a digest of the model's class, its options config (its
  :meth:`~comparators.base.Model.feature_key_config`: the whole options config, or for a
  partially fine-tuned model the frozen trunk's description, so methods over one trunk share
  entries), the preprocessing transform and the weights of its
  :meth:`~comparators.base.Model.feature_modules` (so a retrained weights file at the same
  path, another ``backbone_kwargs`` or image size can never reuse stale features);
* per **image**: the SHA-256 of the file's bytes (a moved or renamed file is still a hit, an
  edited one is a miss);
* per **view** (:func:`comparators.views.parse_view`): the mirror image's features are an entry of
  their own, so a model trained on cached features of faces and their mirrors, or scored with
  test-time flip averaging, passes each image and view through its frozen part once.

So the five SCUT-FBP5500 folds, which share their 5500 images, embed each image once. Each
image goes through the model on its own (batches are only loaded together): convolutions and
matrix products choose their kernels by the batch's shape, so features computed in a batch
depend, in the sixth digit, on the other images in it; computed alone they are the same in
every run, cold or warm cache, one photo or a thousand. On a CPU this costs nothing
(MobileNetV2 at 224 px: 64 images one by one take 0.6-0.7 of the time of one batch of 64 on
2 cores). Files
are written to a temporary name and renamed into place, so two processes writing the same
entry at once both leave a complete file. The cache folder is ``feature_cache`` of the run
config: ``auto`` (``$ORDERLEARN_CACHE_DIR``, else the user's cache directory
``$XDG_CACHE_HOME/orderlearn/features`` or ``~/.cache/orderlearn/features``), a path, or
``none``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from comparators.base import Model
from comparators.views import check_views, view_transform

from orderlearn.files import atomic_write_bytes
from orderlearn.engine.datasets import ImageDataset
from orderlearn.engine.parallel import gather_in_order
from orderlearn.types import ScoredImage

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # bump when what a cached file means changes (2: each image computed on its own)


def default_cache_dir() -> Path:
    """``$ORDERLEARN_CACHE_DIR``, else ``$XDG_CACHE_HOME/orderlearn/features``, else ``~/.cache/...``."""
    explicit = os.environ.get("ORDERLEARN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "orderlearn" / "features"


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (memoised per process by path, size and modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _FILE_DIGESTS[key] = digest
    return digest


def weights_digest(modules: Sequence[torch.nn.Module]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes of every tensor in the modules' state."""
    h = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{i}.{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def unit_keys(modules: Sequence[torch.nn.Module]) -> list[str]:
    """The ``feature_cache_key`` of every submodule that declares one: what decides its output
    besides its tensors (the dlib chip unit: its landmark source and its chip geometry, which have
    no weights), so changing them never reuses features computed before."""
    return [str(m.feature_cache_key) for module in modules for m in module.modules() if hasattr(m, "feature_cache_key")]


def model_key(model: Model, transform: Callable, view: str = "identity", precision: str = "no",
              channels_last: bool = False) -> str:
    """What identifies a model's features: its options, preprocessing, feature modules and their
    weights, the view, the autocast precision and the memory format they were computed in (bf16
    features differ from float32 ones in the third digit, channels-last ones in the sixth; not the
    model's own class: a regressor and its comparator view share features)."""
    modules = model.feature_modules()
    spec = {
        "format": CACHE_FORMAT,
        "modules": [f"{type(m).__module__}.{type(m).__qualname__}" for m in modules],
        "config": repr(model.feature_key_config()),
        "transform": repr(transform),
        "mode": "eval",
        "weights": weights_digest(modules),
    }
    units = unit_keys(modules)
    if units:  # models without such units keep the keys they had before units could declare one
        spec["units"] = units
    if view != "identity":  # the plain image keeps the keys it had before views existed
        spec["view"] = view
    if precision != "no":  # float32 features keep the keys they had before precisions were told apart
        spec["precision"] = precision
    if channels_last:
        spec["memory_format"] = "channels_last"
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    """A folder of ``<model key>/<image digest>.npy`` files (float32 features of one image)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_setting(cls, setting: Optional[str]) -> Optional["FeatureCache"]:
        """``"auto"`` -> the default folder, ``"none"``/None -> no cache, else that folder."""
        if setting is None or setting == "none":
            return None
        return cls(default_cache_dir() if setting == "auto" else Path(setting))

    def _file(self, key: str, digest: str) -> Path:
        return self.root / key / f"{digest}.npy"

    def load(self, key: str, digest: str) -> Optional[torch.Tensor]:
        path = self._file(key, digest)
        if not path.is_file():
            return None
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as exc:  # a truncated file from a killed writer of an old format
            log.warning("ignoring unreadable cached features %s (%s)", path, exc)
            return None

    def store(self, key: str, digest: str, features: torch.Tensor) -> None:
        buffer = io.BytesIO()
        np.save(buffer, features.detach().cpu().float().numpy(), allow_pickle=False)
        atomic_write_bytes(self._file(key, digest), buffer.getvalue())


class FeatureExtractor:
    """``forward_features`` of a model for sample lists, in evaluation mode, optionally cached.

    The model's training mode is restored afterwards (a new model is in training mode; batch
    norm must use its running statistics for features). Features already extracted in this
    process are kept in memory too (the bank is a subset of the training images).
    """

    def __init__(self, accelerator: Accelerator, batch_size: int, num_workers: int = 0,
                 cache: Optional[FeatureCache] = None, channels_last: bool = False) -> None:
        self.accelerator = accelerator
        self.batch_size, self.num_workers, self.cache = batch_size, num_workers, cache
        self.channels_last = channels_last  # the models it is given are in channels-last format (train.channels_last)
        self._memo: dict[tuple[str, str], torch.Tensor] = {}

    def __call__(self, model: Model, samples: Sequence[ScoredImage], desc: str = "features",
                 views: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Features ``[N, ...]`` of one view, or ``[N, V, ...]`` of several. ``views`` defaults
        to the model's :meth:`~comparators.base.Model.feature_views` (the image alone, or the
        views a test-time averaging view asks for)."""
        views = check_views(model.feature_views() if views is None else views)
        was_training = model.training
        model.eval()
        try:
            per_view = [self._extract(model, list(samples), desc if v == "identity" else f"{desc} ({v})", v) for v in views]
        finally:
            model.train(was_training)
        return per_view[0] if len(per_view) == 1 else torch.stack(per_view, dim=1)

    def _extract(self, model: Model, samples: list[ScoredImage], desc: str, view: str) -> torch.Tensor:
        transform = model.preprocess()
        if self.cache is None:
            return self._compute(model, samples, transform, desc, view)
        key = model_key(model, transform, view, str(self.accelerator.mixed_precision), self.channels_last)
        digests = [file_digest(s.path) for s in samples]
        found: dict[int, torch.Tensor] = {}
        for i, digest in enumerate(digests):
            hit = self._memo.get((key, digest))
            if hit is None:
                hit = self.cache.load(key, digest)
            if hit is not None:
                found[i] = hit
        missing = [i for i in range(len(samples)) if i not in found]
        missing = broadcast_object_list([missing])[0] if self.accelerator.num_processes > 1 else missing
        if missing:
            computed = self._compute(model, [samples[i] for i in missing], transform, desc, view,
                                     store=(key, [digests[i] for i in missing]))
            found.update(zip(missing, computed))
        log.info("%s: %d of %d images' features from the cache", desc, len(samples) - len(missing), len(samples))
        for i, digest in enumerate(digests):
            self._memo[(key, digest)] = found[i]
        return torch.stack([found[i] for i in range(len(samples))]) if samples else torch.empty(0)

    @torch.no_grad()
    def _compute(self, model: Model, samples: list[ScoredImage], transform: Callable, desc: str, view: str,
                 store: Optional[tuple[str, list[str]]] = None) -> torch.Tensor:
        """Features of ``samples`` in order; each process computes (and stores) its share."""
        accelerator = self.accelerator
        with accelerator.split_between_processes(list(range(len(samples)))) as mine:
            loader = DataLoader(ImageDataset([samples[i] for i in mine], transform), batch_size=self.batch_size,
                                num_workers=self.num_workers)
            parts, transform_view = [], view_transform(view)
            for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
                with accelerator.autocast():
                    images = transform_view(batch["image"].to(accelerator.device))
                    if self.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    # one forward per image: kernels are chosen by the batch's shape, so a face's
                    # features would otherwise depend on the faces loaded beside it (~1e-6)
                    parts += [model.forward_features(images[i:i + 1]).float().cpu() for i in range(len(images))]
            local = torch.cat(parts) if parts else torch.empty(0)
            if store is not None and self.cache is not None:
                key, digests = store
                for i, features in zip(mine, local):
                    self.cache.store(key, digests[i], features)
        return gather_in_order(local, accelerator)
