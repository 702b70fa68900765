"""Attacks an auditor runs against a model; ``get_attack(name, **cfg)`` builds one."""
from . import lira, loss_lr, population, ulira  # noqa: F401,E402  (registration)
from .base import ATTACKS, Attack, AttackResult, get_attack, list_attacks, roc_metrics

__all__ = ["ATTACKS", "Attack", "AttackResult", "get_attack", "list_attacks", "roc_metrics"]
