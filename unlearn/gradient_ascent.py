"""Gradient ascent (GA; "NegGrad"): raise the cross-entropy of the forget set, no retain data (Golatkar et al.,
CVPR 2020; Thudi et al., 2022; the ``gradient_ascent`` baseline of xcadet/deepunlearn). Unbounded by nature:
the default stops at a few small steps, and ``dcu tune`` finds the point for a new setting."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class GradientAscentConfig(UnlearnConfig):
    epochs: int = 2
    lr: float = 2e-3
    batch_size: int = 128
    schedule: str = "constant"
    weight_decay: float = 0.0


def ascent_loss(model, x, y, idx):
    return -F.cross_entropy(model(x), y)


@register_unlearner
class GradientAscent(Unlearner):
    name = "gradient_ascent"
    Config = GradientAscentConfig
    uses_retain = False
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-5, 1e-2, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        train(model, forget, self.schedule(seed=self.cfg.seed, augment=False), loss_fn=ascent_loss, desc="gradient ascent")
        return model
