"""The model card of a bundle: ``README.md`` in the Hugging Face layout (YAML front matter, then
what the model does, how to use it, its data and licence, its results, intended use and limits).

The data section names the licence of the training set: SCUT-FBP5500 is released for
non-commercial research only, and so is any model trained on it.
"""
from __future__ import annotations

from typing import Any

import yaml

from comparators.backbones import weights_source

from orderlearn.bank.references import ReferenceBank
from orderlearn.config import ExperimentConfig
from orderlearn.report.markdown import markdown_table

SCUT_LICENCE = ("SCUT-FBP5500 (Liang et al., ICPR 2018, https://github.com/HCIILAB/SCUT-FBP5500-Database-Release) "
                "is released for **non-commercial research purposes only**; this model is trained on it and "
                "inherits that restriction. The reference thumbnails in this bundle are SCUT-FBP5500 images.")


def model_card(config: ExperimentConfig, manifest: dict[str, Any], bank: ReferenceBank) -> str:
    return "\n".join([front_matter(config), body(config, manifest, bank)])


def front_matter(config: ExperimentConfig) -> str:
    meta: dict[str, Any] = {
        "library_name": "orderlearn",
        "pipeline_tag": "image-classification",
        "tags": ["order-learning", "bradley-terry", "pairwise-comparison", config.task, config.model.name],
        "metrics": ["pearsonr", "mae", "rmse"],
    }
    if config.data.kind == "scut":
        meta.update({"license": "other", "license_name": "scut-fbp5500-non-commercial", "datasets": ["SCUT-FBP5500"],
                     "tags": meta["tags"] + ["facial-beauty-prediction"]})
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def body(config: ExperimentConfig, manifest: dict[str, Any], bank: ReferenceBank) -> str:
    low, high = manifest["score_range"]
    lines = [
        f"# {config.name}",
        "",
        f"An order-learning model ({config.model.name}, a {config.task}) that scores a face from {low:g} to {high:g} "
        f"by comparing it with {len(bank)} scored reference faces (FIRST / SECOND / SIMILAR) and maximising a "
        f"Bradley–Terry likelihood over the unknown score (scorer `{config.scorer.name}`, settings in `scorer.json`).",
        "",
        "## How to use",
        "",
        "```bash",
        "pip install orderlearn            # plus, for face alignment: pip install --no-deps facenet-pytorch==2.6.0",
        "orderlearn predict photo.jpg --model THIS_FOLDER --plot pictures/",
        "orderlearn predict crops/ --model THIS_FOLDER --align none     # images already framed like the training faces",
        "orderlearn serve --model THIS_FOLDER                           # a web page (pip install orderlearn[serve])",
        "```",
        "",
        "A photo is aligned first (MTCNN's five landmarks mapped onto the mean landmarks of the training faces, "
        "`alignment.json`), then compared with the bank through the stored reference embeddings: one backbone "
        "pass per photo, no reference images needed.",
        "",
        "## Training data and licence",
        "",
        data_section(config),
        "",
        "## Pretrained weights and their licence",
        "",
        weights_section(config),
        "",
        "## Results of the run this bundle was exported from",
        "",
        results_section(manifest.get("results")),
        "",
        "## Intended use and limits",
        "",
        "- Research on ordinal attribute estimation and order learning; reproducing published protocols.",
        "- Not for judging, ranking or selecting people. A score is the averaged opinion of the dataset's raters "
        "about a face, not a property of the person, and it inherits their biases.",
        "- Trained faces: frontal, well-lit portraits of the training set's populations and ages; "
        "photos outside that range (profile views, occlusion, children, other populations) are out of distribution "
        "and the score means little there. The 95% interval is calibrated on validation faces of the training set only.",
        "- The percentile printed by `orderlearn predict` is among the bank's references, which are spread evenly "
        "over the score range, not among the population.",
        "",
        "## Files",
        "",
        "`bundle.json` (contents), `config.yaml` (resolved run config), `weights/*.safetensors` "
        "(per checkpoint" + (", every tensor of the model)" if manifest["full_weights"] else
                             ": the trained tensors only; the base model comes from the config's checkpoint id)") + ", "
        "`scorer.json` (scorer, link, interval scale), `references.json` and `bank_embeddings.safetensors` (the bank), "
        + ("`reference_thumbnails.safetensors`, " if manifest.get("thumbnails") else "")
        + ("`alignment.json` (alignment template)." if manifest.get("alignment") else
           f"no alignment template ({manifest.get('alignment_note')})."),
        "",
    ]
    return "\n".join(lines)


def data_section(config: ExperimentConfig) -> str:
    data = config.data
    if data.kind == "scut":
        return f"SCUT-FBP5500, split `{data.split}` (validation: {data.val_fraction:.0%} of the training files). {SCUT_LICENCE}"
    if data.kind == "synthetic":
        return "Generated synthetic faces (`orderlearn synth`): a pipeline check; its scores say nothing about real faces."
    return f"A manifest dataset ({data.root}, split `{data.split}`); see that dataset's own licence before any use."


def weights_section(config: ExperimentConfig) -> str:
    """What the model started from: each backbone branch's weights and licence (a bundle's
    weights contain them, fine-tuned or not), or the base model a model without a backbone
    option names in ``config.yaml``."""
    args = config.model.args
    if "backbone" not in args:
        return ("The base model named in `config.yaml` (loaded by its id or path); its own licence applies "
                "to the weights this bundle adds to it.")
    return "\n".join(f"- {line}" for line in weights_source(args["backbone"], str(args.get("weights", "imagenet"))))


def results_section(results: Any) -> str:
    if not results:
        return "No results.json was found in the run folder."
    rows = []
    if results.get("direct"):
        rows.append({"route": f"direct ({results.get('direct_how', '')})", **results["direct"]})
    if results.get("order_learned"):
        rows.append({"route": "order-learned (bank + BT)", **results["order_learned"]})
    table = markdown_table(rows, ["route", "pc", "mae", "rmse", "spearman", "n"])
    coverage = results.get("interval_coverage")
    extra = f"\n\n95% interval coverage on the test split: {coverage:.3f}" if isinstance(coverage, float) else ""
    return f"Test split of the run (PC: Pearson correlation):\n\n{table}{extra}"
