"""A registry per kind of thing: a dict, a decorator that refuses duplicates, list and get."""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import typing
from typing import Any, Callable, Dict, List, Optional


def check_settings(config_cls: type, values: Dict[str, Any], *, what: str = "setting", owner: str = "") -> Dict[str, Any]:
    """``values`` checked against the fields of dataclass ``config_cls``: known names and the declared types
    (an int field takes no 1.5 and no 'abc', a bool field no 'maybe', a float field no NaN or infinity).
    Returns the values with ints widened to floats where a float is declared."""
    hints = typing.get_type_hints(config_cls)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {what}(s) {unknown}{owner}. Valid: {sorted(known)}.")
    return {key: _typed(f"{what} {key}{owner}", value, hints.get(key, Any)) for key, value in values.items()}


def _typed(name: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(name, value, option)
            except ValueError as err:
                errors.append(err)
        raise errors[0] if errors else ValueError(f"{name} must be empty (None). Got {value!r}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false. Got {value!r}.")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be a whole number. Got {value!r}.")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ValueError(f"{name} must be a finite number. Got {value!r}.")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{name} must be text. Got {value!r}.")
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list. Got {value!r}.")
        inner = args[0] if args else Any
        return type(value)(_typed(name, v, inner) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a dictionary (JSON object). Got {value!r}.")
        return value
    return value


class Registry:
    """Maps names to builders (classes or functions) for one kind of thing, e.g. ``"model"``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Any] = {}

    def register(self, name: Optional[str] = None) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            key = name or getattr(obj, "name", None) or obj.__name__
            if key in self._entries:
                raise ValueError(f"A {self.kind} named '{key}' is already registered ({self._entries[key]!r}).")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Any:
        if name not in self._entries:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise ValueError(f"Unknown {self.kind} '{name}'. Valid values are: {valid}.")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with settings checked against its ``Config`` dataclass (when it has one).

        Keyword arguments the builder takes itself (not settings) go in ``kwargs['_builder']``.
        """
        builder = self.get(name)
        builder_kwargs = kwargs.pop("_builder", {})
        config_cls = getattr(builder, "Config", None)
        if config_cls is not None and dataclasses.is_dataclass(config_cls):
            kwargs = check_settings(config_cls, kwargs, owner=f" for {self.kind} '{name}'")
        return builder(**builder_kwargs, **kwargs)

    def names(self, include: Optional[str] = None) -> List[str]:
        names = sorted(self._entries)
        return [n for n in names if include is None or fnmatch.fnmatch(n, include)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
