"""The attack interface, the common result record and the attack registry.

``attack.run(model, members, non_members, *, retain=None) -> AttackResult``: a score per sample (higher
means "member"), AUC, balanced accuracy, TPR at 1% and 0.1% FPR, and the attack's own headline number where
the literature has one. The base class checks the inputs and builds the record; an attack implements
``score`` (the per-sample scores and its own numbers).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from dcu.registry import Registry

ATTACKS = Registry("attack")


@dataclass
class AttackResult:
    attack: str
    scores: torch.Tensor                 # per sample, members first then non-members; higher = member
    is_member: torch.Tensor              # (bool) ground truth of the samples scored
    auc: float
    balanced_accuracy: float
    tpr_at_1fpr: float
    tpr_at_01fpr: float
    headline: float                      # the attack's own number (e.g. loss_lr: mean CV accuracy)
    roc: Dict[str, List[float]] = field(default_factory=dict)   # TPR on a log-spaced FPR grid (for plots)
    headline_name: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Dict[str, Any]:
        """The JSON-friendly numbers (no per-sample scores)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("scores", "is_member", "extra")}
        out.update(self.extra)
        return out


def roc_metrics(scores: np.ndarray, is_member: np.ndarray) -> Dict[str, float]:
    """AUC, the best balanced accuracy over thresholds, and TPR at 1% / 0.1% FPR."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if is_member.all() or (~is_member).all():
        raise ValueError("An attack needs both members and non-members to be scored.")
    fpr, tpr, _ = roc_curve(is_member, scores)
    grid = np.logspace(-4, 0, 81)
    return {
        "auc": float(roc_auc_score(is_member, scores)),
        "balanced_accuracy": float(np.max(1 - (fpr + (1 - tpr)) / 2)),
        "tpr_at_1fpr": float(np.interp(0.01, fpr, tpr)),
        "tpr_at_01fpr": float(np.interp(0.001, fpr, tpr)),
        "roc": {"fpr": grid.round(6).tolist(), "tpr": np.interp(grid, fpr, tpr).round(6).tolist(),
                "min_fpr": 1.0 / int((~is_member).sum())},     # below one non-member the curve says nothing
    }


@dataclass
class AttackConfig:
    seed: int = 0


@dataclass
class Scores:
    """What an attack's ``score`` returns: one score per sample (members first), and its own numbers."""
    values: torch.Tensor
    headline: Optional[float] = None     # the attack's own number; None: the AUC
    extra: Dict[str, Any] = field(default_factory=dict)


class Attack:
    name: str = ""
    Config = AttackConfig
    headline_name: str = "AUC (forget vs held-out)"

    def __init__(self, cfg: Optional[AttackConfig] = None, **kwargs: Any):
        self.cfg = cfg if cfg is not None else self.Config(**kwargs)

    def run(self, model: torch.nn.Module, members, non_members, *, retain=None) -> AttackResult:
        """Score ``members`` (the forget set) against ``non_members`` (held-out images); population attacks
        that learn what a member looks like use ``retain``."""
        if len(members) == 0 or len(non_members) == 0:
            raise ValueError(f"{self.name} needs members and non-members to score; got {len(members)} and "
                             f"{len(non_members)}.")
        scores = self.score(model, members, non_members, retain=retain)
        values = torch.as_tensor(scores.values).double()
        is_member = torch.cat([torch.ones(len(members), dtype=torch.bool),
                               torch.zeros(len(non_members), dtype=torch.bool)])
        metrics = roc_metrics(values.numpy(), is_member.numpy())
        return AttackResult(attack=self.name, scores=values, is_member=is_member,
                            headline=metrics["auc"] if scores.headline is None else float(scores.headline),
                            headline_name=self.headline_name, extra=scores.extra, **metrics)

    def score(self, model: torch.nn.Module, members, non_members, *, retain=None) -> Scores:
        raise NotImplementedError


def register_attack(cls):
    ATTACKS.register(cls.name)(cls)
    return cls


def get_attack(name: str, **cfg: Any) -> Attack:
    return ATTACKS.create(name, **cfg)


def list_attacks() -> List[str]:
    return ATTACKS.names()
