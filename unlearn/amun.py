"""AMUN, adversarial machine unlearning (Ebrahimpour-Boroojeny et al., ICML 2025; Ali-E/AMUN). For every forget
sample the closest adversarial example is found once, on the original model: untargeted L2-PGD at radius ε,
ε doubling from ``eps_start`` until the prediction flips (``steps`` steps per round). Each example is labelled
with the model's own wrong prediction, and the model is fine-tuned on retain ∪ adversarial examples, or on
forget ∪ adversarial examples when no retain data may be used (``use_retain=False``). Radii are in the
model's (normalised) input space."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.data import ImageSet
from dcu.train import model_device, on_device, train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import joined


@dataclass
class AMUNConfig(UnlearnConfig):
    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"
    use_retain: bool = True
    eps_start: float = 0.04
    max_rounds: int = 8
    steps: int = 50
    attack_batch: int = 256


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def l2_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, steps: int) -> torch.Tensor:
    """Untargeted L2-PGD within per-sample radii ``eps``; returns the perturbed images."""
    radius = eps.view(-1, *([1] * (x.dim() - 1)))
    step_size = 2.5 * radius / steps
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + step_size * g / _per_sample_norm(g)
            delta = delta * (radius / _per_sample_norm(delta)).clamp(max=1.0)
    return (x + delta).detach()


def closest_adversarial(model: nn.Module, data: ImageSet, cfg: AMUNConfig) -> ImageSet:
    """The smallest-radius flipping PGD example of every sample (ε doubling), labelled with the wrong prediction;
    found on the model's device, returned on the CPU."""
    model.eval()
    device = model_device(model)
    source, truth = on_device(data.images, device), on_device(data.labels, device)
    images, labels = source.clone(), torch.empty_like(truth)
    pending = torch.arange(len(data), device=device)
    eps = torch.full((len(data),), cfg.eps_start, device=device)
    for _ in range(cfg.max_rounds):
        if len(pending) == 0:
            break
        still = []
        for start in range(0, len(pending), cfg.attack_batch):
            idx = pending[start : start + cfg.attack_batch]
            adv = l2_pgd(model, source[idx], truth[idx], eps[idx], cfg.steps)
            with torch.no_grad():
                pred = model(adv).argmax(1)
            flipped = pred != truth[idx]
            images[idx[flipped]], labels[idx[flipped]] = adv[flipped], pred[flipped]
            still.append(idx[~flipped])
        pending = torch.cat(still)
        eps[pending] *= 2
    if len(pending):   # never flipped within max_rounds: keep the last attempt, labelled with the runner-up class
        with torch.no_grad():
            logits = model(images[pending]).scatter(1, truth[pending].view(-1, 1), float("-inf"))
        labels[pending] = logits.argmax(1)
    return ImageSet(images.cpu(), labels.cpu())


@register_unlearner
class AMUN(Unlearner):
    name = "amun"
    Config = AMUNConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-4, 1e-1, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        adversarial = closest_adversarial(model, forget, self.cfg)
        base = self.retain_data(retain, forget, condensed) if self.cfg.use_retain else forget
        data, _ = joined(base, adversarial)
        self.stats["adversarial_examples"] = len(adversarial)
        train(model, data, self.schedule(seed=self.cfg.seed), desc="amun")
        return model
