"""The docs site builds with ``mkdocs build --strict`` (no broken link, reference or generated part),
and its generated parts come from the code that owns their data (``docs/hooks/generated.py``)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _generated():
    """docs/hooks/generated.py, imported from its file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_generated", REPO / "docs" / "hooks" / "generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_docs_site_builds_with_strict(tmp_path):
    missing = [name for name in DOCS_TOOLS if importlib.util.find_spec(name.split(".")[0]) is None
               or importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    for page in ("index.html", "quickstart/index.html", "configuration/index.html", "models/index.html",
                 "api/python/index.html", "results/index.html", "design/index.html"):
        assert (site / page).is_file(), page
    assert "<!-- generated:" not in (site / "configuration" / "index.html").read_text(encoding="utf-8")


def test_a_page_asking_for_an_unknown_part_is_an_error():
    generated = _generated()
    with pytest.raises(generated.MissingGenerator, match="unknown docs part 'nope'"):
        generated.render("text\n<!-- generated: nope -->\n")
    assert generated.render("no parts here\n") == "no parts here\n"


def test_a_missing_generator_stops_the_build_with_one_line(monkeypatch):
    generated = _generated()

    def absent(name, *args, **kwargs):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(generated.importlib, "import_module", absent)
    with pytest.raises(generated.MissingGenerator, match=r"orderlearn.config_reference\(\)"):
        generated.render("<!-- generated: config-reference -->")
    with pytest.raises(generated.MissingGenerator, match="orderlearn.report.catalog.catalog"):
        generated.render("<!-- generated: models -->")


def test_the_model_table_renders_each_entry_of_the_catalog():
    generated = _generated()
    data = {"models": [{"name": "a", "kind": "comparator", "paper": None, "backbone": "x | y", "example": "configs/a.yaml"},
                       {"name": "b", "kind": "regressor", "paper": "P", "backbone": "z", "example": None}]}
    table = generated.models_table(data).splitlines()
    assert table[2] == "| `a` | comparator | this project | x \\| y | `configs/a.yaml` |"
    assert table[3] == "| `b` | regressor | P | z | - |"
    readme = "top\n<!-- generated: models -->\nold\n<!-- end generated -->\nbottom\n"
    assert generated.readme_with_models(readme, "NEW") == "top\n<!-- generated: models -->\nNEW\n<!-- end generated -->\nbottom\n"
    assert generated.readme_models_block(readme) == "old"


def test_the_configuration_reference_renders_a_table_per_section_and_component():
    from types import SimpleNamespace as Row

    generated = _generated()
    rows = [Row(key="seed", type="int", default=0, help="the run's seed", component=""),
            Row(key="data.kind", type="str", default="scut", help="which reader", component=""),
            Row(key="data.limit_train", type="int | None", default=None, help="", component=""),
            Row(key="model.hidden", type="int", default=64, help="head width", component="model: siamese")]
    text = generated.config_reference_markdown(rows)
    assert "## Top level" in text and "## `data`" in text and "## `model: siamese`" in text
    assert "| `data.kind` | str | `scut` | which reader |" in text
    assert "| `data.limit_train` | int \\| None | - | - |" in text
