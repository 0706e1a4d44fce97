"""A trained model as something to score photos with: from a run folder, or from a bundle.

``orderlearn export RUN --out BUNDLE`` writes a self-contained folder that scores a photo on any
machine, without the run folder, the training data or a GPU:

=================================  =====================================================================
``bundle.json``                    what the bundle holds (format, method, task, score range, files)
``config.yaml``                    the run's resolved config (builds the architecture)
``weights/checkpoint_<i>.safetensors``  each averaged checkpoint's tensors (for LLaVA: the LoRA adapters and
                                   the projector; the base model comes from ``model.checkpoint``, its id)
``scorer.json``                    the :class:`~orderlearn.bank.evaluator.BankEvaluator` (scorer, link,
                                   interval scale, per-checkpoint view state)
``references.json``                the bank: file names, scores (no images)
``bank_embeddings.safetensors``    per checkpoint, the bank as ``compare`` reads it, so a photo costs one
                                   backbone pass and its comparisons with the bank
``reference_thumbnails.safetensors``  small uint8 thumbnails of the references for the decision pictures
                                   (``--thumbnail-size 0`` leaves them out)
``alignment.json``                 the alignment template (mean landmarks of the training faces)
``README.md``                      the model card (Hugging Face layout)
=================================  =====================================================================

Only safetensors, JSON, YAML and text: nothing is unpickled when a bundle loads, and every
tensor is stored from the CPU, so a bundle written on a GPU machine loads on a CPU-only one.

:func:`load_model` opens either kind of source into the same :class:`ScoringModel`, whose
``saved`` is the :class:`~orderlearn.runs.saved.SavedRun` a run folder loads into (for a bundle,
its :class:`~orderlearn.bank.evaluator.BankRoute` reads the stored bank embeddings).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file

import comparators

from orderlearn.data.alignment import TEMPLATE_FILE, AlignmentTemplate, AlignmentUnavailableError, measure_template
from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.evaluator import EVALUATOR_FILE, BankEvaluator, BankRoute
from orderlearn.config import ExperimentConfig, load_config
from orderlearn.errors import ConfigError, DataError
from orderlearn.files import atomic_write_json, atomic_write_text
from orderlearn.data.images import load_image
from orderlearn.runs.model_card import model_card
from orderlearn.runs.recipe import build_model, feature_extractor
from orderlearn.runs.saved import SavedRun, load_run
from orderlearn.engine.runtime import make_accelerator
from orderlearn.types import ScoredImage

log = logging.getLogger(__name__)

MANIFEST_FILE = "bundle.json"
BUNDLE_FORMAT = 1
REFERENCES_FILE = "references.json"
BANK_EMBEDDINGS_FILE = "bank_embeddings.safetensors"
THUMBNAILS_FILE = "reference_thumbnails.safetensors"
BUNDLE_SUFFIXES = {".safetensors", ".json", ".yaml", ".md", ".txt"}
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class ReferenceImages:
    """The bank's images for pictures: thumbnails stored in a bundle, or the run's files."""

    def __init__(self, bank: ReferenceBank, thumbnails: Optional[torch.Tensor] = None) -> None:
        self.bank, self.thumbnails = bank, thumbnails

    def get(self, index: int) -> Optional[Image.Image]:
        """Reference ``index`` as an image, or None when neither a thumbnail nor its file exists."""
        if self.thumbnails is not None:
            return Image.fromarray(self.thumbnails[index].numpy())
        path = self.bank.samples[index].path
        return load_image(path) if path.is_file() else None


@dataclass
class ScoringModel:
    """What ``predict`` and ``serve`` score with, whatever it was loaded from."""

    source: Path
    saved: SavedRun
    references: ReferenceImages
    template: Optional[AlignmentTemplate]
    template_note: str  # why there is no template, when there is none
    results: Optional[dict[str, Any]]  # the run's results.json, where known
    is_bundle: bool

    def alignment_template(self) -> AlignmentTemplate:
        """The template; for a run folder without one, measured once on the bank's training faces
        and kept as ``RUN/alignment.json``. A bundle made without one: AlignmentUnavailableError."""
        if self.template is not None:
            return self.template
        if self.is_bundle:
            raise AlignmentUnavailableError(f"{self.source} has no alignment template ({self.template_note}); "
                                            "score crops with --align none")
        self.template = measure_template([s.path for s in self.saved.bank.samples])
        try:
            self.template.save(self.source / TEMPLATE_FILE)
        except OSError as exc:
            log.warning("alignment template not kept in %s (%s)", self.source, exc)
        return self.template


# ---------------------------------------------------------------------------- loading
def load_model(source: Union[str, Path]) -> ScoringModel:
    """A run folder, a bundle folder, or a hub id ``owner/name`` of a pushed bundle."""
    path = Path(source)
    if (path / MANIFEST_FILE).is_file():
        return load_bundle(path)
    if (path / "config.yaml").is_file():
        return model_from_run(path)
    if path.exists():
        raise DataError(f"{path} is neither an `orderlearn run` folder (config.yaml) nor a bundle ({MANIFEST_FILE})")
    if HUB_ID.fullmatch(str(source)):
        return load_bundle(download_bundle(str(source)))
    raise DataError(f"{source}: no such run or bundle folder (nor a hub id owner/name)")


def model_from_run(run: Path) -> ScoringModel:
    saved = load_run(run)
    template_file = run / TEMPLATE_FILE
    template = AlignmentTemplate.load(template_file) if template_file.is_file() else None
    results_file = run / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else None
    return ScoringModel(run, saved, ReferenceImages(saved.bank), template, "not measured yet", results, is_bundle=False)


def load_bundle(path: Union[str, Path]) -> ScoringModel:
    """Open an exported bundle (everything mapped to the CPU; CUDA is used when present)."""
    path = Path(path)
    manifest = read_manifest(path)
    config = bundle_config(path, manifest)
    evaluator = BankEvaluator.load(path / EVALUATOR_FILE)
    bank = read_references(path / REFERENCES_FILE)
    stored = load_file(str(path / BANK_EMBEDDINGS_FILE), device="cpu")
    embeddings = [stored[f"checkpoint_{i}"] for i in range(len(evaluator.checkpoints))]
    quiet = dataclasses.replace(config, train=dataclasses.replace(config.train, tracker="none"))
    accelerator = make_accelerator(quiet, path)
    model = build_model(config)
    route = BankRoute(model, evaluator, bank, path, feature_extractor(config, accelerator), accelerator,
                      config.train.eval_batch_size, stored_bank_embeddings=embeddings)
    saved = SavedRun(path, config, model, evaluator, bank, accelerator, route)
    thumbnails = load_file(str(path / THUMBNAILS_FILE))["thumbnails"] if manifest["thumbnails"] else None
    template = AlignmentTemplate.load(path / TEMPLATE_FILE) if manifest["alignment"] else None
    return ScoringModel(path, saved, ReferenceImages(bank, thumbnails), template, manifest.get("alignment_note", ""),
                        manifest.get("results"), is_bundle=True)


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST_FILE
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} is not a bundle (no {MANIFEST_FILE})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{file} is not valid JSON ({exc})") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise DataError(f"{file}: bundle format {manifest.get('format')!r}, this orderlearn reads {BUNDLE_FORMAT}")
    return manifest


def bundle_config(path: Path, manifest: dict[str, Any]) -> ExperimentConfig:
    """The run's config; when the bundle's weights hold every tensor of the model, the
    architecture is built with ``weights: random`` (each tensor is then overwritten), so a
    machine without the pretrained backbone weights loads the bundle too."""
    config = load_config(path / "config.yaml")
    if manifest["full_weights"] and "weights" in option_names(config.model.name):
        model = dataclasses.replace(config.model, args={**config.model.args, "weights": "random"})
        config = dataclasses.replace(config, model=model)
    return config


def option_names(model_name: str) -> set[str]:
    options = comparators.options_of(model_name)
    return {f.name for f in dataclasses.fields(options)} if options is not None else set()


def read_references(file: Path) -> ReferenceBank:
    """The bank of a bundle: names and scores only (its images are not needed to score)."""
    try:
        raw = json.loads(file.read_text())
        samples = [ScoredImage(path=Path(r["name"]), score=float(r["score"]), std=r.get("std"), group=r.get("group"))
                   for r in raw["references"]]
    except FileNotFoundError:
        raise DataError(f"bundle references {file} do not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{file} is not a bundle's reference list ({exc})") from None
    return ReferenceBank(samples, raw.get("bin_width", 0.1), raw.get("per_bin", 10), raw.get("seed", 0))


# ---------------------------------------------------------------------------- export
def export_bundle(run: Path, out: Path, thumbnail_size: int = 64, template_faces: int = 200) -> Path:
    """Write the bundle of ``run`` into the new folder ``out`` (written beside it, then renamed)."""
    run, out = Path(run), Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty: export into a new folder")
    saved = load_run(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_bundle(saved, run, work, thumbnail_size, template_faces)
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


def write_bundle(saved: SavedRun, run: Path, out: Path, thumbnail_size: int, template_faces: int) -> None:
    evaluator = saved.evaluator
    checkpoints, full = write_weights(saved, run, out)
    write_bank_embeddings(saved, out / BANK_EMBEDDINGS_FILE)
    write_references(saved.bank, out / REFERENCES_FILE)
    dataclasses.replace(evaluator, checkpoints=checkpoints, bank_file=REFERENCES_FILE).save(out / EVALUATOR_FILE)
    saved.config.save(out / "config.yaml")
    alignment_note = write_template(saved.bank, out / TEMPLATE_FILE, template_faces)
    if thumbnail_size:
        write_thumbnails(saved.bank, out / THUMBNAILS_FILE, thumbnail_size)
    results_file = run / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else None
    manifest = {
        "format": BUNDLE_FORMAT, "name": saved.config.name, "method": saved.config.model.name, "task": saved.config.task,
        "score_range": [evaluator.low, evaluator.high], "checkpoints": checkpoints, "full_weights": full,
        "preprocess": repr(saved.model.preprocess()), "bank_size": len(saved.bank),
        "alignment": TEMPLATE_FILE if not alignment_note else None, "alignment_note": alignment_note,
        "thumbnails": THUMBNAILS_FILE if thumbnail_size else None, "source_run": str(run.resolve()),
        "results": results_summary(results),
    }
    atomic_write_json(out / MANIFEST_FILE, manifest)
    atomic_write_text(out / "README.md", model_card(saved.config, manifest, saved.bank))


def write_weights(saved: SavedRun, run: Path, out: Path) -> tuple[list[str], bool]:
    """Each checkpoint's tensors, contiguous CPU copies; and whether they cover the whole model."""
    names, full = [], True
    model_keys = set(saved.model.state_dict())
    for i, checkpoint in enumerate(saved.evaluator.checkpoints):
        state = load_file(str(run / checkpoint), device="cpu")
        name = f"weights/checkpoint_{i}.safetensors"
        (out / "weights").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / name), metadata={"source": checkpoint})
        names.append(name)
        full = full and set(state) == model_keys
    return names, full


