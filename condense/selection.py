"""Coreset selection baselines of the condensation literature (Zhao et al., ICLR 2021, Table 1; VICO-UoE/
DatasetCondensation): real images chosen per class in an embedding space.

* ``herding`` (Welling, ICML 2009; Chen et al., UAI 2010): greedily add the image that brings the running mean
  of the chosen embeddings closest to the class mean.
* ``kcenter`` (Sener & Savarese, ICLR 2018): start from the image nearest the class mean, then greedily add the
  image farthest from everything chosen so far.

The embedding is the given model's penultimate features (the trained original, as the reference uses a
trained ConvNet) or, without one, a randomly initialised ConvNet's. Each image is its own bucket.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dcu.models import create_model
from dcu.models.convnet import fit_depth
from dcu.train import features

from .base import CondenseConfig, Condenser, class_positions, register_condenser
from .random import coreset


@dataclass
class SelectionConfig(CondenseConfig):
    net_width: int = 128          # the random ConvNet used when no model is given


def herding(emb: torch.Tensor, k: int) -> torch.Tensor:
    mu, chosen, total = emb.mean(0), [], torch.zeros_like(emb[0])
    available = torch.ones(len(emb), dtype=torch.bool)
    for t in range(1, k + 1):
        dist = ((mu - (total + emb) / t) ** 2).sum(1).masked_fill(~available, float("inf"))
        i = int(dist.argmin())
        chosen.append(i)
        available[i] = False
        total = total + emb[i]
    return torch.tensor(chosen, dtype=torch.long)


def k_center(emb: torch.Tensor, k: int) -> torch.Tensor:
    first = int(((emb - emb.mean(0)) ** 2).sum(1).argmin())
    chosen = [first]
    nearest = ((emb - emb[first]) ** 2).sum(1)
    for _ in range(k - 1):
        i = int(nearest.argmax())
        chosen.append(i)
        nearest = torch.minimum(nearest, ((emb - emb[i]) ** 2).sum(1))
    return torch.tensor(chosen, dtype=torch.long)


class _Selection(Condenser):
    Config = SelectionConfig
    select = staticmethod(herding)

    def build(self, train, num_classes, model):
        if model is None:
            _, channels, size, _ = train.images.shape
            model = create_model("convnet", in_channels=channels, num_classes=num_classes, image_size=size,
                                 width=self.cfg.net_width, depth=fit_depth(3, size))
        emb = features(model, train.images)
        chosen = [pos[self.select(emb[pos], self.cfg.ipc)] for pos in class_positions(train.labels, num_classes)]
        return coreset(train, torch.cat(chosen))


@register_condenser
class Herding(_Selection):
    name = "herding"
    select = staticmethod(herding)


@register_condenser
class KCenter(_Selection):
    name = "kcenter"
    select = staticmethod(k_center)
