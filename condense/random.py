"""Random coreset: ``ipc`` real training images per class, drawn uniformly. The baseline every condensation
paper reports (e.g. Zhao et al., ICLR 2021, Table 1). Each image is its own bucket, so a refresh drops the
images that are forgotten. ``coreset`` is shared with the other selection methods (herding, k-center).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dcu.data import ImageSet

from .base import CondenseConfig, CondensedSet, Condenser, class_positions, new_set, register_condenser


def coreset(train: ImageSet, chosen: torch.Tensor) -> CondensedSet:
    """A condensed set of the real images at positions ``chosen``, each its own bucket."""
    k = len(chosen)
    return new_set(train.images[chosen].clone(), train.labels[chosen].clone(), torch.arange(k),
                   train.ids[chosen].clone(), torch.arange(k))


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
        return coreset(train, chosen)
