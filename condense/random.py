"""Random coreset: ``ipc`` real training images per class, drawn uniformly. The baseline every condensation
paper reports (e.g. Zhao et al., ICLR 2021, Table 1). Each image is its own bucket, so a refresh drops the
images that are forgotten.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import CondenseConfig, Condenser, class_positions, new_set, register_condenser


@dataclass
class RandomConfig(CondenseConfig):
    pass


@register_condenser
class RandomCoreset(Condenser):
    name = "random"
    Config = RandomConfig

    def build(self, train, num_classes, model):
        gen = torch.Generator().manual_seed(self.cfg.seed)
        chosen = torch.cat([pos[torch.randperm(len(pos), generator=gen)[: self.cfg.ipc]]
                            for pos in class_positions(train.labels, num_classes)])
        k = len(chosen)
        return new_set(train.images[chosen].clone(), train.labels[chosen].clone(), torch.arange(k),
                       train.ids[chosen].clone(), torch.arange(k))
