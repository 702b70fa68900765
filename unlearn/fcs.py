"""FCS, forget–contrast–strengthen (a NeurIPS 2023 Machine Unlearning Challenge method as packaged in
xcadet/deepunlearn, ``kgltop1``). One pass pulls the forget outputs towards the uniform distribution; then each
epoch contrasts forget outputs against retain outputs (a softmax over their similarities, at
``temperature``) and strengthens the retain set with a pass of cross-entropy."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dcu.seeds import derive
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import batches


@dataclass
class FCSConfig(UnlearnConfig):
    epochs: int = 3               # contrast + strengthen rounds (the reference: 8)
    lr: float = 2e-3              # retain pass
    forget_lr: float = 3e-4       # contrast pass
    uniform_lr: float = 5e-3      # first pass
    batch_size: int = 128
    temperature: float = 1.15


@register_unlearner
class FCS(Unlearner):
    name = "fcs"
    Config = FCSConfig
    search_space = {"epochs": (1, 8, "int"), "lr": (1e-4, 1e-2, "log"), "forget_lr": (1e-5, 1e-2, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        c = self.cfg
        retain_data = self.retain_data(retain, forget, condensed)

        def to_uniform(m, x, y, idx):
            return -F.log_softmax(m(x), 1).mean()      # KL to uniform up to a constant

        retain_batches = batches(retain_data, c.batch_size, seed=derive(c.seed, "retain batches"), device=self.device)

        def contrast(m, x, y, idx):
            with torch.no_grad():
                anchors = m(next(retain_batches)[0])
            return -F.log_softmax(m(x) @ anchors.T / c.temperature, 1).mean()

        train(model, forget, self.schedule(epochs=1, lr=c.uniform_lr, schedule="constant", weight_decay=0.0,
                                           seed=c.seed), loss_fn=to_uniform, desc="fcs uniform")
        for epoch in range(c.epochs):
            train(model, forget, self.schedule(epochs=1, lr=c.forget_lr, schedule="cosine", weight_decay=0.0,
                                               seed=derive(c.seed, "contrast", epoch)), loss_fn=contrast, desc=f"fcs contrast {epoch + 1}")
            train(model, retain_data, self.schedule(epochs=1, lr=c.lr, schedule="constant", weight_decay=1e-2,
                                                    seed=derive(c.seed, "strengthen", epoch)), desc=f"fcs strengthen {epoch + 1}")
        return model
