"""A registry per kind of thing: a dict, a decorator that refuses duplicates, list and get."""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, Dict, List, Optional


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
            known = {f.name for f in dataclasses.fields(config_cls)}
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise ValueError(f"Unknown setting(s) {unknown} for {self.kind} '{name}'. Valid: {sorted(known)}.")
        return builder(**builder_kwargs, **kwargs)

    def names(self, include: Optional[str] = None) -> List[str]:
        names = sorted(self._entries)
        return [n for n in names if include is None or fnmatch.fnmatch(n, include)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
