"""Condensation methods behind one interface; ``get_condenser(name, **cfg)`` builds one."""
from . import dc, dm, fdm, idm, mi, ncfm, random, selection  # noqa: F401,E402  (registration)
from .base import CONDENSERS, CondenseConfig, CondensedSet, Condenser, get_condenser, list_condensers, load_condensed

__all__ = ["CONDENSERS", "CondensedSet", "CondenseConfig", "Condenser", "get_condenser", "list_condensers",
           "load_condensed"]
