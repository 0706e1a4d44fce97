"""``orderlearn export RUN --out BUNDLE``: a run written as a self-contained bundle, and pushed to the hub.

What a bundle holds, file by file, and how it is read: :mod:`.bundle_format`; ``checksums.sha256``,
written last, lists every other file's sha256 (:mod:`.bundle_checks`). It loads into the
:class:`~orderlearn.runs.loaded.LoadedRun` its run folder loads into, and scores the same.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.scoring_recipe import RECIPE_FILE
from orderlearn.data.alignment import TEMPLATE_FILE, AlignmentUnavailableError, measure_template
from orderlearn.data.images import load_image
from orderlearn.errors import ConfigError, DataError
from orderlearn.files import atomic_write_json, atomic_write_text
from orderlearn.runs.bundle_checks import verify_checksums, write_checksums
from orderlearn.runs.bundle_format import (BANK_EMBEDDINGS_FILE, BUNDLE_FORMAT, MANIFEST_FILE, REFERENCES_FILE,
                                           THUMBNAILS_FILE, bundle_files, read_manifest)
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.model_card import model_card

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- export
def export_bundle(run: Path, out: Path, thumbnail_size: int = 64, template_faces: int = 200,
                  references: Optional[Path] = None) -> Path:
    """Write the bundle of ``run`` into the new folder ``out`` (written beside it, then renamed).
    ``references``: a manifest of the user's own references, the bundle's bank, self-calibrated
    on them (:mod:`orderlearn.runs.new_scale`; their files are embedded as they are, so give crops
    like the training faces); the bundle then scores on their scale, within the range fitted on
    them (its config's ``data.score_low``/``score_high`` say that range)."""
    from orderlearn.bank.own_references import read_references
    from orderlearn.runs.new_scale import with_references
    from orderlearn.runs.predictions import require_bank_route

    run, out = Path(run), Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty: export into a new folder")
    bank = read_references(references) if references is not None else None
    loaded = LoadedRun.from_run(run)
    own: Optional[dict[str, Any]] = None
    training_bank = loaded.bank  # the alignment template is the training faces' frame
    if bank is not None:
        require_bank_route(loaded)
        loaded, own = with_references(loaded, bank)
        own = {**own, "source": str(Path(references).resolve())}
        data = dataclasses.replace(loaded.config.data, score_low=loaded.recipe.low, score_high=loaded.recipe.high)
        loaded = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, data=data))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_bundle(loaded, work, thumbnail_size, template_faces, training_bank, own)
        readable_by_all(work)
        if out.exists():
            out.rmdir()
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return out


