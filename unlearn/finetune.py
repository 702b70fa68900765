"""Fine-tuning (FT) on the retain set: catastrophic forgetting as unlearning (Golatkar et al., CVPR 2020;
the ``finetune`` baseline of xcadet/deepunlearn and OPTML-Group/Unlearn-Sparse). A few epochs at a small
learning rate, cosine decay, the original's augmentation."""
from __future__ import annotations

from dataclasses import dataclass

from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class FinetuneConfig(UnlearnConfig):
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"


@register_unlearner
class Finetune(Unlearner):
    name = "finetune"
    Config = FinetuneConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-3, 1e-1, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        train(model, self.retain_data(retain, forget, condensed), self.schedule(seed=self.cfg.seed), desc="finetune")
        return model
