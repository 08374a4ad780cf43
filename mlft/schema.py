"""A small checker of plain config dicts against typed dataclasses.

OmegaConf structured configs stop at the first error and raise with a traceback; users want every
problem at once, each as `key: problem (allowed: ...)`. This module walks a dataclass's type hints
and reports every mismatch, then builds the typed object.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")

MISSING_VALUE = "???"


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list[{type_name(get_args(tp)[0])}]"
    if origin is dict:
        k, v = get_args(tp)
        return f"dict[{type_name(k)}, {type_name(v)}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def check_value(value: Any, tp: Any, key: str) -> list[str]:
    """Returns the problems of `value` against type `tp`, each prefixed by `key`."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return [f"{key}: expected a mapping, got {value!r}"]
        return check_fields(value, typing.cast(type, tp), prefix=f"{key}.")
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return []
        return [f"{key}: {value!r} is not allowed (allowed: {', '.join(str(a) for a in allowed)})"]
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return []
        others = [option for option in options if option is not type(None)]
        if len(others) == 1:  # X | None: the problem with X itself is the helpful one
            return check_value(value, others[0], key)
        for option in options:
            if option is type(None):
                continue
            if not check_value(value, option, key):
                return []
        return [f"{key}: expected {type_name(tp)}, got {value!r}"]
    if origin is list:
        if not isinstance(value, list):
            hint = f" (a list of one: {key}=[{value}])" if isinstance(value, (str, int, float)) else ""
            return [f"{key}: expected {type_name(tp)}, got {value!r}{hint}"]
        (item,) = get_args(tp)
        return [p for i, v in enumerate(value) for p in check_value(v, item, f"{key}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{key}: expected {type_name(tp)}, got {value!r}"]
        _, item = get_args(tp)
        return [p for k, v in value.items() for p in check_value(v, item, f"{key}.{k}")]
    if tp is Any:
        return []
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    return [] if ok else [f"{key}: expected {type_name(tp)}, got {value!r}"]


def check_fields(data: dict[str, Any], schema: type, prefix: str = "") -> list[str]:
    """Checks a mapping against a dataclass: unknown keys, missing required keys, types."""
    hints = get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    problems = []
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{prefix}{key}: unknown key{hint} (allowed: {', '.join(fields)})")
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if name not in data or data[name] == MISSING_VALUE:
            if required or data.get(name) == MISSING_VALUE:
                problems.append(f"{prefix}{name}: required, expected {type_name(hints[name])}")
            continue
        problems += check_value(data[name], hints[name], f"{prefix}{name}")
    return problems


def build(schema: type[T], data: dict[str, Any]) -> T:
    """Builds a dataclass from an already checked mapping (nested dataclasses included)."""
    hints = get_type_hints(schema)
    kwargs = {}
    for field in dataclasses.fields(schema):  # type: ignore[arg-type]
        if field.name not in data:
            continue
        value, tp = data[field.name], hints[field.name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = build(typing.cast(type, tp), value)
        elif get_origin(tp) is list and dataclasses.is_dataclass(get_args(tp)[0]) and isinstance(value, list):
            value = [build(typing.cast(type, get_args(tp)[0]), item) for item in value]
        elif isinstance(value, float) and tp is float:
            pass
        elif isinstance(value, int) and not isinstance(value, bool) and float in get_args(tp) + (tp,):
            value = float(value)
        kwargs[field.name] = value
    return schema(**kwargs)


def non_finite(config: Any, prefix: str = "") -> list[str]:
    """Every number of a config that is NaN or infinite (YAML reads `nan` and `.inf` as numbers): refused before
    anything is created, as no key means anything with them."""
    problems = []
    for f in dataclasses.fields(config):
        value, key = getattr(config, f.name), f"{prefix}{f.name}"
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            if dataclasses.is_dataclass(item):
                problems += non_finite(item, where + ".")
            elif isinstance(item, float) and not math.isfinite(item):
                problems.append(f"{where}: must be a finite number, got {item}")
    return problems


def parse_key_values(args: list[str], schema: type[T], command: str) -> T:
    """Parses `key=value` arguments (values in YAML syntax) against a dataclass; every problem at once."""
    from omegaconf import OmegaConf

    from mlft.errors import ConfigError

    bad = [a for a in args if "=" not in a or a.startswith("-")]
    if bad:
        raise ConfigError([f"{a}: expected key=value (mlft {command} --help lists the keys)" for a in bad])
    data: dict[str, Any] = OmegaConf.to_container(OmegaConf.from_dotlist(args), resolve=True)  # type: ignore[assignment]
    problems = check_fields(data, schema)
    if problems:
        raise ConfigError(problems)
    parsed = build(schema, data)
    problems = non_finite(parsed) + [
        f"{key}: must be >= 1, got {getattr(parsed, key)}"
        for key in COUNTS
        if isinstance(getattr(parsed, key, None), int) and getattr(parsed, key) < 1
    ]
    if problems:
        raise ConfigError(problems)
    return parsed


COUNTS = ("batch_size", "max_texts", "max_chars", "max_batch", "max_call_chars", "vocab_min_count")
"""Keys of the key=value commands that count something and must be at least 1."""
