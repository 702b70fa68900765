"""Selective Synaptic Dampening (Foster et al., AAAI 2024; if-loops/selective-synaptic-dampening). No
training: with the diagonal Fisher of the forget set ``I_f`` and of the whole training set ``I_d``, every
weight with ``I_f > α·I_d`` is multiplied by ``min(λ·I_d / I_f, 1)``; every other weight is left exactly as
it was.

The importances are computed as the reference code computes them (``calc_importance``): in eval mode, per
mini-batch of 128 the squared gradient of the batch's mean cross-entropy, averaged over batches, over the
whole training set (retain then forget, in order) for ``I_d`` and over the forget set for ``I_f``. Earlier
versions of dcu used the per-sample Fisher diagonal instead, for which ``I_f / I_d`` can never exceed
``|D| / |D_f|``, so the paper's α = 10 selected no weight on a 10% request; with mini-batch means the
training set's gradients average out and α = 10 selects what the paper's does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import batch_gradient_importance, joined


@dataclass
class SSDConfig(UnlearnConfig):
    alpha: float = 10.0            # selection: how much more the forget set must matter to a weight
    dampening: float = 1.0         # λ
    max_samples: Optional[int] = None   # training images used for I_d (a seeded random sample; None: all, as the paper)
    batch_size: int = 128          # the reference's mini-batch (its -b default)


@register_unlearner
class SSD(Unlearner):
    name = "ssd"
    Config = SSDConfig
    search_space = {"alpha": (1.0, 100.0, "log"), "dampening": (0.1, 5.0, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        data, _ = joined(self.retain_data(retain, forget, condensed), forget)
        c = self.cfg
        importance_all = batch_gradient_importance(model, data, batch_size=c.batch_size, max_samples=c.max_samples,
                                                   seed=c.seed)
        importance_forget = batch_gradient_importance(model, forget, batch_size=c.batch_size)
        selected = 0
        with torch.no_grad():
            for name, p in model.named_parameters():
                i_d, i_f = importance_all[name], importance_forget[name]
                chosen = i_f > self.cfg.alpha * i_d
                factor = (self.cfg.dampening * i_d / i_f.clamp_min(1e-30)).clamp(max=1.0)
                p.copy_(torch.where(chosen, p * factor, p))
                selected += int(chosen.sum())
        self.stats["dampened_weights"] = selected
        return model
