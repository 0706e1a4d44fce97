"""Config files that inherit: ``base:`` chains resolved into one mapping, and ``-o`` overrides.

A config may name another as its ``base`` (a path relative to the file that names it) and hold
only its differences: the variant's mappings merge into the base's, key by key and at any depth,
while lists and scalars replace the base's value. A base may have a base of its own. ``unset``
(a list of dotted keys) removes keys the base sets that the variant must not inherit, e.g. a
model option of the base's model that the variant's model does not take; it applies to the
resolved base, before the variant's own keys merge in.

Everything here works on plain mappings read from YAML; typing and validation happen after the
chain is resolved and the overrides applied (``orderlearn.config``), so a run folder's saved
``config.yaml`` is the resolved config and needs no other file. Every error is a one-line
:class:`ConfigError` that names the file and the key (``base``, ``unset``, or the ``-o`` key).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from orderlearn.errors import ConfigError

BASE_KEY = "base"
UNSET_KEY = "unset"

# Puts a section's keys into one canonical spelling before layers merge (``model.X`` and
# ``model.args.X`` are the same option); given by orderlearn.config, which knows the sections.
Canonical = Callable[[dict[str, Any]], dict[str, Any]]


def one_line(text: str) -> str:
    """A message on one line: YAML's and components' multi-line texts joined with spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def yaml_problem(exc: yaml.YAMLError) -> str:
    """``line 3, column 5: found character '\\t' that cannot start any token`` from a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return one_line(f"{where}{problem}")


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """One file's top-level mapping (an empty file is an empty mapping)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {one_line(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(raw).__name__}")
    return raw


def resolve_file(path: Path, canonical: Canonical, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping ``path`` stands for: its ``base`` chain resolved, merged, without ``base``/``unset``.

    ``_chain`` holds the files that led here (each one names the next as its base), for the cycle check."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in {p.resolve() for p in _chain}:
        loop = " -> ".join(str(p) for p in (*_chain, path))
        raise ConfigError(f"{_chain[-1]}: base: inheritance cycle {loop}")
    raw = read_yaml_mapping(path)
    base_name = raw.pop(BASE_KEY, None)
    unset = raw.pop(UNSET_KEY, None)
    try:
        raw = canonical(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if base_name is None:
        if unset is not None:
            raise ConfigError(f"{path}: unset: only a config with a base can unset inherited keys")
        return raw
    base = resolve_file(_base_path(path, base_name), canonical, (*_chain, path))
    for key in _unset_keys(path, unset):
        _delete(base, key, canonical, path)
    return deep_merge(base, raw)


def file_setting(path: Path, key: str, canonical: Canonical) -> Optional[Path]:
    """The file of ``path``'s chain whose value of dotted ``key`` the resolved config holds: the
    nearest one that sets it (``path`` itself first), or None. Used only to word an error, so a
    file that cannot be read here simply ends the search."""
    parts = canonical_path(key.split("."), canonical)
    try:
        raw = read_yaml_mapping(path)
        base_name = raw.pop(BASE_KEY, None)
        raw.pop(UNSET_KEY, None)
        node: Any = canonical(raw)
        for part in parts:
            node = node[part] if isinstance(node, dict) and part in node else _ABSENT
        if node is not _ABSENT:
            return path
        return file_setting(_base_path(path, base_name), key, canonical) if base_name is not None else None
    except (ConfigError, RecursionError):
        return None


_ABSENT = object()


def _base_path(path: Path, base_name: Any) -> Path:
    """The base file, relative to the folder of the file that names it."""
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: base: expected a file name, got {base_name!r}")
    target = path.parent / base_name
    if not target.is_file():
        raise ConfigError(f"{path}: base: {base_name} does not exist (looked for {target})")
    return target


def _unset_keys(path: Path, unset: Any) -> list[str]:
    if unset is None:
        return []
    if not isinstance(unset, list) or not all(isinstance(k, str) and k for k in unset):
        raise ConfigError(f"{path}: unset: expected a list of dotted keys, got {unset!r}")
    return unset


def _delete(raw: dict[str, Any], key: str, canonical: Canonical, path: Path) -> None:
    """Remove dotted ``key`` from the resolved base; a key the base does not set is a typo."""
    parts = canonical_path(key.split("."), canonical)
    node: Any = raw
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ConfigError(f"{path}: unset: {key} is not set by the base config")
    del node[parts[-1]]


def canonical_path(parts: list[str], canonical: Canonical) -> list[str]:
    """The canonical spelling of a dotted key (``model.image_size`` -> ``model.args.image_size``)."""
    if len(parts) < 2:
        return parts
    probe = canonical({parts[0]: {parts[1]: None}})
    section = probe.get(parts[0])
    if isinstance(section, dict) and parts[1] not in section:
        (inner,) = section  # the one sub-section the key moved into, e.g. args
        return [parts[0], inner, *parts[1:]]
    return parts


def deep_merge(base: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    """``variant`` over ``base``: mappings merge key by key at any depth; anything else replaces."""
    merged = dict(base)
    for key, value in variant.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(override: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (['train', 'epochs'], 3); the value is read as YAML, like in a file."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-o {override!r}: an override must look like key.sub=value")
    key = key.strip()
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"-o {key}: empty part in the dotted key")
    if parts[0] in (BASE_KEY, UNSET_KEY):
        raise ConfigError(f"-o {key}: {parts[0]} belongs in a config file; -o applies to the resolved config")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"-o {key}: value {text!r} is not valid YAML: {yaml_problem(exc)}") from None
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: Optional[list[str]], canonical: Canonical) -> dict[str, Any]:
    """The resolved mapping with every ``-o key.sub=value`` set, in order."""
    for override in overrides or []:
        parts, value = parse_override(override)
        _set_path(raw, canonical_path(parts, canonical), value, ".".join(parts))
    return raw


def _set_path(raw: dict[str, Any], keys: list[str], value: Any, shown: str) -> None:
    for key in keys[:-1]:
        raw = raw.setdefault(key, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"-o {shown}: {key} is not a section")
    raw[keys[-1]] = value
