"""Typed dataclasses <-> plain nested or dotted dictionaries.

One helper builds a frozen config dataclass from data, collecting every unknown key and type
error with its dotted key; another flattens a dataclass into ``{"a.b": value}`` (Flower's
run config and the train ConfigRecord both carry flat dotted keys).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

_INVALID = object()  # a value of the wrong type: reported, and the field keeps its default


def _check_type(value: Any, hint: Any, key: str, errors: list[str]) -> Any:
    """Coerce/verify one scalar against its type hint; on a mismatch record a message and
    return ``_INVALID``. Floats must be finite (NaN and infinities pass no range check)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)  # a number where text is read (data.mean=0.286: one channel)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint in (int, float) and isinstance(value, bool))
    ):
        errors.append(f"{key}: expected {hint.__name__}, got {value!r}")
        return _INVALID
    if hint is float and not math.isfinite(value):
        errors.append(f"{key}: must be a finite number, got {value!r}")
        return _INVALID
    return value


def build(cls: type, data: Any, prefix: str, errors: list[str], base: Any = None) -> Any:
    """Instantiate dataclass ``cls`` from nested ``data``; problems go to ``errors``.

    Keys absent from ``data`` keep ``base``'s values (default: ``cls()``); a nested section
    starts from its parent's default, so ``zdas.inversion`` keeps ZDAS's own inversion defaults.
    """
    base = cls() if base is None else base
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
        return base
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            shown = k if isinstance(k, str) and k.isidentifier() else repr(k)
            errors.append(f"{prefix}{shown}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            sub = f"{prefix}{f.name}."
            kwargs[f.name] = build(hint, data[f.name], sub, errors, getattr(base, f.name))
        else:
            value = _check_type(data[f.name], hint, prefix + f.name, errors)
            if value is not _INVALID:
                kwargs[f.name] = value
    return dataclasses.replace(base, **kwargs)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{dotted}: {p} is a value, not a section")
        node[leaf] = value
    return tree


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A dataclass instance (or nested dict) as ``{"prefix.field.sub": value}``."""
    is_instance = dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    items = dataclasses.asdict(obj) if is_instance else obj
    out: dict[str, Any] = {}
    for k, v in items.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra``'s values on top, merged section by section."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_flat(cls: type, flat: dict[str, Any], prefix: str) -> Any:
    """Rebuild ``cls`` from the entries of ``flat`` under ``prefix``; raise on any problem."""
    errors: list[str] = []
    sub = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
    obj = build(cls, nest(sub), prefix, errors)
    if errors:
        raise ValueError("; ".join(errors))
    return obj
