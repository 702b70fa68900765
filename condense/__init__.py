"""Condensation methods behind one interface; ``get_condenser(name, **cfg)`` builds one."""
from .base import (CONDENSERS, CondensedSet, CondenseConfig, Condenser, get_condenser, list_condensers,
                   load_condensed)
from . import random, selection, dc, dm, fdm, mi  # noqa: F401,E402  (registration)

__all__ = ["CONDENSERS", "CondensedSet", "CondenseConfig", "Condenser", "get_condenser", "list_condensers",
           "load_condensed"]
