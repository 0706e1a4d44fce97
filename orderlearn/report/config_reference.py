"""Every key a config may hold, with its type, default and one line of meaning.

The rows are generated, never written by hand: the sections from the config's dataclasses
(:mod:`orderlearn.config_sections`), the ``model:`` keys from each registered model's options
dataclass and factory, the ``scorer:`` keys from each registered scorer's constructor. The
meaning of a key is read where its default is declared: the comment on its line (or the
comment block just above it) in the dataclass's source, else a ````key``: meaning`` line of the
class's (or factory's) docstring, else its base class's. So a new option documents itself by
the comment its field already carries, and the docs' configuration reference and
``orderlearn.config_reference()`` can never fall behind the loader (a test compares the rows
with the keys the loader accepts).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional, Union

REQUIRED = "required"  # the default shown for a key that has none


@dataclass(frozen=True)
class ConfigKey:
    """One config key: ``key`` as written in ``-o key=value``; ``component``: the model or scorer
    whose own option it is (``model: siamese``), '' for the config's own keys."""

    key: str
    type: str
    default: Any
    help: str
    component: str = ""


def config_reference() -> list[ConfigKey]:
    """The config's own keys (section by section), then each registered model's options, then
    each registered scorer's."""
    from orderlearn.config_sections import ExperimentConfig

    return section_keys(ExperimentConfig) + model_keys() + scorer_keys()


# ---------------------------------------------------------------------------- the config's own keys
def section_keys(cls: type, prefix: str = "") -> list[ConfigKey]:
    """The fields of a config dataclass, nested sections flattened (``train.epochs``); ``args``
    (a component's options, listed per component) is left out, and an optional section (``data.second``,
    ``bank.from``) is one key whose own keys are its section's."""
    from orderlearn.config_sections import config_key

    hints, notes = typing.get_type_hints(cls), field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        hint, key = hints[f.name], f"{prefix}{config_key(f.name)}"  # bank.from, the field from_
        if f.name == "args" and prefix.rstrip(".") in open_sections():
            continue
        if dataclasses.is_dataclass(hint):
            rows += section_keys(hint, f"{key}.")
            continue
        rows.append(ConfigKey(key, type_name(hint), default_of(f), notes.get(f.name, "")))
    return rows


def open_sections() -> tuple[str, ...]:
    from orderlearn.config_sections import OPEN_SECTIONS

    return OPEN_SECTIONS


# ---------------------------------------------------------------------------- components
def model_keys() -> list[ConfigKey]:
    """``model.<option>`` of every registered model: its options dataclass's fields, then its
    factory's own keyword parameters (a model without either takes none)."""
    import comparators

    rows = []
    for name in comparators.available():
        options, factory = comparators.options_of(name), comparators.factory_of(name)
        component = f"model: {name}"
        fields = set()
        if options is not None:
            fields = {f.name for f in dataclasses.fields(options)}
            hints, notes = typing.get_type_hints(options), field_help(options)
            rows += [ConfigKey(f"model.{f.name}", type_name(hints[f.name]), default_of(f), notes.get(f.name, ""), component)
                     for f in dataclasses.fields(options)]
        rows += parameter_keys(factory, "model.", component, skip=fields)
    return rows


def scorer_keys() -> list[ConfigKey]:
    """``scorer.<option>`` of every registered scorer (its constructor's keywords but the score
    range, which comes from ``data.score_low``/``score_high``); a dataclass option (the link)
    also lists its own keys (``scorer.link.slope``)."""
    import scorers

    from orderlearn.report.catalog import SCORER_BOUNDS

    rows = []
    for name in scorers.available():
        cls = scorers.SCORERS.get(name)
        rows += parameter_keys(cls, "scorer.", f"scorer: {name}", skip=set(SCORER_BOUNDS))
    return rows


def parameter_keys(function: Callable[..., Any], prefix: str, component: str, skip: set[str]) -> list[ConfigKey]:
    """The keyword parameters of a factory or a class's constructor as keys (help: the
    ````name``: meaning`` lines of its docstring); a parameter typed as a dataclass (``Link |
    dict | None``) also gives its fields as sub-keys."""
    target = function.__init__ if inspect.isclass(function) else function
    hints = typing.get_type_hints(target)
    notes = docstring_help(function) | (docstring_help(target) if target is not function else {})
    rows = []
    for p in inspect.signature(target).parameters.values():
        if p.name == "self" or p.name in skip or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        hint = hints.get(p.name, Any)
        default = REQUIRED if p.default is p.empty else plain(p.default)
        rows.append(ConfigKey(f"{prefix}{p.name}", type_name(hint), default, notes.get(p.name, ""), component))
        nested = [t for t in typing.get_args(hint) if dataclasses.is_dataclass(t)]
        if nested:
            inner_hints, inner_notes = typing.get_type_hints(nested[0]), field_help(nested[0])
            rows += [ConfigKey(f"{prefix}{p.name}.{f.name}", type_name(inner_hints[f.name]), default_of(f),
                               inner_notes.get(f.name, ""), component) for f in dataclasses.fields(nested[0])]
    return rows


# ---------------------------------------------------------------------------- types and defaults
def type_name(hint: Any) -> str:
    """A type hint as a reader writes it: ``int``, ``str | None``, ``list[float]``, ``mapping``."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_name(a) for a in typing.get_args(hint)))  # Link | dict: one mapping
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any"
    if dataclasses.is_dataclass(hint):
        return "mapping"
    if origin is dict or hint is dict:
        return "mapping"
    if origin in (list, tuple):
        args = typing.get_args(hint)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_name(args[0])}]"
        if origin is tuple:
            return f"list of {len(args)} ({', '.join(type_name(a) for a in args)})"
        return f"list[{type_name(args[0])}]" if args else "list"
    return getattr(hint, "__name__", str(hint))


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return plain(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return plain(f.default_factory())  # type: ignore[misc]
    return REQUIRED


def plain(value: Any) -> Any:
    """A default as YAML would write it (tuples as lists, a dataclass as its mapping)."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------- help lines
def field_help(cls: type) -> dict[str, str]:
    """Field name -> its meaning: the comment on the field's line or the block just above it in
    the class's source, else a ````name``: ...`` line of its docstring; inherited fields take
    their base class's when the subclass gives none."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            found.update({k: v for k, v in (docstring_help(klass) | _source_comments(klass)).items() if v})
    return found


@lru_cache(maxsize=None)
def _source_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = node.lineno
        text = comments.get(line) if line in comments and lines[line - 1].lstrip()[:1] != "#" else None
        if text is None:  # the comment block just above the field
            block, above = [], line - 1
            while above in comments and lines[above - 1].lstrip().startswith("#"):
                block.insert(0, comments[above])
                above -= 1
            text = " ".join(block)
        if text:
            found[node.target.id] = text
    return found


DOC_OPTION = re.compile(r"^``(\w+)``(?:/``\w+``)*:\s+(.*)$")


def docstring_help(obj: Any) -> dict[str, str]:
    """The ````name``: meaning`` lines of a docstring (a line may continue on the lines below
    it, indented or not, until a blank line or the next such line)."""
    doc = inspect.getdoc(obj) or ""
    found: dict[str, str] = {}
    current: Optional[str] = None
    for line in doc.splitlines():
        stripped = line.strip()
        match = DOC_OPTION.match(stripped)
        if match:
            current = match.group(1)
            found[current] = match.group(2)
        elif current and stripped:
            found[current] += " " + stripped
        else:
            current = None
    return found
