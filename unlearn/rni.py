"""RNI, reset–noise–iterate (a NeurIPS 2023 Machine Unlearning Challenge method as packaged in
xcadet/deepunlearn, ``kgltop7``): the classifier is re-initialised; then, epoch by epoch, a random subset of the
weight tensors (``layer_fraction`` of them, normalisation parameters always included) is trained on the retain
set, after Gaussian noise (``noise``) on a ``noise_ratio`` share of that subset; the last ``fine_epochs`` train
every weight at ``fine_lr``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from dcu.seeds import derive
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class RNIConfig(UnlearnConfig):
    epochs: int = 5
    fine_epochs: int = 2
    reset_epochs: int = 1          # first epochs without noise (just after the reset)
    lr: float = 4e-4
    fine_lr: float = 2e-3
    batch_size: int = 128
    layer_fraction: float = 0.5
    noise_ratio: float = 0.7
    noise: float = 0.04


def _is_norm(module_of: dict, name: str) -> bool:
    return isinstance(module_of[name.rsplit(".", 1)[0]], (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm))


@register_unlearner
class RNI(Unlearner):
    name = "rni"
    Config = RNIConfig
    search_space = {"epochs": (2, 10, "int"), "lr": (1e-5, 1e-2, "log"), "fine_lr": (1e-4, 5e-2, "log"),
                    "noise": (1e-3, 0.2, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        c = self.cfg
        data = self.retain_data(retain, forget, condensed)
        generator = torch.Generator().manual_seed(c.seed)
        modules = dict(model.named_modules())
        params = dict(model.named_parameters())
        norms = [n for n in params if _is_norm(modules, n)]
        others = [n for n in params if n not in norms]
        head = model.get_classifier()
        head.reset_parameters()
        try:
            for epoch in range(c.epochs):
                fine = epoch >= c.epochs - c.fine_epochs
                chosen = set(params)
                if not fine:
                    pick = torch.randperm(len(others), generator=generator)[: max(1, int(c.layer_fraction * len(others)))]
                    chosen = {others[i] for i in pick.tolist()} | set(norms)
                    if epoch >= c.reset_epochs:
                        noisy = pick[: int(c.noise_ratio * len(pick))]
                        with torch.no_grad():
                            for i in noisy.tolist():
                                p = params[others[i]]
                                p.add_(c.noise * torch.randn(p.shape, generator=generator).to(p.device))
                for name, p in params.items():
                    p.requires_grad_(name in chosen)
                train(model, data, self.schedule(epochs=1, lr=c.fine_lr if fine else c.lr, schedule="constant",
                                                 seed=derive(c.seed, "epoch", epoch)), desc=f"rni {epoch + 1}")
        finally:
            for p in params.values():
                p.requires_grad_(True)
        return model
