"""Fisher forgetting (Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020; the ``fisher``
baseline of xcadet/deepunlearn): add Gaussian noise to every weight, scaled by ``F^{-1/4}`` where ``F`` is the
diagonal Fisher of the retain set, so weights the retain set does not need are scrambled and those it needs
barely move (the paper's optimal scale; deepunlearn's ``fisher_new`` uses ``sqrt(α/F)``, i.e. ``F^{-1/2}``).
The scale is capped at ``max_std``. When a request removes whole classes, the classifier rows of
those classes are replaced by small noise around zero (mean 0, variance 1e-3), as Golatkar et al.'s class
forgetting code does (``get_mean_var``: ``mu[class_to_forget] = 0``, ``var = 1e-4``, ×10 for the last layer);
without it the noise alone cannot take a class away without taking the others with it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from dcu.models import num_classes

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import classes_without_retain, fisher_diagonal


@dataclass
class FisherConfig(UnlearnConfig):
    alpha: float = 1e-3           # noise scale: std = alpha · F^(-1/4)
    max_std: float = 0.05
    max_samples: Optional[int] = 2000
    class_row_std: float = 1e-3 ** 0.5   # a forgotten class's classifier row: N(0, this²)


@register_unlearner
class Fisher(Unlearner):
    name = "fisher"
    Config = FisherConfig
    search_space = {"alpha": (1e-5, 1e-1, "log"), "max_std": (1e-3, 0.5, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        importance = fisher_diagonal(model, self.retain_data(retain, forget, condensed),
                                     max_samples=self.cfg.max_samples, seed=self.cfg.seed)
        generator = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                std = (self.cfg.alpha * importance[name].clamp_min(1e-30).pow(-0.25)).clamp(max=self.cfg.max_std)
                p.add_(std * torch.randn(p.shape, generator=generator).to(p.device))
            absent = classes_without_retain(retain, num_classes(model))
            classes = sorted(set(forget.labels[absent[forget.labels]].tolist()))
            if classes:
                for p in model.get_classifier().parameters():
                    p[classes] = self.cfg.class_row_std * torch.randn(p[classes].shape, generator=generator).to(p.device)
        self.stats["forgotten_classes"] = classes
        return model
