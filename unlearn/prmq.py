"""PRMQ, prune–reinitialise–match–quantise (a NeurIPS 2023 Machine Unlearning Challenge method as packaged in
xcadet/deepunlearn, ``kgltop4``): global magnitude pruning of ``prune_amount`` of the conv and linear weights,
the pruned ones redrawn uniformly at random; training on the retain set with class-weighted cross-entropy plus
a match of the original's prediction entropy; finally a round trip through half precision."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.models import num_classes
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class PRMQConfig(UnlearnConfig):
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 128
    schedule: str = "constant"
    prune_amount: float = 0.99


def prune_and_redraw(model: nn.Module, amount: float, generator: torch.Generator) -> None:
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    magnitudes = torch.cat([m.weight.detach().abs().flatten() for m in layers])
    count = int(amount * magnitudes.numel())
    if count == 0:
        return
    cutoff = torch.kthvalue(magnitudes, count).values
    with torch.no_grad():
        for m in layers:
            pruned = m.weight.abs() <= cutoff
            bound = 1 / math.sqrt(m.weight[0].numel())       # PyTorch's default fan-in bound
            fresh = (torch.rand(m.weight.shape, generator=generator).to(m.weight.device) * 2 - 1) * bound
            m.weight.copy_(torch.where(pruned, fresh, m.weight))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(F.softmax(logits, 1) * F.log_softmax(logits, 1)).sum(1)


@register_unlearner
class PRMQ(Unlearner):
    name = "prmq"
    Config = PRMQConfig
    search_space = {"epochs": (1, 8, "int"), "lr": (1e-4, 5e-2, "log"), "prune_amount": (0.5, 0.999, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        data = self.retain_data(retain, forget, condensed)
        original = copy.deepcopy(model).eval()
        counts = torch.bincount(data.labels, minlength=num_classes(model)).float()
        weights = counts.clamp_min(1).pow(-0.1).to(self.device)
        prune_and_redraw(model, self.cfg.prune_amount, torch.Generator().manual_seed(self.cfg.seed))

        def loss_fn(m, x, y, idx):
            out = m(x)
            with torch.no_grad():
                target = entropy(original(x))
            return F.cross_entropy(out, y, weight=weights) + F.mse_loss(entropy(out), target)

        train(model, data, self.schedule(seed=self.cfg.seed), loss_fn=loss_fn, desc="prmq")
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
        return model
