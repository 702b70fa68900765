"""A registry per kind of thing: a dict, a decorator that refuses duplicates, list and get."""
from __future__ import annotations

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

    def names(self, include: Optional[str] = None) -> List[str]:
        names = sorted(self._entries)
        return [n for n in names if include is None or fnmatch.fnmatch(n, include)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