def readable_by_all(folder: Path) -> None:
    """The umask's usual modes (a temporary folder and safetensors files start private to their owner)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_bundle(loaded: LoadedRun, out: Path, thumbnail_size: int, template_faces: int,
                 template_bank: Optional[ReferenceBank] = None, own_references: Optional[dict[str, Any]] = None) -> None:
    """Every file of the bundle of the run ``loaded`` into ``out``; the alignment template from
    ``template_bank``'s faces (default: the bank's); ``own_references``: what was fitted on a
    user's references that are the bank (``bundle.json``'s ``own_references``)."""
    recipe, run = loaded.recipe, loaded.source
    checkpoints, full = write_weights(loaded, out)
    write_bank_embeddings(loaded, out / BANK_EMBEDDINGS_FILE)
    write_references(loaded.bank, out / REFERENCES_FILE)
    dataclasses.replace(recipe, checkpoints=checkpoints, bank_file=REFERENCES_FILE).save(out / RECIPE_FILE)
    # the exporter's cache folder means nothing elsewhere: a bundle caches in its user's (bundle_format)
    cache = "none" if loaded.config.feature_cache == "none" else "auto"
    dataclasses.replace(loaded.config, feature_cache=cache).save(out / "config.yaml")
    alignment_note = write_template(template_bank or loaded.bank, out / TEMPLATE_FILE, template_faces)
    if thumbnail_size:
        write_thumbnails(loaded.bank, out / THUMBNAILS_FILE, thumbnail_size)
    manifest = {
        "format": BUNDLE_FORMAT, "name": loaded.config.name, "method": loaded.config.model.name, "task": loaded.config.task,
        "score_range": [recipe.low, recipe.high], "checkpoints": checkpoints, "full_weights": full,
        "preprocess": repr(loaded.preprocess()), "bank_size": len(loaded.bank),
        "alignment": TEMPLATE_FILE if not alignment_note else None, "alignment_note": alignment_note,
        "thumbnails": THUMBNAILS_FILE if thumbnail_size else None, "source_run": str(run.resolve()),
        "results": results_summary(loaded.results),
    }
    if own_references is not None:
        manifest["own_references"] = own_references
    atomic_write_json(out / MANIFEST_FILE, manifest)
    atomic_write_text(out / "README.md", model_card(loaded.config, manifest, loaded.bank))
    write_checksums(out, bundle_files(out))  # last: over every file above


def write_weights(loaded: LoadedRun, out: Path) -> tuple[list[str], bool]:
    """Each checkpoint's tensors, contiguous CPU copies; and whether they cover the whole model."""
    names, full = [], True
    model_keys = set(loaded.model.state_dict())
    for i, (checkpoint, file) in enumerate(zip(loaded.recipe.checkpoints, loaded.checkpoints)):
        state = load_file(str(file), device="cpu")
        name = f"weights/checkpoint_{i}.safetensors"
        (out / "weights").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / name), metadata={"source": checkpoint})
        names.append(name)
        full = full and set(state) == model_keys
    return names, full


def write_bank_embeddings(loaded: LoadedRun, file: Path) -> None:
    route = loaded.route
    stored = {f"checkpoint_{i}": route.bank_embeddings(view).detach().float().cpu().contiguous() for i, view in route.views()}
    save_file(stored, str(file), metadata={"references": str(len(loaded.bank))})


def write_references(bank: ReferenceBank, file: Path) -> None:
    refs = [{"name": s.path.name, "score": s.score, "std": s.std, "group": s.group} for s in bank.samples]
    atomic_write_json(file, {"bin_width": bank.bin_width, "per_bin": bank.per_bin, "seed": bank.seed, "references": refs})


def write_template(bank: ReferenceBank, file: Path, faces: int) -> str:
    """Measure and write the alignment template; returns why not ('' when written)."""
    try:
        measure_template([s.path for s in bank.samples], limit=faces).save(file)
    except (AlignmentUnavailableError, DataError) as exc:
        log.warning("bundle without an alignment template: %s", exc)
        return str(exc)
    return ""


def write_thumbnails(bank: ReferenceBank, file: Path, size: int) -> None:
    import numpy as np

    images = [np.asarray(ImageOps.fit(load_image(s.path), (size, size), Image.Resampling.BICUBIC)) for s in bank.samples]
    save_file({"thumbnails": torch.from_numpy(np.stack(images)).contiguous()}, str(file))


def results_summary(results: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The run's headline numbers for the model card (both routes, the bank)."""
    if results is None:
        return None
    keep = ("name", "method", "task", "order_learned", "direct", "direct_how", "bank_size", "interval_coverage")
    return {k: results[k] for k in keep if k in results}


# ---------------------------------------------------------------------------- the hub
def push_bundle(path: Path, repo_id: str, private: bool = False) -> str:
    """Upload a bundle folder as a model repository; returns its URL."""
    from comparators.backbones import hub_unavailable

    read_manifest(Path(path))
    verify_checksums(Path(path))  # a bundle changed since export is not uploaded
    why = hub_unavailable()
    if why:
        raise DataError(f"cannot push {path} to {repo_id}: {why}")
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(path), repo_id=repo_id, repo_type="model",
                      commit_message="orderlearn bundle")
    return f"https://huggingface.co/{repo_id}"


def check_thumbnail_size(size: int) -> int:
    if not 0 <= size <= 512:
        raise ConfigError(f"--thumbnail-size: {size} is not in 0..512")
    return size
