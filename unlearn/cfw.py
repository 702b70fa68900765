"""CFW, confuse–finetune–weaken (a NeurIPS 2023 Machine Unlearning Challenge method as packaged in
xcadet/deepunlearn, ``kgltop3``): Gaussian noise (``start_std``) on the stem convolution's weights, fine-tuning
on the retain set with class-balanced cross-entropy, and a second, faint dose of noise (``final_std``) before
the last epoch. The reference adds the noise to the top-level ``conv*`` children of a ResNet, which is the stem
convolution; here it is the first convolution of any network."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.models import num_classes
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class CFWConfig(UnlearnConfig):
    epochs: int = 4
    lr: float = 1.4e-3
    batch_size: int = 128
    schedule: str = "cosine"
    start_std: float = 0.6
    final_std: float = 0.005


def confuse(model: nn.Module, std: float, generator: torch.Generator) -> None:
    stem = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if stem is None:
        raise ValueError(f"cfw adds noise to the stem convolution; model '{model.arch}' has none.")
    with torch.no_grad():
        stem.weight.add_(std * torch.randn(stem.weight.shape, generator=generator).to(stem.weight.device))


@register_unlearner
class CFW(Unlearner):
    name = "cfw"
    Config = CFWConfig
    search_space = {"epochs": (2, 10, "int"), "lr": (1e-4, 5e-2, "log"), "start_std": (0.01, 1.0, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        c = self.cfg
        data = self.retain_data(retain, forget, condensed)
        generator = torch.Generator().manual_seed(c.seed)
        counts = torch.bincount(data.labels, minlength=num_classes(model)).float()
        weights = torch.where(counts > 0, counts.sum() / (len(counts) * counts.clamp_min(1)), torch.zeros_like(counts))
        weights = weights.to(self.device)
        confuse(model, c.start_std, generator)

        def before_epoch(epoch):
            if epoch == c.epochs - 1 and c.epochs > 1:
                confuse(model, c.final_std, generator)

        train(model, data, self.schedule(seed=c.seed), loss_fn=lambda m, x, y, idx: F.cross_entropy(m(x), y, weight=weights),
              on_epoch=before_epoch, desc="cfw")
        return model
