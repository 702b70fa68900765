"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023;
vikram2000b/bad-teaching-unlearning): the student copies the original (the competent teacher) on a sample of
the retain set and a randomly initialised network (the incompetent teacher) on the forget set, by KL."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from dcu.models import fresh_model
from dcu.train import train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import joined, kl_to


@dataclass
class BadTeacherConfig(UnlearnConfig):
    epochs: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: str = "constant"
    retain_fraction: float = 0.3   # share of the retain set used (the reference's 30%)
    temperature: float = 1.0


@register_unlearner
class BadTeacher(Unlearner):
    name = "bad_teacher"
    Config = BadTeacherConfig
    search_space = {"epochs": (1, 5, "int"), "lr": (1e-5, 1e-2, "log"), "retain_fraction": (0.1, 1.0, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        good = copy.deepcopy(model).eval()
        bad = fresh_model(model).to(self.device).eval()   # random, under the seed the base class set
        retain_data = self.retain_data(retain, forget, condensed)
        keep = torch.randperm(len(retain_data), generator=torch.Generator().manual_seed(self.cfg.seed))
        keep = keep[: max(1, int(round(self.cfg.retain_fraction * len(retain_data))))]
        data, is_forget = joined(type(retain_data)(retain_data.images[keep], retain_data.labels[keep]), forget)
        is_forget = is_forget.to(self.device)

        def loss_fn(m, x, y, idx):
            with torch.no_grad():
                teacher = torch.where(is_forget[idx].view(-1, 1), bad(x), good(x))
            return kl_to(m(x), teacher, self.cfg.temperature)

        train(model, data, self.schedule(seed=self.cfg.seed), loss_fn=loss_fn, desc="bad teacher")
        return model
