"""Turns the API's JSON into the dataclasses of :mod:`liftoff.models` and back.

Driven by the dataclasses' type hints, so a model is written once. A field
whose JSON name is not a Python name (``from``) says so in its metadata
(``field(metadata={"json": "from"})``). Unknown keys from the server are
ignored (a newer server may add fields); a missing required key is an
:class:`~liftoff.errors.InvalidResponse`.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any, Dict, List, Type, TypeVar, Union

from .errors import InvalidResponse

T = TypeVar("T")

_HINTS: Dict[type, Dict[str, Any]] = {}


def type_hints(cls: type) -> Dict[str, Any]:
    """The resolved type hints of a model class (cached)."""
    hints = _HINTS.get(cls)
    if hints is None:
        module = sys.modules[cls.__module__]
        hints = typing.get_type_hints(cls, vars(module))
        _HINTS[cls] = hints
    return hints


def json_name(f: "dataclasses.Field[Any]") -> str:
    """The JSON key of a dataclass field."""
    return str(f.metadata.get("json", f.name))


def decode(tp: Any, value: Any, where: str = "$") -> Any:
    """``value`` (parsed JSON) as type ``tp``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) > 1 and isinstance(value, dict) and "type" in value:
            # a tagged union (JobSource): the variant whose TAG matches
            for a in options:
                if getattr(a, "TAG", None) == value["type"]:
                    return decode(a, value, where)
        return decode(options[0], value, where)
    if origin is typing.Literal:
        if not isinstance(value, str):
            raise InvalidResponse(f"{where}: expected one of {list(args)}, got {value!r}")
        return value  # an unknown value from a newer server passes
    if origin in (list, List):
        if not isinstance(value, list):
            raise InvalidResponse(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = args or (Any,)
        return [decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise InvalidResponse(f"{where}: expected an object, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): decode(vt, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return decode_model(tp, value, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool or tp is str:
        if isinstance(value, tp):
            return value
    else:
        return value
    raise InvalidResponse(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def decode_model(cls: Type[T], value: Any, where: str = "$") -> T:
    """``value`` (a parsed JSON object) as the dataclass ``cls``."""
    if not isinstance(value, dict):
        raise InvalidResponse(f"{where}: expected a {cls.__name__} object, got {type(value).__name__}")
    hints = type_hints(cls)
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = json_name(f)
        if key in value:
            kwargs[f.name] = decode(hints[f.name], value[key], f"{where}.{key}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidResponse(f"{where}: {cls.__name__} lacks its required field '{key}'")
    return cls(**kwargs)


def encode(value: Any) -> Any:
    """A model (or list, dict, scalar of them) as JSON-ready data; ``None``
    fields are left out, as the server's own serialisation leaves them out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None:
                continue
            out[json_name(f)] = encode(v)
        return out
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value
