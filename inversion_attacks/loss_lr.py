"""Loss-based membership inference with logistic regression, the MIA of the Deep Unlearn benchmark
(xcadet/deepunlearn), the DC_U paper and SCRUB (meghdadk/SCRUB; the NeurIPS 2023 unlearning challenge kit).

Feature: the per-sample cross-entropy. Members: the forget set; non-members: held-out images. The two are
balanced by subsampling, and a logistic regression is scored by accuracy over ``n_splits`` stratified
shuffle splits. The headline is the *mean* accuracy over splits (DC_U reports the max over 20 repeats,
which inflates it). For a retrained model the forget set is unseen, so a value near 0.5 is the target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from dcu.train import per_sample_loss

from .base import Attack, AttackConfig, Scores, register_attack


@dataclass
class LossLRConfig(AttackConfig):
    n_splits: int = 10
    test_size: float = 0.3


@register_attack
class LossLR(Attack):
    name = "loss_lr"
    Config = LossLRConfig
    headline_name = "mean CV accuracy"

    def score(self, model, members, non_members, *, retain=None) -> Scores:
        member_loss = per_sample_loss(model, members).numpy()
        non_member_loss = per_sample_loss(model, non_members).numpy()
        accs, n = cross_validated_accuracy(member_loss, non_member_loss, n_splits=self.cfg.n_splits,
                                           test_size=self.cfg.test_size, seed=self.cfg.seed)
        scores = -np.concatenate([member_loss, non_member_loss])  # lower loss = more likely a member
        return Scores(torch.from_numpy(scores), float(accs.mean()),
                      {"std": float(accs.std()), "n_splits": self.cfg.n_splits, "n_per_side": int(n)})


def cross_validated_accuracy(member_loss: np.ndarray, non_member_loss: np.ndarray, *, n_splits: int = 10,
                             test_size: float = 0.3, seed: int = 0) -> Tuple[np.ndarray, int]:
    """The attack itself on given losses: per-split accuracies of a logistic regression telling members from
    non-members (balanced by subsampling the larger side), and the count per side. The audit calls it on losses
    computed from stored logits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    n = min(len(member_loss), len(non_member_loss))
    if n < 2:
        raise ValueError(f"loss_lr needs at least 2 members and 2 non-members; got {len(member_loss)} and "
                         f"{len(non_member_loss)}.")
    x = np.concatenate([rng.choice(member_loss, n, replace=False), rng.choice(non_member_loss, n, replace=False)])
    y = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    splits = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    return cross_val_score(LogisticRegression(), x.reshape(-1, 1), y, cv=splits, scoring="accuracy"), n
