"""The generated parts of the docs, rendered at build time from the code that owns their data.

A page asks for a part with a marker line, ``<!-- generated: NAME -->``; :func:`on_page_markdown`
(an mkdocs hook, ``hooks:`` in ``mkdocs.yml``) replaces it with the rendering. The data is never
copied into the docs: the model table comes from :func:`orderlearn.report.catalog.catalog` (the
registries, what ``orderlearn models`` prints) and the configuration reference from
``orderlearn.config_reference()`` (the config dataclasses and each registered model's and scorer's options).
Where the function a part needs is missing, the build stops with one line saying which, instead
of rendering a page that says nothing.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


class MissingGenerator(RuntimeError):
    """The function that renders a generated part is not in this checkout."""


def _on_path() -> None:
    """Import the project from this checkout (``mkdocs build`` may run without it installed)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def _find(module: str, name: str, part: str) -> Callable[..., Any]:
    _on_path()
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise MissingGenerator(f"docs part '{part}' needs {module}.{name}(), which this checkout lacks ({exc})") from None
    return found


def _cell(text: Any) -> str:
    return str(text if text not in (None, "") else "-").replace("|", "\\|").replace("\n", " ")


def models_table(data: dict[str, list[dict[str, Any]]]) -> str:
    """The registered models as one Markdown table (README and docs): name, kind, paper,
    backbone, example config."""
    rows = ["| model | kind | paper | backbone | example config |", "| --- | --- | --- | --- | --- |"]
    for m in data["models"]:
        example = f"`{m['example']}`" if m.get("example") else "-"
        rows.append(f"| `{m['name']}` | {m['kind']} | {_cell(m.get('paper') or 'this project')} | {_cell(m['backbone'])} | {example} |")
    return "\n".join(rows)


def scorers_and_backbones(data: dict[str, list[dict[str, Any]]]) -> str:
    """The registered scorers and the backbones this project adds, as two tables."""
    rows = ["| scorer | options | what it does |", "| --- | --- | --- |"]
    rows += [f"| `{s['name']}` | {_cell(', '.join(s['options']))} | {_cell(s['summary'])} |" for s in data["scorers"]]
    rows += ["", "| backbone | source | what it is |", "| --- | --- | --- |"]
    rows += [f"| `{b['name']}` | {_cell(b['source'])} | {_cell(b['summary'])} |" for b in data["backbones"]]
    return "\n".join(rows)


def catalog() -> dict[str, list[dict[str, Any]]]:
    return _find("orderlearn.report.catalog", "catalog", "models")()


def config_keys() -> list[Any]:
    """Every key the loader accepts, from ``orderlearn.config_reference()`` (rows with ``key``,
    ``type``, ``default``, ``help`` and ``component``: '' for the config's own keys, else the model
    or scorer whose option it is)."""
    generator = _find("orderlearn", "config_reference", "config-reference")
    rows = list(generator())
    if not rows:
        raise MissingGenerator("docs part 'config-reference': orderlearn.config_reference() returned no keys")
    return rows


def _default(value: Any) -> str:
    return "-" if value is None else f"`{value}`" if value != "" else "`''`"


def config_reference_markdown(rows: list[Any]) -> str:
    """One table per section of the config (``data``, ``model``, ...), then one per model and
    per scorer for their own options: key, type, default, meaning."""
    groups: dict[str, list[Any]] = {}
    for row in rows:
        title = row.component or (row.key.split(".", 1)[0] if "." in row.key else "top level")
        groups.setdefault(title, []).append(row)
    out = []
    for title, keys in groups.items():
        out += [f"## `{title}`" if title != "top level" else "## Top level", "",
                "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        out += [f"| `{r.key}` | {_cell(r.type)} | {_cell(_default(r.default))} | {_cell(r.help)} |" for r in keys]
        out.append("")
    return "\n".join(out)


PARTS: dict[str, Callable[[], str]] = {
    "models": lambda: models_table(catalog()),
    "scorers-and-backbones": lambda: scorers_and_backbones(catalog()),
    "config-reference": lambda: config_reference_markdown(config_keys()),
}


def render(markdown: str) -> str:
    """``markdown`` with every marker replaced by its part; an unknown part is an error."""
    def part(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name not in PARTS:
            raise MissingGenerator(f"unknown docs part {name!r} (known: {', '.join(PARTS)})")
        return PARTS[name]()
    return MARKER.sub(part, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: render the generated parts of a page (a missing generator stops the build)."""
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown)
    except MissingGenerator as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from None


README_BLOCK = re.compile(r"(<!-- generated: models -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)


def readme_with_models(readme: str, table: str) -> str:
    """``readme`` with the model table between its markers replaced by ``table``."""
    if not README_BLOCK.search(readme):
        raise MissingGenerator("README.md has no '<!-- generated: models -->' ... '<!-- end generated -->' block")
    return README_BLOCK.sub(lambda m: m.group(1) + table + "\n" + m.group(3), readme, count=1)


def readme_models_block(readme: str) -> str:
    """The model table the README holds now (between its markers)."""
    match = README_BLOCK.search(readme)
    return match.group(2).strip() if match else ""


if __name__ == "__main__":  # python docs/hooks/generated.py: rewrite the README's model table from the registries
    path = REPO / "README.md"
    path.write_text(readme_with_models(path.read_text(encoding="utf-8"), models_table(catalog())), encoding="utf-8")
    print(f"{path}: model table rewritten")
