"""Dataclass configs built from user input (``--set KEY=VALUE``, a spec's ``set:``, SMAC's
``score_model``): unknown keys are refused and every value is type-checked against its field's
annotation before the dataclass's own range checks run, so a bad value is a ``SmacError`` naming
the option, never a traceback or a run that trains on it."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any, TypeVar

from smac_core.errors import SmacError

T = TypeVar("T")


def build_config(cls: type[T], values: Any) -> T:
    """``cls(**values)`` after checking the keys and types of ``values`` (a mapping)."""
    name = cls.__name__
    if not isinstance(values, dict):
        raise SmacError(f"{name}: options must be a mapping of names to values, got {values!r}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(values) - names)
    if unknown:
        raise SmacError(f"unknown {name} option(s) {unknown}; valid: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: _typed(f"{name}.{key}", value, hints[key]) for key, value in values.items()})


def _typed(where: str, value: Any, hint: Any) -> Any:
    """``value`` as the annotation ``hint`` wants it (ints accepted as floats, lists as tuples);
    ``SmacError`` when it is not of that type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = (a for a in args if a is not type(None))
        return _typed(where, value, hint)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if (hint is bool and isinstance(value, bool)) or (hint is int and is_int) \
            or (hint is str and isinstance(value, str)):
        return value
    if hint is float and (is_int or isinstance(value, float)) and math.isfinite(value):
        return float(value)
    if origin is tuple and isinstance(value, list | tuple) \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    if origin is dict and isinstance(value, dict):
        return value
    raise SmacError(f"{where} must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a list of integers, e.g. [256, 256]"
    if origin is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string"}.get(hint, str(hint))
