"""The JSON shape of a run record: any of :mod:`.record`'s dataclasses read from and written to
the plain objects ``manifest.json`` holds, by their fields' types.

A record is read by what it can say, not by the version that wrote it: a missing key takes
its default, a key this version does not know goes to the object's ``extra``, and the object
remembers the keys it was read with (``source_keys``) so that writing it back keeps their
order and a null that was there. Only a shape no field can hold (text where a number must be,
a string where an object or a list must be) is a :class:`ShapeError`, naming where.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from dataclasses import MISSING, fields
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

#: The metadata of a field that is no key of the object (``extra``, ``source_keys``, what a
#: class keeps beside its keys): never read from a key or written as one.
OWN: Mapping[str, Any] = types.MappingProxyType({"own": True})


def _keyed(cls: Any) -> list[Any]:
    """The fields of ``cls`` that are keys of its JSON object."""
    return [f for f in fields(cls) if not f.metadata.get("own")]


class ShapeError(ValueError):
    """A record (or a part of it) has a shape no field of this version can hold."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__dataclass_fields__")


def _what(value: Any) -> str:
    """``value`` as an error shows it: short."""
    return f"{type(value).__name__} {str(value)[:30]!r}"


def _missing(tp: Any) -> Any:
    """What a required field reads as when its key is absent (or null where null cannot be):
    empty text, -1 for a number (not said), an empty part."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType) and type(None) in get_args(tp):
        return None
    if _is_dataclass_type(tp):
        return read_object(tp, {}, "")
    defaults = {str: "", int: -1, bool: False, tuple: (), Mapping: {}}
    return defaults.get(origin or tp)


def read_value(tp: Any, value: Any, where: str) -> Any:
    """``value`` as a field of type ``tp`` holds it; :class:`ShapeError` when it cannot."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        [inner] = [a for a in args if a is not type(None)]
        return read_value(inner, value, where)
    if value is None:  # null where the field cannot be null: as if absent
        return _missing(tp)
    if _is_dataclass_type(tp):
        return read_object(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ShapeError(f"{where} is {_what(value)}, not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(read_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ShapeError(f"{where} has {len(value)} items, not {len(args)}")
        return tuple(read_value(a, v, f"{where}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ShapeError(f"{where} is {_what(value)}, not an object")
        return {k: read_value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is Literal:  # the caller reads what is not one of them (see .record.status_of)
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a Slurm job id written as a number
    kind = {str: "text", int: "a number", bool: "true or false"}.get(tp, str(tp))
    raise ShapeError(f"{where} is {_what(value)}, not {kind}")


def read_object(cls: type, data: Any, where: str) -> Any:
    """An instance of the record dataclass ``cls`` from the object ``data``."""
    if not isinstance(data, dict):
        raise ShapeError(f"{where or 'the record'} is {_what(data)}, not an object")
    hints = _hints(cls)
    kw: dict[str, Any] = {}
    for f in _keyed(cls):
        if f.name in data:
            kw[f.name] = read_value(hints[f.name], data[f.name], _join(where, f.name))
        elif f.default is MISSING and f.default_factory is MISSING:
            kw[f.name] = _absent(cls, f)
    names = {f.name for f in _keyed(cls)}
    return cls(**kw, extra={k: v for k, v in data.items() if k not in names},
               source_keys=tuple(data))


def _absent(cls: type, f: Any) -> Any:
    """What the field ``f`` of ``cls`` reads as when its key is absent."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return _missing(_hints(cls)[f.name])


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def write_value(value: Any) -> Any:
    """A field's value as JSON holds it (record dataclasses as objects, tuples as lists)."""
    if hasattr(value, "__dataclass_fields__"):
        return write_object(value)
    if isinstance(value, (list, tuple)):
        return [write_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: write_value(v) for k, v in value.items()}
    return value


def write_object(obj: Any) -> dict[str, Any]:
    """The object ``obj`` was read from, with what changed since: its keys in the order they
    were read (new ones after), its ``extra`` keys where they were, a key that was absent still
    absent while its field holds what it read as. A None field is written as null when its key
    was there, or when the class says so (``NONE_WRITTEN``: all fields unless it names some),
    else left out."""
    read_with = None if obj.source_keys is None else set(obj.source_keys)
    nulls = getattr(obj, "NONE_WRITTEN", None)
    out: dict[str, Any] = {}
    for f in _keyed(obj):
        value = getattr(obj, f.name)
        there = read_with is not None and f.name in read_with
        if value is None and not there and nulls is not None and f.name not in nulls:
            continue
        if read_with is not None and not there and (nulls is None or f.name not in nulls) \
                and value == _absent(type(obj), f):
            continue  # absent when read, and nothing set it since
        out[f.name] = write_value(value)
    for k, v in obj.extra.items():
        out.setdefault(k, v)
    ordered = {k: out[k] for k in obj.source_keys or () if k in out}
    return {**ordered, **out}
