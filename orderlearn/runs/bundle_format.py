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
``checksums.sha256``               the sha256 of every other file (``sha256sum``'s format), verified on load
=================================  =====================================================================

Only safetensors, JSON, YAML and text: nothing is unpickled when a bundle loads, and every
tensor is stored from the CPU, so a bundle written on a GPU machine loads on a CPU-only one.
:class:`~orderlearn.runs.loaded.LoadedRun` opens a bundle with the readers here, each of which
range-checks what it reads (a DataError naming the file and the key); what a bundle may name and
how its files are verified is :mod:`.bundle_checks`.

Format 2 added the checksums; a bundle of format 1 is refused with a request to re-export it
(its files cannot be verified). A bundle's config is read as the closed world allows: no
``base:`` (export writes the resolved config), features cached in the user's cache folder
(``ORDERLEARN_CACHE_DIR`` or the default one) whatever its ``feature_cache:`` says (``none``
stays none), and ``model.weights`` never a file: with full weights the model is built with
random ones (each tensor is then overwritten), otherwise it must be ``random`` or ``imagenet``.
A LoRA bundle's base model is still the one ``model.checkpoint`` names, as its model card says.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import comparators
import yaml

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.scoring_recipe import RECIPE_FILE, ScoringRecipe
from orderlearn.config import ExperimentConfig, load_config
from orderlearn.errors import DataError
from orderlearn.runs.bundle_checks import REEXPORT
from orderlearn.types import ScoredImage

MANIFEST_FILE = "bundle.json"
BUNDLE_FORMAT = 2  # 2: checksums.sha256
REFERENCES_FILE = "references.json"
BANK_EMBEDDINGS_FILE = "bank_embeddings.safetensors"
THUMBNAILS_FILE = "reference_thumbnails.safetensors"
BUNDLE_SUFFIXES = {".safetensors", ".json", ".yaml", ".md", ".txt", ".sha256"}
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


NONE = type(None)
# bundle.json: key -> the types its value may have (every key export writes that loading reads)
MANIFEST_KEYS: dict[str, tuple[type, ...]] = {
    "format": (int,), "method": (str,), "task": (str,), "score_range": (list,), "checkpoints": (list,),
    "full_weights": (bool,), "bank_size": (int,), "alignment": (str, NONE), "thumbnails": (str, NONE),
}
OPTIONAL_KEYS: dict[str, tuple[type, ...]] = {"alignment_note": (str, NONE), "results": (dict, NONE),
                                              "own_references": (dict, NONE)}
USER_WEIGHTS = ("random", "imagenet")  # the model.weights a bundle's config may name: none is a file


def read_manifest(path: Path) -> dict[str, Any]:
    """``bundle.json``, its format this orderlearn's and every key of the right type."""
    file = path / MANIFEST_FILE
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} is not a bundle (no {MANIFEST_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{file}: a JSON {type(manifest).__name__}, not an object of the bundle's contents")
    version = manifest.get("format")
    if version != BUNDLE_FORMAT:
        older = isinstance(version, int) and not isinstance(version, bool) and version < BUNDLE_FORMAT
        raise DataError(f"{file}: bundle format {version!r}, this orderlearn reads {BUNDLE_FORMAT}; "
                        + (REEXPORT if older else "update orderlearn to read it"))
    for key, types in {**MANIFEST_KEYS, **OPTIONAL_KEYS}.items():
        if key not in manifest and key in MANIFEST_KEYS:
            raise DataError(f"{file}: missing key {key!r}")
        if key in manifest and (not isinstance(manifest[key], types) or (bool not in types and isinstance(manifest[key], bool))):
            raise DataError(f"{file}: {key} {manifest[key]!r} is not {' or '.join(t.__name__ for t in types)}")
    low_high = manifest["score_range"]
    if len(low_high) != 2 or not all(_finite(v) for v in low_high) or not low_high[0] < low_high[1]:
        raise DataError(f"{file}: score_range {low_high!r} is not [low, high], two finite numbers with low < high")
    if manifest["bank_size"] < 1:
        raise DataError(f"{file}: bank_size {manifest['bank_size']} is not >= 1")
    return manifest


def bundle_config(path: Path, manifest: dict[str, Any]) -> ExperimentConfig:
    """The run's config, read as a closed world (module docstring): when the bundle's weights hold
    every tensor of the model, the architecture is built with ``weights: random`` (each tensor is
    then overwritten), so a machine without the pretrained backbone weights loads the bundle too."""
    file = path / "config.yaml"
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: not a readable config ({type(exc).__name__}: {one_line(exc)})") from None
    if not isinstance(raw, dict) or "base" in raw or "unset" in raw:
        raise DataError(f"{file}: not a resolved run config (a mapping without base: or unset:, as export writes it)")
    config = load_config(file)
    args = dict(config.model.args)
    if "weights" in option_names(config.model.name):
        if manifest["full_weights"]:
            args["weights"] = "random"
        elif args.get("weights", "imagenet") not in USER_WEIGHTS:
            raise DataError(f"{file}: model.weights {args['weights']!r} is a file outside the bundle; a bundle's "
                            f"weights come from its own weights/ files only ({' or '.join(USER_WEIGHTS)} allowed here)")
    cache = "none" if config.feature_cache == "none" else "auto"
    return dataclasses.replace(config, model=dataclasses.replace(config.model, args=args), feature_cache=cache)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def option_names(model_name: str) -> set[str]:
    options = comparators.options_of(model_name)
    return {f.name for f in dataclasses.fields(options)} if options is not None else set()


def read_references(file: Path, low: float, high: float) -> ReferenceBank:
    """The bank of a bundle: names and scores only (its images are not needed to score, and never
    opened: each name is a plain file name, a label). Every score is finite and in ``[low, high]``."""
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        raise DataError(f"bundle references {file} do not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file} is not a bundle's reference list ({exc})") from None
    refs = raw.get("references") if isinstance(raw, dict) else None
    if not isinstance(refs, list) or not refs:
        raise DataError(f"{file}: references is not a non-empty list")
    samples = [reference(file, i, ref, low, high) for i, ref in enumerate(refs)]
    bin_width, per_bin, seed = raw.get("bin_width", 0.1), raw.get("per_bin", 10), raw.get("seed", 0)
    if not (_finite(bin_width) and bin_width > 0) or not (_integer(per_bin) and per_bin >= 1) or not _integer(seed):
        raise DataError(f"{file}: bin_width {bin_width!r}, per_bin {per_bin!r}, seed {seed!r}: "
                        "not a width > 0, a count >= 1 and an integer")
    return ReferenceBank(samples, float(bin_width), per_bin, seed)


def reference(file: Path, i: int, ref: Any, low: float, high: float) -> ScoredImage:
    """Reference ``i`` of ``references.json``, checked."""
    where = f"{file}: references[{i}]"
    if not isinstance(ref, dict):
        raise DataError(f"{where} is not an object")
    name, score, std, group = ref.get("name"), ref.get("score"), ref.get("std"), ref.get("group")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"{where}: name {name!r} is not a plain file name (a label; a bundle opens no reference image)")
    if not (_finite(score) and low <= score <= high):
        raise DataError(f"{where}: score {score!r} is not a finite number in the bundle's range [{low:g}, {high:g}]")
    if std is not None and not (_finite(std) and std >= 0):
        raise DataError(f"{where}: std {std!r} is not a finite number >= 0")
    if group is not None and not isinstance(group, (str, int)):
        raise DataError(f"{where}: group {group!r} is not a name")
    return ScoredImage(path=Path(name), score=float(score), std=std, group=group)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_agreement(path: Path, manifest: dict[str, Any], config: ExperimentConfig, recipe: ScoringRecipe,
                    bank: ReferenceBank) -> None:
    """``bundle.json`` says what the other files hold: the same checkpoints, score range, bank size,
    method and task (a file swapped in from another bundle disagrees)."""
    said = {"checkpoints": (manifest["checkpoints"], recipe.checkpoints, RECIPE_FILE),
            "score_range": (manifest["score_range"], [recipe.low, recipe.high], RECIPE_FILE),
            "bank_size": (manifest["bank_size"], len(bank), recipe.bank_file),
            "method": (manifest["method"], config.model.name, "config.yaml"),
            "task": (manifest["task"], config.task, "config.yaml")}
    said["score_range (config.yaml)"] = (manifest["score_range"], [config.data.score_low, config.data.score_high],
                                         "config.yaml")
    for key, (there, here, where) in said.items():
        if there != here:
            raise DataError(f"{path / MANIFEST_FILE}: {key.split(' ')[0]} {there!r}, but {where} holds {here!r}")


def bundle_is_not_a_run(path: Path) -> str:
    """What to say when a bundle is given where a run folder is read (``score --run``, ``active
    --run``, ``export``): what it is, and what to use instead."""
    try:
        source = json.loads((path / MANIFEST_FILE).read_text()).get("source_run")
    except (OSError, ValueError, AttributeError):
        source = None
    came_from = f" ({source})" if isinstance(source, str) and source else ""
    return (f"{path} is an exported bundle ({MANIFEST_FILE}), not an `orderlearn run` folder: score photos with "
            f"`orderlearn predict PHOTO --model {path}`; score, active and export read the run folder it was exported "
            f"from{came_from}")


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
