"""NegGrad+ (NG+): descend on the retain set while ascending on the forget set,
``α·(retain CE + l2·‖θ − θ₀‖²) − (1 − α)·forget CE`` (Kurmanji et al., "Towards Unbounded Machine Unlearning",
NeurIPS 2023, meghdadk/SCRUB; the ``neggradplus`` baseline of xcadet/deepunlearn). One forget batch is drawn
alongside every retain batch."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from dcu.seeds import derive
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import batches


@dataclass
class NegGradPlusConfig(UnlearnConfig):
    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"
    alpha: float = 0.95          # weight of the retain side
    l2: float = 0.0              # pull towards the original weights (0: the munl variant)


@register_unlearner
class NegGradPlus(Unlearner):
    name = "neggrad_plus"
    Config = NegGradPlusConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-4, 1e-1, "log"), "alpha": (0.5, 0.999, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        cfg = self.schedule(seed=self.cfg.seed)
        forget_batches = batches(forget, cfg.batch_size, seed=derive(self.cfg.seed, "forget batches"), augment=cfg,
                                 device=self.device)
        start = [p.detach().clone() for p in model.parameters()]
        alpha, l2 = self.cfg.alpha, self.cfg.l2

        def loss_fn(m, x, y, idx):
            fx, fy, _ = next(forget_batches)
            loss = alpha * F.cross_entropy(m(x), y) - (1 - alpha) * F.cross_entropy(m(fx), fy)
            if l2:
                loss = loss + alpha * l2 * sum((p - p0).pow(2).sum() for p, p0 in zip(m.parameters(), start))
            return loss

        train(model, self.retain_data(retain, forget, condensed), cfg, loss_fn=loss_fn, desc="neggrad+")
        return model
