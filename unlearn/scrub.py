"""SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023; meghdadk/SCRUB). The
original is the teacher. Each epoch the student first moves *away* from the teacher on the forget set (max
steps, during the first ``forget_epochs`` epochs), then *towards* it on the retain set with the cross-entropy of
the true labels (min steps): ``min γ·CE + α·KL(teacher‖student)`` on retain, ``max KL`` on forget.

Here each epoch runs its min steps before its max steps: at the start the student *is* the teacher, where
the KL's gradient is exactly zero, so a max pass first does nothing in a network without batch norm or
dropout (the reference's ResNets differ from their eval-mode teacher through batch norm). The last epochs,
past ``forget_epochs``, are min steps only, as in the reference."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dcu.seeds import derive
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import kl_to


@dataclass
class ScrubConfig(UnlearnConfig):
    # the reference's small-scale CIFAR settings (meghdadk/SCRUB): sgda_epochs 3, msteps 2, lr 5e-4,
    # sgda_batch_size 128, del_batch_size 32, kd_T 4, alpha 0.001, gamma 0.99 (its lr decay at epochs 3, 5, 9
    # never acts within 3 epochs)
    epochs: int = 3
    forget_epochs: int = 2        # epochs that end with a pass of max steps on the forget set (msteps)
    lr: float = 5e-4
    batch_size: int = 128
    batch_forget: int = 32
    schedule: str = "constant"
    temperature: float = 4.0
    alpha: float = 0.001          # KL weight on retain (SCRUB's alpha)
    gamma: float = 0.99           # CE weight on retain (SCRUB's gamma)


@register_unlearner
class Scrub(Unlearner):
    name = "scrub"
    Config = ScrubConfig
    search_space = {"epochs": (1, 10, "int"), "forget_epochs": (1, 5, "int"), "lr": (1e-4, 5e-2, "log"),
                    "alpha": (0.01, 2.0, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        teacher = copy.deepcopy(model).eval()
        retain_data = self.retain_data(retain, forget, condensed)
        c, t = self.cfg, self.cfg.temperature

        def teacher_logits(x):
            with torch.no_grad():
                return teacher(x)

        def away(m, x, y, idx):
            return -kl_to(m(x), teacher_logits(x), t)

        def towards(m, x, y, idx):
            out = m(x)
            return c.gamma * F.cross_entropy(out, y) + c.alpha * kl_to(out, teacher_logits(x), t)

        for epoch in range(c.epochs):
            seed = derive(c.seed, "epoch", epoch)
            train(model, retain_data, self.schedule(epochs=1, seed=seed), loss_fn=towards, desc=f"scrub min {epoch + 1}")
            if epoch < c.forget_epochs:
                train(model, forget, self.schedule(epochs=1, seed=seed, batch_size=c.batch_forget), loss_fn=away,
                      desc=f"scrub max {epoch + 1}")
        return model
