"""What can be named in a config: the registered models, scorers and backbones, one entry each.

``orderlearn models`` prints this, the README's model table and the docs render it: one
source, read from the registries themselves (:data:`comparators.MODELS`,
:data:`scorers.SCORERS`, the backbones this project registers with timm), so a newly
registered model is listed without anyone editing a table. A model's paper (and, for one
without a ``backbone`` option, what it is built on) is declared where it registers
(:func:`comparators.register_model`); its backbone default and options come from its options
dataclass; its example is the first config under ``configs/`` that names it (the synthetic
ones first: they run on a CPU without a download).
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs (absent in an installed wheel)
SCORER_BOUNDS = ("low", "high")  # a scorer's score range comes from data.score_low/high, not from scorer.args


@dataclass(frozen=True)
class ModelEntry:
    """One registered comparator or regressor."""

    name: str
    kind: str  # comparator | regressor
    paper: Optional[str]  # None: a model of this project
    backbone: str  # the default backbone (and whether any timm model fits), or what the model is built on
    options: tuple[str, ...]  # its own keys under `model:`
    example: Optional[str]  # a config under configs/ that uses it (relative to the repository)
    summary: str  # the first line of its module's docstring


@dataclass(frozen=True)
class ScorerEntry:
    """One registered scorer."""

    name: str
    options: tuple[str, ...]  # its keys under `scorer:` (besides the config's own scorer fields)
    summary: str


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone this project adds to timm's, or one whose ImageNet weights ship offline."""

    name: str
    source: str  # registered here | offline ImageNet weights (package)
    summary: str


def model_entries(configs_dir: Path = CONFIGS_DIR) -> list[ModelEntry]:
    """Every registered model, sorted by kind then name."""
    import comparators

    examples = example_configs(configs_dir)
    entries = []
    for name in comparators.available():
        meta = comparators.MODELS.metadata(name)
        factory = comparators.factory_of(name)
        entries.append(ModelEntry(name=name, kind=meta["kind"], paper=meta.get("paper"),
                                  backbone=backbone_of(meta.get("options"), meta.get("backbone")),
                                  options=tuple(model_option_names(name)), example=examples.get(name),
                                  summary=first_line(inspect.getmodule(factory).__doc__)))
    return sorted(entries, key=lambda e: (e.kind, e.name))


def backbone_of(options: Optional[type], declared: Optional[str]) -> str:
    """The default ``backbone`` of a model's options ("any timm model" when it inherits the
    shared backbone options), else what its registration declared."""
    from comparators.backbone_options import BackboneOptions

    fields = {f.name: f for f in dataclasses.fields(options)} if options is not None else {}
    if "backbone" in fields:
        default = fields["backbone"].default
        return f"{default} (any timm model)" if issubclass(options, BackboneOptions) else str(default)
    return declared or "-"


def model_option_names(name: str) -> list[str]:
    """A model's own keys under ``model:``: its options dataclass's fields, then its factory's
    own keyword parameters (what the config loader accepts)."""
    import comparators

    options = comparators.options_of(name)
    fields = [f.name for f in dataclasses.fields(options)] if options is not None else []
    params = inspect.signature(comparators.factory_of(name)).parameters.values()
    own = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in fields]
    return fields + own


def scorer_entries() -> list[ScorerEntry]:
    import scorers

    entries = []
    for name in scorers.available():
        cls = scorers.SCORERS.get(name)
        params = [n for n in inspect.signature(cls.__init__).parameters if n != "self" and n not in SCORER_BOUNDS]
        entries.append(ScorerEntry(name=name, options=tuple(params), summary=first_line(cls.__doc__)))
    return entries


def backbone_entries() -> list[BackboneEntry]:
    """The backbones registered here, then those whose ImageNet weights ship in a package."""
    import timm

    from comparators.backbone_registry import REGISTERED
    from comparators.backbones import OFFLINE_WEIGHTS

    entries = [BackboneEntry(name, "registered by orderlearn", first_line(timm.models.model_entrypoint(name).__doc__))
               for name in REGISTERED]
    entries += [BackboneEntry(name, f"timm; ImageNet weights offline ({w.package})", "")
                for name, w in OFFLINE_WEIGHTS.items()]
    return entries


def example_configs(configs_dir: Path = CONFIGS_DIR) -> dict[str, str]:
    """Model name -> a config under ``configs_dir`` that names it: one on the synthetic data if
    there is one (it runs on a CPU without a download), else the first by path. A file that
    does not resolve, or is no experiment config (accelerate's), is skipped."""
    from orderlearn.config import canonical_sections
    from orderlearn.config_files import resolve_file
    from orderlearn.config_sections import DataConfig, ModelConfig
    from orderlearn.errors import ConfigError

    if not configs_dir.is_dir():
        return {}
    ranked: dict[str, tuple[bool, str]] = {}
    for path in sorted(configs_dir.rglob("*.yaml")):
        try:
            raw = resolve_file(path, canonical_sections)
        except ConfigError:
            continue
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            continue
        model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
        name = str(model.get("name", ModelConfig.name))
        rank = (raw["data"].get("kind", DataConfig.kind) != "synthetic", str(path.relative_to(configs_dir.parent)))
        ranked[name] = min(ranked.get(name, rank), rank)
    return {name: rank[1] for name, rank in ranked.items()}


def catalog(configs_dir: Path = CONFIGS_DIR) -> dict[str, list[dict[str, Any]]]:
    """Everything above as plain data (what ``orderlearn models --json`` prints)."""
    return {"models": [dataclasses.asdict(e) for e in model_entries(configs_dir)],
            "scorers": [dataclasses.asdict(e) for e in scorer_entries()],
            "backbones": [dataclasses.asdict(e) for e in backbone_entries()]}


def first_line(doc: Optional[str]) -> str:
    """The first sentence of a docstring's first paragraph ('' when there is none)."""
    if not doc or not doc.strip():
        return ""
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    head, sep, _ = paragraph.partition(". ")
    return head + "." if sep else paragraph


def catalog_text(data: dict[str, list[dict[str, Any]]]) -> str:
    """:func:`catalog` for a terminal: a block per model, a line per scorer and backbone."""
    lines = ["Models (config: model.name; task: the model's kind)", ""]
    for m in data["models"]:
        lines += [f"{m['name']} ({m['kind']})",
                  f"  paper     {m['paper'] or 'this project'}",
                  f"  backbone  {m['backbone']}",
                  f"  options   {', '.join(m['options']) or '-'}",
                  f"  example   {m['example'] or '-'}", ""]
    lines += ["Scorers (config: scorer.name)", ""]
    lines += [f"{s['name']}  {s['summary']}\n  options   {', '.join(s['options']) or '-'}" for s in data["scorers"]]
    lines += ["", "Backbones (config: model.backbone; any timm model name works too)", ""]
    width = max((len(b["name"]) for b in data["backbones"]), default=0)
    lines += [f"{b['name'].ljust(width)}  {b['source']}" + (f": {b['summary']}" if b["summary"] else "")
              for b in data["backbones"]]
    return "\n".join(lines)
