"""A finished run, loaded to score more images exactly as it scored its test set: one loader.

``orderlearn score``, ``active``, ``predict``, ``export`` and ``serve`` and the selection
benchmarks all start from :meth:`LoadedRun.load`, from a run folder, an exported bundle
(:mod:`.bundle_format`) or a hub id of a pushed bundle. Whatever the source, a loaded run holds
the same things: its resolved config, its model built and placed as the run placed it
(:func:`~orderlearn.runs.model_setup.place_model`, so its features match the cached ones), its
checkpoints, its :class:`~orderlearn.bank.scoring_recipe.ScoringRecipe`, its reference bank,
the :class:`~orderlearn.bank.route.BankRoute` that compares images with that bank (weights are
loaded per checkpoint there; a bundle's route reads the stored bank embeddings), the model's
preprocessing and the alignment template. Regressor and comparator runs load the same way.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from accelerate import Accelerator
from PIL import Image

import scorers
from comparators.base import Model

from orderlearn.bank.references import ReferenceBank
from orderlearn.bank.route import BankRoute, Comparisons
from orderlearn.bank.scoring_recipe import RECIPE_FILE, ScoringRecipe
from orderlearn.config import ExperimentConfig, load_config
from orderlearn.data.alignment import TEMPLATE_FILE, AlignmentTemplate, AlignmentUnavailableError, measure_template
from orderlearn.data.images import load_image
from orderlearn.engine.runtime import make_accelerator
from orderlearn.errors import DataError
from orderlearn.runs.bundle_checks import (bank_embeddings, bundle_path, check_template, check_weights, require_listed,
                                           thumbnails as stored_thumbnails, verify_checksums)
from orderlearn.runs.bundle_format import (BANK_EMBEDDINGS_FILE, HUB_ID, MANIFEST_FILE, bundle_config,
                                           bundle_is_not_a_run, check_agreement, download_bundle, read_manifest,
                                           read_references)
from orderlearn.runs.model_setup import build_model, feature_extractor, place_model
from orderlearn.types import ScoredImage

log = logging.getLogger(__name__)


class ReferenceImages:
    """The bank's images for pictures: thumbnails stored in a bundle, or the run's files (a bundle
    opens no file its references name: ``read_files`` is False there)."""

    def __init__(self, bank: ReferenceBank, thumbnails: Optional[torch.Tensor] = None, read_files: bool = True) -> None:
        self.bank, self.thumbnails, self.read_files = bank, thumbnails, read_files

    def get(self, index: int) -> Optional[Image.Image]:
        """Reference ``index`` as an image, or None when neither a thumbnail nor its file exists."""
        if self.thumbnails is not None:
            return Image.fromarray(self.thumbnails[index].numpy())
        path = self.bank.samples[index].path
        return load_image(path) if self.read_files and path.is_file() else None


@dataclass
class LoadedRun:
    """A run or bundle, ready to score (see the module docstring)."""

    source: Path  # the run or bundle folder
    config: ExperimentConfig
    model: Model  # built and placed; the route loads each checkpoint's weights into it
    bank: ReferenceBank
    accelerator: Accelerator
    route: BankRoute  # under the run's scoring recipe
    references: ReferenceImages
    template: Optional[AlignmentTemplate]
    template_note: str  # why there is no template, when there is none
    results: Optional[dict[str, Any]]  # the run's results.json (a bundle: its summary), where known
    is_bundle: bool

    # ------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: Union[str, Path], accelerator: Optional[Accelerator] = None) -> "LoadedRun":
        """A run folder, a bundle folder, or a hub id ``owner/name`` of a pushed bundle."""
        path = Path(source)
        if (path / MANIFEST_FILE).is_file():
            return cls.from_bundle(path, accelerator)
        if (path / "config.yaml").is_file():
            return cls.from_run(path, accelerator)
        if path.exists():
            raise DataError(f"{path} is neither an `orderlearn run` folder (config.yaml) nor a bundle ({MANIFEST_FILE})")
        if HUB_ID.fullmatch(str(source)):
            return cls.from_bundle(download_bundle(str(source)), accelerator)
        raise DataError(f"{source}: no such run or bundle folder (nor a hub id owner/name)")

    @classmethod
    def from_run(cls, run: Union[str, Path], accelerator: Optional[Accelerator] = None) -> "LoadedRun":
        """A run folder (a DataError when its config, scoring recipe, a checkpoint or its bank is missing);
        what commands that read the run's data load (``score``, ``active``, ``export``)."""
        run = Path(run)
        if (run / MANIFEST_FILE).is_file():
            raise DataError(bundle_is_not_a_run(run))
        if not (run / "config.yaml").is_file():
            raise DataError(f"{run} is not an `orderlearn run` folder (no config.yaml)")
        config = load_config(run / "config.yaml")
        recipe = ScoringRecipe.load(run / RECIPE_FILE)
        missing = [c for c in recipe.checkpoints if not (run / c).is_file()]
        if missing:
            raise DataError(f"{run}: checkpoint {run / missing[0]} named in {RECIPE_FILE} does not exist")
        bank = ReferenceBank.load(run / recipe.bank_file)
        template_file = run / TEMPLATE_FILE
        template = AlignmentTemplate.load(template_file) if template_file.is_file() else None
        results_file = run / "results.json"
        results = json.loads(results_file.read_text()) if results_file.is_file() else None
        return cls._assemble(run, config, recipe, bank, accelerator, None, ReferenceImages(bank), template,
                             "not measured yet", results, is_bundle=False)

    @classmethod
    def from_bundle(cls, path: Union[str, Path], accelerator: Optional[Accelerator] = None) -> "LoadedRun":
        """An exported bundle (everything mapped to the CPU; CUDA is used when present), verified
        against its checksums and range-checked file by file (:mod:`.bundle_checks`) before the
        model is built: a damaged or edited bundle is a DataError naming the file and the key."""
        path = Path(path)
        manifest = read_manifest(path)
        listed = verify_checksums(path)
        recipe = ScoringRecipe.load(path / RECIPE_FILE)
        checkpoints = [bundle_path(path, c, RECIPE_FILE, f"checkpoints[{i}]") for i, c in enumerate(recipe.checkpoints)]
        bank_file = bundle_path(path, recipe.bank_file, RECIPE_FILE, "bank_file")
        thumbnails_file = manifest["thumbnails"] and bundle_path(path, manifest["thumbnails"], MANIFEST_FILE, "thumbnails")
        template_file = manifest["alignment"] and bundle_path(path, manifest["alignment"], MANIFEST_FILE, "alignment")
        require_listed(path, listed, [MANIFEST_FILE, "config.yaml", RECIPE_FILE, BANK_EMBEDDINGS_FILE]
                       + [str(f.relative_to(path)) for f in [*checkpoints, bank_file, thumbnails_file, template_file] if f])
        config = bundle_config(path, manifest)
        bank = read_references(bank_file, recipe.low, recipe.high)
        check_agreement(path, manifest, config, recipe, bank)
        for file in checkpoints:
            check_weights(file)
        embeddings = bank_embeddings(path / BANK_EMBEDDINGS_FILE, len(checkpoints), len(bank))
        thumbnails = stored_thumbnails(thumbnails_file, len(bank)) if thumbnails_file else None
        template = check_template(AlignmentTemplate.load(template_file), template_file) if template_file else None
        return cls._assemble(path, config, recipe, bank, accelerator, embeddings,
                             ReferenceImages(bank, thumbnails, read_files=False), template,
                             manifest.get("alignment_note") or "", manifest.get("results"), is_bundle=True)

    @classmethod
    def _assemble(cls, source: Path, config: ExperimentConfig, recipe: ScoringRecipe, bank: ReferenceBank,
                  accelerator: Optional[Accelerator], bank_embeddings: Optional[Sequence[torch.Tensor]],
                  references: ReferenceImages, template: Optional[AlignmentTemplate], template_note: str,
                  results: Optional[dict[str, Any]], is_bundle: bool) -> "LoadedRun":
        """The model built and placed as the run placed it, and the bank route over it."""
        # no tracker: loading a run to score logs nothing and must not write into its folder
        quiet = dataclasses.replace(config, train=dataclasses.replace(config.train, tracker="none"))
        accelerator = accelerator or make_accelerator(quiet, source)
        model = place_model(build_model(config), config, accelerator)
        route = BankRoute(model, recipe, bank, source, feature_extractor(config, accelerator), accelerator,
                          config.train.eval_batch_size, stored_bank_embeddings=bank_embeddings)
        return cls(source, config, model, bank, accelerator, route, references, template, template_note, results,
                   is_bundle)

    # ------------------------------------------------------------------------ what it holds
    @property
    def recipe(self) -> ScoringRecipe:
        return self.route.recipe

    @property
    def checkpoints(self) -> list[Path]:
        """The checkpoint files whose probabilities the route averages."""
        return [self.source / c for c in self.recipe.checkpoints]

    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """What an image goes through before the model (the training images' preprocessing)."""
        return self.model.preprocess()

    def score(self, samples: Sequence[ScoredImage], name: str = "images",
              scorer_name: Optional[str] = None) -> tuple[Comparisons, scorers.Scores]:
        """``samples`` compared with the bank and scored as the run scored its test set (``scorer_name``:
        another scorer, with its defaults and the run's link)."""
        comparisons = self.route.comparisons(samples, name)
        return comparisons, self.route.score(comparisons, scorer_name)

    def alignment_template(self) -> AlignmentTemplate:
        """The template; for a run folder without one, measured once on the bank's training faces
        and kept as ``RUN/alignment.json``. A bundle made without one: AlignmentUnavailableError."""
        if self.template is not None:
            return self.template
        if self.is_bundle:
            raise AlignmentUnavailableError(f"{self.source} has no alignment template ({self.template_note}); "
                                            "score crops with --align none")
        self.template = measure_template([s.path for s in self.bank.samples])
        try:
            self.template.save(self.source / TEMPLATE_FILE)
        except OSError as exc:
            log.warning("alignment template not kept in %s (%s)", self.source, exc)
        return self.template
