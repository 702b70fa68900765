"""Modular unlearning (Khan, "Dataset Condensation Driven Machine Unlearning", 2024; algebraicdianuj/DC_U).
The network is split into a Beginning (the first block), an Intermediate part and a Final block (the head).
For ``rounds`` rounds the Beginning is trained on the (reduced) retain set and then, except in the last
``final_skip`` rounds, the Final block on the condensed images; last, the Intermediate part is trained on the
retain set. With ``--condensed`` both sets are the refreshed condensed set, as in the paper's fast path."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch.nn as nn

from dcu.seeds import derive
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class ModularConfig(UnlearnConfig):
    rounds: int = 3
    beginning_epochs: int = 1
    final_epochs: int = 5
    intermediate_epochs: int = 1
    final_skip: int = 1
    lr: float = 0.01
    intermediate_lr: float = 0.005
    batch_size: int = 128
    schedule: str = "constant"


def _train_only(model: nn.Module, trainable: Iterable[nn.Module], data, cfg, desc: str) -> None:
    chosen = {id(p) for block in trainable for p in block.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    try:
        train(model, data, cfg, desc=desc)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


@register_unlearner
class Modular(Unlearner):
    name = "modular"
    Config = ModularConfig
    search_space = {"rounds": (1, 6, "int"), "lr": (1e-4, 1e-1, "log"), "intermediate_epochs": (1, 5, "int")}

    def run(self, model, retain, forget, *, condensed, val):
        c = self.cfg
        stages = model.stages()
        if len(stages) < 3:
            raise ValueError(f"modular needs at least 3 blocks; model '{model.arch}' has {len(stages)}.")
        beginning, intermediate, final = stages[:1], stages[1:-1], stages[-1:]
        data = self.retain_data(retain, forget, condensed)
        for r in range(c.rounds):
            _train_only(model, beginning, data, self.schedule(epochs=c.beginning_epochs, seed=derive(c.seed, "round", r)),
                        f"modular beginning {r + 1}")
            if r < c.rounds - c.final_skip:
                _train_only(model, final, data, self.schedule(epochs=c.final_epochs, seed=derive(c.seed, "round", r)),
                            f"modular final {r + 1}")
        _train_only(model, intermediate, data, self.schedule(epochs=c.intermediate_epochs, lr=c.intermediate_lr,
                                                             seed=c.seed), "modular intermediate")
        return model
