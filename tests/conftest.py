"""Shared fixtures: the real SCUT-FBP5500 folder (skips cleanly where ../shared is absent)
and small synthetic datasets generated once per session; and the test tiers.

Tiers: ``pytest -m "not slow"`` is the inner loop (under a minute on 2 cores); plain ``pytest``
(what CI runs) runs everything but ``benchmark`` and ``gpu`` tests, which run only when the
``-m`` expression names them (``pytest -m benchmark``). A test that reads the real datasets
is ``slow`` wherever it is, so the fast tier is the same on a machine without them.
"""
from __future__ import annotations

import re
from pathlib import Path

import os

import pytest
import torch

# no machine here reaches a model hub: fail at once instead of retrying for a minute
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def feature_cache_dir(tmp_path_factory, monkeypatch):
    """Each test gets its own empty per-image feature cache, never the user's."""
    folder = tmp_path_factory.mktemp("feature-cache")
    monkeypatch.setenv("ORDERLEARN_CACHE_DIR", str(folder))
    return folder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCUT_ROOT = SHARED / "data" / "scut-fbp5500"
AAF_MANIFEST = SHARED / "data" / "all-age-faces" / "manifest.csv"

torch.set_num_threads(2)

REAL_DATA_FIXTURES = ("scut_root", "aaf_manifest")
OPT_IN_MARKERS = ("benchmark", "gpu")


@pytest.hookimpl(tryfirst=True)  # the slow marks must be on before -m "not slow" deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests on the real datasets ``slow``; deselect ``benchmark`` and ``gpu`` tests unless
    the ``-m`` expression names them (``-m "not slow"`` alone must not bring them in)."""
    for item in items:
        if any(name in item.fixturenames for name in REAL_DATA_FIXTURES):
            item.add_marker(pytest.mark.slow)
    asked = config.getoption("markexpr") or ""
    opt_out = [m for m in OPT_IN_MARKERS if not re.search(rf"\b{m}\b", asked)]
    dropped = [item for item in items if any(item.get_closest_marker(m) for m in opt_out)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(dropped)
        items[:] = [item for item in items if item not in gone]


@pytest.fixture(scope="session")
def scut_root() -> Path:
    if not (SCUT_ROOT / "Images").is_dir():
        pytest.skip(f"real SCUT-FBP5500 not found at {SCUT_ROOT}")
    return SCUT_ROOT


@pytest.fixture(scope="session")
def aaf_manifest() -> Path:
    if not AAF_MANIFEST.is_file():
        pytest.skip(f"real All-Age-Faces not found at {AAF_MANIFEST}")
    return AAF_MANIFEST


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from orderlearn.data.synthetic import generate_synthetic_scut

    return generate_synthetic_scut(tmp_path_factory.mktemp("synthetic") / "scut", n_images=200, image_size=64, seed=0)


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from threads; on a shared 2-core machine threads only wait on
    each other (a tiny DLD run: 1.7 s with one thread, 10.6 s with two under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fit_fixed_batch():
    """``fit(model, batch, steps, lr=1e-3) -> losses``: AdamW steps of a regressor's own loss on one
    batch, the shared check that a method's forward, loss and gradients are wired together."""

    def fit(model: torch.nn.Module, batch: dict, steps: int, lr: float = 1e-3) -> list[float]:
        optim = torch.optim.AdamW(model.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            loss = model.loss(model(batch["image"]), batch)
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()))
        return losses

    return fit


# ---------------------------------------------------------------------- the LLaVA tokenizer
LLAMA2_TOKENIZER_DIR = SHARED / "models" / "llama2-tokenizer"


@pytest.fixture(scope="session")
def llama2_tokenizer_dir() -> Path:
    """The folder of the Llama-2 SentencePiece ``tokenizer.model`` (32,000 pieces), which the
    LLaVA comparators read as ``model.tokenizer``; the package ships no tokenizer and names no
    path outside itself, so tests take it from here and skip where ../shared is absent."""
    if not (LLAMA2_TOKENIZER_DIR / "tokenizer.model").is_file():
        pytest.skip(f"Llama-2 tokenizer not found at {LLAMA2_TOKENIZER_DIR}")
    return LLAMA2_TOKENIZER_DIR
