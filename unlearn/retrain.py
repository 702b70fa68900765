"""Retrain from scratch on the retain set with the original schedule: the gold reference every unlearning
paper compares against (e.g. Triantafillou et al., "Are we making progress in unlearning?", 2024)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dcu.models import fresh_model
from dcu.train import model_device, train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class RetrainConfig(UnlearnConfig):
    epochs: Optional[int] = None   # None: as the original was trained
    lr: Optional[float] = None


@register_unlearner
class Retrain(Unlearner):
    name = "retrain"
    Config = RetrainConfig

    def run(self, model, retain, forget, *, condensed, val):
        fresh = fresh_model(model).to(model_device(model))  # seeded by the base class
        data = self.retain_data(retain, forget, condensed)
        train(fresh, data, self.schedule(seed=self.cfg.seed), desc="retrain")
        return fresh
