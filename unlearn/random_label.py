"""Successive random labels (SRL): train on the retain set together with the forget set whose labels are
redrawn uniformly (never the true one) every epoch (Hayase et al.; Graves et al., AAAI 2021, "Amnesiac
machine learning"; the ``successive_random_labels`` baseline of xcadet/deepunlearn)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from dcu.models import num_classes
from dcu.seeds import derive
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import HardMask, joined, random_other_labels


@dataclass
class RandomLabelConfig(UnlearnConfig):
    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"


def random_label_training(unlearner: Unlearner, model, retain_data, forget, *, desc: str,
                          mask: Optional[HardMask] = None) -> None:
    """Train on ``retain_data`` ∪ ``forget`` with the forget labels redrawn every epoch; shared with SalUn."""
    data, is_forget = joined(retain_data, forget)
    classes = num_classes(model)
    generator = torch.Generator().manual_seed(derive(unlearner.cfg.seed, "random labels"))
    labels, is_forget = data.labels.clone().to(unlearner.device), is_forget.to(unlearner.device)

    def relabel(epoch):
        labels[is_forget] = random_other_labels(forget.labels.to(labels.device), classes, generator)

    train(model, data, unlearner.schedule(seed=unlearner.cfg.seed),
          loss_fn=lambda m, x, y, idx: F.cross_entropy(m(x), labels[idx]),
          on_epoch=relabel, on_step=mask, desc=desc)


@register_unlearner
class RandomLabel(Unlearner):
    name = "random_label"
    Config = RandomLabelConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-4, 1e-1, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        random_label_training(self, model, self.retain_data(retain, forget, condensed), forget, desc="random labels")
        return model
