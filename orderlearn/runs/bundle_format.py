"""What an exported bundle holds, and how its files are read (locally, or fetched from the hub).

``orderlearn export RUN --out BUNDLE`` (:mod:`.bundle`) writes a self-contained folder that
scores a photo on any machine, without the run folder, the training data or a GPU:

=================================  =====================================================================
``bundle.json``                    what the bundle holds (format, method, task, score range, files)
``config.yaml``                    the run's resolved config (builds the architecture)
``weights/checkpoint_<i>.safetensors``  each averaged checkpoint's tensors (for LLaVA: the LoRA adapters and
                                   the projector; the base model comes from ``model.checkpoint``, its id)
``scorer.json``                    the :class:`~orderlearn.bank.scoring_recipe.ScoringRecipe` (scorer, link,
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
:class:`~orderlearn.runs.loaded.LoadedRun` opens a bundle with the readers here.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import comparators

from orderlearn.bank.references import ReferenceBank
from orderlearn.config import ExperimentConfig, load_config
from orderlearn.errors import DataError
from orderlearn.types import ScoredImage

MANIFEST_FILE = "bundle.json"
BUNDLE_FORMAT = 1
REFERENCES_FILE = "references.json"
BANK_EMBEDDINGS_FILE = "bank_embeddings.safetensors"
THUMBNAILS_FILE = "reference_thumbnails.safetensors"
BUNDLE_SUFFIXES = {".safetensors", ".json", ".yaml", ".md", ".txt"}
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


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


def bundle_files(path: Path) -> list[Path]:
    """Every file of a bundle, relative to it."""
    return sorted(p.relative_to(path) for p in Path(path).rglob("*") if p.is_file())


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
