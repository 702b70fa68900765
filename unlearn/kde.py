"""KDE, knowledge distillation with re-initialised ends (a NeurIPS 2023 Machine Unlearning Challenge method as
packaged in xcadet/deepunlearn, ``kgltop6``): the stem convolution and the classifier are re-initialised; the
network is warmed up by distillation from the original on held-out training images (``val``), then trained
on the retain set with cross-entropy plus distillation (soft cross-entropy and KL at ``temperature``)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import kl_to


@dataclass
class KDEConfig(UnlearnConfig):
    warmup_epochs: int = 3
    warmup_lr: float = 2e-3
    epochs: int = 3
    lr: float = 2e-3
    batch_size: int = 128
    schedule: str = "cosine"
    temperature: float = 5.0


def reset_ends(model: nn.Module) -> None:
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in {id(layers[0]): layers[0], id(layers[-1]): layers[-1]}.values():
        m.reset_parameters()


@register_unlearner
class KDE(Unlearner):
    name = "kde"
    Config = KDEConfig
    search_space = {"epochs": (1, 8, "int"), "warmup_epochs": (0, 5, "int"), "lr": (1e-4, 1e-2, "log"),
                    "temperature": (1.0, 10.0, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        c, t = self.cfg, self.cfg.temperature
        teacher = copy.deepcopy(model).eval()
        reset_ends(model)

        def teacher_logits(x):
            with torch.no_grad():
                return teacher(x)

        def distil(m, x, y, idx):
            return kl_to(m(x), teacher_logits(x), t)

        def distil_and_fit(m, x, y, idx):
            out, target = m(x), teacher_logits(x)
            soft = -(F.softmax(target / t, 1) * F.log_softmax(out / t, 1)).sum(1).mean()
            return soft + F.cross_entropy(out, y) + kl_to(out, target, t)

        if c.warmup_epochs > 0:
            if val is None or len(val) == 0:
                raise ValueError("kde warms up on held-out training images; pass val (a validation split).")
            train(model, val, self.schedule(epochs=c.warmup_epochs, lr=c.warmup_lr, schedule="constant", seed=c.seed),
                  loss_fn=distil, desc="kde warm-up")
        train(model, self.retain_data(retain, forget, condensed), self.schedule(seed=c.seed), loss_fn=distil_and_fit,
              desc="kde")
        return model
