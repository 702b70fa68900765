"""ℓ1-sparse unlearning: fine-tune on the retain set with an ℓ1 penalty on the weights whose strength decays
linearly to zero, ``γ·(1 − t/T)·‖θ‖₁`` (Jia et al., "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023; OPTML-Group/Unlearn-Sparse)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class L1SparseConfig(UnlearnConfig):
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"
    gamma: float = 5e-5          # ℓ1 strength at the first step


@register_unlearner
class L1Sparse(Unlearner):
    name = "l1_sparse"
    Config = L1SparseConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-3, 1e-1, "log"), "gamma": (1e-6, 1e-3, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        data = self.retain_data(retain, forget, condensed)
        cfg = self.schedule(seed=self.cfg.seed)
        total = cfg.epochs * math.ceil(len(data) / cfg.batch_size)
        step = [0]

        def loss_fn(m, x, y, idx):
            strength = self.cfg.gamma * max(0.0, 1 - step[0] / total)
            step[0] += 1
            return F.cross_entropy(m(x), y) + strength * sum(p.abs().sum() for p in m.parameters())

        train(model, data, cfg, loss_fn=loss_fn, desc="l1-sparse")
        return model
