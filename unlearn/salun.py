"""SalUn: saliency unlearning (Fan et al., ICLR 2024; OPTML-Group/Unlearn-Saliency). The weights whose
forget-loss gradient is largest in magnitude (the top ``threshold`` fraction, over the whole network) are the
only ones trained, with random labels on the forget set and true labels on the retain set. The mask is hard:
frozen weights are put back after every step, so weight decay and momentum cannot move them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import HardMask, summed_gradient
from .random_label import random_label_training


@dataclass
class SalUnConfig(UnlearnConfig):
    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"
    threshold: float = 0.5        # fraction of weights trained


def saliency_masks(model, forget, fraction: float):
    """Boolean masks of the ``fraction`` of weights with the largest forget-loss gradient magnitude."""
    grads = summed_gradient(model, forget)
    magnitudes = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = max(1, int(round(fraction * magnitudes.numel())))
    cutoff = torch.topk(magnitudes, keep).values.min()
    return {name: g.abs() >= cutoff for name, g in grads.items()}


@register_unlearner
class SalUn(Unlearner):
    name = "salun"
    Config = SalUnConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-4, 1e-1, "log"), "threshold": (0.1, 0.9, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        mask = HardMask(model, saliency_masks(model, forget, self.cfg.threshold))
        self.stats["trainable_fraction"] = mask.fraction_trainable()
        random_label_training(self, model, self.retain_data(retain, forget, condensed), forget, desc="salun", mask=mask)
        return model
