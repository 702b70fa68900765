"""MSG, masked small gradients (a NeurIPS 2023 Machine Unlearning Challenge method as packaged in
xcadet/deepunlearn, ``kgltop2``; Triantafillou et al., 2024). The gradient of ``retain CE − forget CE`` (a
retain sample as large as the forget set) marks, in every convolution, the ``init_rate`` fraction of weights
with the smallest gradient magnitude; those are re-initialised (Kaiming, fan-out) and train at full rate
while every other conv weight trains at ``slow_rate`` of it, on the retain set."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import summed_gradient


@dataclass
class MSGConfig(UnlearnConfig):
    epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 128
    schedule: str = "cosine"
    init_rate: float = 0.3
    slow_rate: float = 0.1


@register_unlearner
class MSG(Unlearner):
    name = "msg"
    Config = MSGConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-4, 1e-1, "log"), "init_rate": (0.05, 0.6, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        retain_data = self.retain_data(retain, forget, condensed)
        pick = torch.randperm(len(retain_data), generator=torch.Generator().manual_seed(self.cfg.seed))[: len(forget)]
        toward = summed_gradient(model, type(retain_data)(retain_data.images[pick], retain_data.labels[pick]))
        away = summed_gradient(model, forget)
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"msg re-initialises convolution weights; model '{model.arch}' has none.")
        hooks = []
        with torch.no_grad():
            for name, conv in convs:
                g = (toward[f"{name}.weight"] - away[f"{name}.weight"]).abs()
                count = int(round(self.cfg.init_rate * g.numel()))
                small = torch.zeros(g.numel(), dtype=torch.bool, device=g.device)
                small[torch.topk(-g.flatten(), count).indices] = True
                small = small.view_as(g)
                fresh = torch.empty_like(conv.weight)
                nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu")
                conv.weight.copy_(torch.where(small, fresh, conv.weight))
                rate = torch.where(small, 1.0, self.cfg.slow_rate)
                hooks.append(conv.weight.register_hook(lambda grad, rate=rate: grad * rate))
        try:
            train(model, retain_data, self.schedule(seed=self.cfg.seed), desc="msg")
        finally:
            for hook in hooks:
                hook.remove()
        return model