def write_bank_embeddings(saved: SavedRun, file: Path) -> None:
    route = saved.route
    stored = {f"checkpoint_{i}": route.bank_embeddings(view).detach().float().cpu().contiguous() for i, view in route.views()}
    save_file(stored, str(file), metadata={"references": str(len(saved.bank))})


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
    """The run's headline numbers for the model card (both routes, the bank evaluator)."""
    if results is None:
        return None
    keep = ("name", "method", "task", "order_learned", "direct", "direct_how", "bank_size", "interval_coverage")
    return {k: results[k] for k in keep if k in results}


def bundle_files(path: Path) -> list[Path]:
    """Every file of a bundle, relative to it."""
    return sorted(p.relative_to(path) for p in Path(path).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- the hub
def push_bundle(path: Path, repo_id: str, private: bool = False) -> str:
    """Upload a bundle folder as a model repository; returns its URL."""
    from comparators.backbones import hub_unavailable

    read_manifest(Path(path))
    why = hub_unavailable()
    if why:
        raise DataError(f"cannot push {path} to {repo_id}: {why}")
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(path), repo_id=repo_id, repo_type="model",
                      commit_message="orderlearn bundle")
    return f"https://huggingface.co/{repo_id}"


def download_bundle(repo_id: str) -> Path:
    """A pushed bundle's local snapshot (a DataError, fast, when the hub cannot answer)."""
    from comparators.backbones import hub_unavailable

    why = hub_unavailable()
    if why:
        raise DataError(f"{repo_id}: no such local folder, and the bundle cannot be fetched from the hub ({why})")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="model"))
    except Exception as exc:  # not found, gated, network error: one line naming the id
        raise DataError(f"{repo_id}: cannot fetch the bundle from the hub ({type(exc).__name__}: {exc})") from None


def check_thumbnail_size(size: int) -> int:
    if not 0 <= size <= 512:
        raise ConfigError(f"--thumbnail-size: {size} is not in 0..512")
    return size
