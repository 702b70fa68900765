"""CT, convolution transpose (a NeurIPS 2023 Machine Unlearning Challenge method as packaged in
xcadet/deepunlearn, ``kgltop5``): every convolution kernel is transposed (its two spatial axes swapped), which
keeps each filter's weights but scrambles what it detects, then the network is fine-tuned on the retain set."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class CTConfig(UnlearnConfig):
    epochs: int = 3
    lr: float = 2e-3
    batch_size: int = 128
    schedule: str = "cosine"


def transpose_kernels(model: nn.Module) -> int:
    """Swap the spatial axes of every conv kernel in place; returns how many were transposed."""
    count = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(module.weight.transpose(2, 3).contiguous())
                count += 1
    return count


@register_unlearner
class CT(Unlearner):
    name = "ct"
    Config = CTConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-4, 1e-1, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        if transpose_kernels(model) == 0:
            raise ValueError(f"ct transposes convolution kernels; model '{model.arch}' has none.")
        train(model, self.retain_data(retain, forget, condensed), self.schedule(seed=self.cfg.seed), desc="ct")
        return model
