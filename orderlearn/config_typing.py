"""YAML values into typed dataclasses, every error naming the dotted key it is about.

A mapping becomes a dataclass by its type hints (:func:`build_section`): unknown keys are an
error with a did-you-mean (:func:`check_names`), values are coerced by the field's hint
(:func:`coerce`: int, float, str, bool, lists, tuples, mappings, optional and nested sections),
and a ``ValueError``/``TypeError`` from the dataclass's own checks becomes a
:class:`ConfigError` keyed by the field it names (:func:`keyed`). The config's sections and
the components' options dataclasses (a model's, a scorer's link) are built the same way.

One rule for every float a config or an options dataclass holds: it is finite. YAML reads
``.inf`` and ``.nan`` as floats, and no option means anything by them (a score range, a
learning rate, a margin or a weight of inf trains on NaN or crashes after the data is read),
so :func:`coerce` refuses them where they enter, whatever the field.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Union

from orderlearn.config_files import one_line
from orderlearn.config_sections import config_key, field_name
from orderlearn.errors import ConfigError


def check_names(args: dict[str, Any], names: set[str], prefix: str) -> None:
    """Every key of ``args`` is one of ``names``; else a ConfigError with the closest name."""
    for key in args:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {sorted(names)}"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")


def build_section(cls: type, raw: Any, prefix: str) -> Any:
    """Dataclass ``cls`` from a mapping: unknown keys and wrong types name the key; a ValueError
    from the dataclass's own checks becomes a ConfigError naming the section."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    keys = {config_key(f.name) for f in dataclasses.fields(cls)}  # bank.from is the field from_
    check_names(raw, keys, prefix)
    kwargs = {field_name(key): coerce(hints[field_name(key)], value, f"{prefix}{key}") for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(keyed(str(exc), keys, prefix)) from None


def keyed(message: str, names: set[str], prefix: str) -> str:
    """``"lr: must be > 0"`` from a component becomes ``"optim.lr: must be > 0"``; a message that
    names one of the section's fields elsewhere (``"Link slope must be > 0"``) is keyed by it."""
    message = one_line(message)
    head, sep, _ = message.partition(":")
    if sep and head.strip() in names:
        return prefix + message.lstrip()
    named = mentioned(message, names)
    if len(named) == 1:
        return f"{prefix}{named[0]}: {message}"
    return f"{prefix.rstrip('.') or 'config'}: {message}"


def mentioned(message: str, names: set[str]) -> list[str]:
    """The ``names`` that occur in ``message`` as whole words (which argument a check is about)."""
    return sorted(n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", message))


def coerce(hint: Any, value: Any, key: str) -> Any:
    """``value`` as type ``hint`` (YAML's ``1`` is a fine float, ``"1e-3"`` too); else a ConfigError naming ``key``."""
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value, f"{key}.")
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        if len(options) > 2 and dataclasses.is_dataclass(options[0]) and isinstance(value, dict):
            return build_section(options[0], value, f"{key}.")  # e.g. a scorer's link: Link | dict | None
        scalars = [o for o in options if o in (int, str, bool, float)]
        if len(scalars) > 1 and type(value) in scalars:  # e.g. a unit name or an index: str | int
            return finite(value, key) if type(value) is float else value
        sequences = [o for o in options if typing.get_origin(o) in (list, tuple)]
        if sequences and isinstance(value, (list, tuple)):  # e.g. one unit or a list of them: str | int | tuple[...]
            hint = sequences[0]
        else:
            hint = next(o for o in options if o is not type(None))
        if dataclasses.is_dataclass(hint):  # an optional section, e.g. data.second
            return build_section(hint, value, f"{key}.")
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(coerce(items[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(items) != len(value):
            raise ConfigError(f"{key}: expected {len(items)} values, got {value!r}")
        return tuple(coerce(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(items, value)))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return finite(float(value), key)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"{key}: expected a finite number, got {value}") from None
    if hint is float and isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return finite(number, key)
    if hint in (int, str, bool, float) and type(value) is hint:
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def finite(value: float, key: str) -> float:
    """``value`` when it is a finite number, else a ConfigError naming ``key`` (the one rule for floats)."""
    if not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value}")
    return value
