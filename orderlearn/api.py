"""The Python twin of the command line: score photos, run a config, make the results table.

Each call runs the very function its command runs, so the numbers are the command's numbers
and a bad input is the command's one-line error (:class:`~orderlearn.errors.ConfigError`,
:class:`~orderlearn.errors.DataError`, ...)::

    import orderlearn

    model = orderlearn.load("runs/demo")             # orderlearn predict ... --model runs/demo
    rows = model.predict(["me.jpg", "photos/"])      # [Prediction(file, score, std, lower95, upper95, percentile, faces_found)]

    results = orderlearn.run("configs/synthetic/demo.yaml", **{"train.epochs": 1})  # orderlearn run -o train.epochs=1
    table = orderlearn.compare(["runs/a", "runs/b"])  # orderlearn compare runs/a runs/b (rows only, unless out=)

Importing :mod:`orderlearn` imports none of this (the names are resolved on first use), so the
vocabulary stays light; this module imports the pipeline when it is first used.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from orderlearn.config import ExperimentConfig
from orderlearn.runs.launch import override_lines, run_config, run_mapping
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.predictions import Prediction, check_align, predict

PathLike = Union[str, Path]

__all__ = ["Prediction", "Predictor", "compare", "load", "models", "run"]


@dataclass
class Predictor:
    """A run, a bundle or a hub model, loaded to score photos (what :func:`load` returns)."""

    loaded: LoadedRun  # everything the run or bundle holds: config, model, bank, scoring recipe

    @property
    def source(self) -> Path:
        """The run or bundle folder (a hub id's: where it was downloaded)."""
        return self.loaded.source

    @property
    def config(self) -> ExperimentConfig:
        return self.loaded.config

    @property
    def results(self) -> Optional[dict[str, Any]]:
        """The run's results (a bundle: its summary), where known."""
        return self.loaded.results

    def predict(self, images: Union[PathLike, Sequence[PathLike]], align: str = "mtcnn", one_face: bool = False,
                skip_failed: bool = False, references: Optional[PathLike] = None) -> list[Prediction]:
        """The score of each image file named or under a named folder, as ``orderlearn predict``
        prints it: one :class:`Prediction` per photo (score, posterior ``std``, 95% interval
        ``lower95``–``upper95``, ``percentile`` among the bank's references, ``faces_found``).

        ``align``: ``"mtcnn"`` (the command's default) aligns each face like the training faces
        (needs the ``align`` extra); ``"none"`` scores the files as they are. ``one_face``: a photo
        with several faces cannot be scored (default: the largest face). A photo that cannot be
        scored is a one-line DataError naming each such photo, raised before anything is scored;
        with ``skip_failed`` the others are scored and it is left out.

        ``references``: a manifest (``path,score[,std]``) or a folder holding one: score on its
        scale (``predict --references``; each :class:`Prediction` then also has ``direct_score``
        and ``direct_mapped`` where the run has a direct route)."""
        from orderlearn.bank.own_references import read_references

        check_align(align, "align")
        bank = read_references(references) if references is not None else None
        inputs = [Path(images)] if isinstance(images, (str, Path)) else [Path(i) for i in images]
        with tempfile.TemporaryDirectory(prefix="orderlearn-crops-") as work:
            return predict(self.loaded, inputs, Path(work), align, one_face, all_or_none=not skip_failed,
                           references=bank).items


def load(source: PathLike) -> Predictor:
    """A run folder (``output_dir`` of a run), an exported bundle folder, or the hub id
    ``owner/name`` of a pushed bundle, ready to score photos (``--model`` of ``orderlearn predict``)."""
    return Predictor(LoadedRun.load(source))


def run(config: Union[PathLike, ExperimentConfig, Mapping[str, Any]], overrides: Optional[Mapping[str, Any]] = None, *,
        resume: bool = False, overwrite: bool = False, **dotted: Any) -> dict[str, Any]:
    """Train, build the bank, score and evaluate, as ``orderlearn run`` does; the results dictionary.

    ``config``: a YAML file (its ``base:`` chain resolved), a loaded :class:`ExperimentConfig`
    or a mapping of sections. Overrides are the command's ``-o key.sub=value``, by dotted key,
    as a mapping (``{"train.epochs": 1}``) and/or keywords (``**{"train.epochs": 1}``; a
    keyword wins over the same key in the mapping). A non-empty ``output_dir`` is continued
    (``resume``), emptied first (``overwrite``) or refused."""
    lines = override_lines({**(overrides or {}), **dotted})
    if isinstance(config, (str, Path)):
        return run_config(config, lines, resume, overwrite)
    return run_mapping(config, lines, resume, overwrite)


def compare(runs: Sequence[PathLike], out: Optional[PathLike] = None,
            with_table: Optional[PathLike] = None) -> list[dict[str, Any]]:
    """The rows of the direct-vs-order-learned table over run folders (fold mean ± std), as
    ``orderlearn compare`` makes it; with ``out``, its files and plots are written there too.
    ``with_table``: an earlier ``compare.csv`` whose other methods' rows are kept."""
    from orderlearn.report.tables import compare_runs, compare_table

    folders = [Path(r) for r in runs]
    earlier = None if with_table is None else Path(with_table)
    if out is None:
        return compare_table(folders, earlier).rows
    return compare_runs(folders, Path(out), earlier)["rows"]


def models() -> dict[str, list[dict[str, Any]]]:
    """The registered models (name, kind, paper, backbone, options, example config), scorers
    and backbones, as ``orderlearn models --json`` prints them."""
    from orderlearn.report.catalog import catalog

    return catalog()
