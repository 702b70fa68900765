"""CF-k and EU-k (Goel et al., "Towards Adversarial Evaluations for Inexact Machine Unlearning", 2022; the
``cfk``/``euk`` baselines of xcadet/deepunlearn). Only the last ``k`` blocks of the network move: CF-k
(catastrophic forgetting) fine-tunes them on the retain set; EU-k (exact unlearning) re-initialises them and
trains them from scratch, which is exact for the forget set's influence on those blocks."""
from __future__ import annotations

from dataclasses import dataclass

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import stage_parameters


@dataclass
class CFKConfig(UnlearnConfig):
    k: int = 2                    # blocks trained, counted from the head (1: the classifier alone)
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"


@dataclass
class EUKConfig(CFKConfig):
    epochs: int = 10
    lr: float = 0.05
    schedule: str = "onecycle"


@register_unlearner
class CFK(Unlearner):
    name = "cf_k"
    Config = CFKConfig
    reinitialise = False
    search_space = {"k": (1, 3, "int"), "epochs": (1, 10, "int"), "lr": (1e-3, 1e-1, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        tail = stage_parameters(model, self.cfg.k)
        if self.reinitialise:
            from dcu.models import split_model

            for module in split_model(model, self.cfg.k)[1].modules():
                if module is not model and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        for name, p in model.named_parameters():
            p.requires_grad_(name in tail)
        try:
            train(model, self.retain_data(retain, forget, condensed), self.schedule(seed=self.cfg.seed), desc=self.name)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        return model


@register_unlearner
class EUK(CFK):
    name = "eu_k"
    Config = EUKConfig
    reinitialise = True
    search_space = {"k": (1, 3, "int"), "epochs": (5, 30, "int"), "lr": (1e-3, 1e-1, "log")}
