"""Unlearning methods behind one interface; ``get_unlearner(name, **cfg)`` builds one."""
from .base import UNLEARNERS, UnlearnConfig, Unlearner, get_unlearner, list_unlearners
from . import retrain, finetune, dcu  # noqa: F401,E402  (registration)

__all__ = ["UNLEARNERS", "UnlearnConfig", "Unlearner", "get_unlearner", "list_unlearners"]
