"""Influence unlearning (IU) with a WoodFisher inverse Hessian (Koh & Liang, ICML 2017; Izzo et al., AISTATS
2021; Jia et al., NeurIPS 2023, OPTML-Group/Unlearn-Sparse; the ``influence`` baseline of xcadet/deepunlearn).
One Newton step removes the forget set: ``θ ← θ + α·(n_f / n)·H⁻¹ ∇L_forget``, where ``H = λI + (1/N)·Σ gᵢgᵢᵀ``
is the empirical Fisher of ``N`` retain samples, inverted exactly by the Sherman–Morrison recursion
(WoodFisher, Singh & Alistarh, NeurIPS 2020) without ever forming a matrix of the parameters' size squared."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import per_sample_gradients, summed_gradient


@dataclass
class InfluenceConfig(UnlearnConfig):
    alpha: float = 1.0            # step scale
    samples: int = 256            # retain samples in the Fisher (N)
    damping: float = 1e-3         # λ


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(g.shape[0], -1) if g.dim() > 0 else g.view(-1, 1) for g in grads.values()], 1)


def woodfisher_solve(sample_grads: torch.Tensor, v: torch.Tensor, damping: float) -> torch.Tensor:
    """``(λI + (1/N)·GᵀG)⁻¹ v`` for per-sample gradients ``G`` (N × d), by N rank-one updates."""
    n, d = sample_grads.shape
    updates = torch.zeros(n, d, dtype=v.dtype, device=v.device)    # row j: H_{j-1}⁻¹ g_j
    scales = torch.zeros(n, dtype=v.dtype, device=v.device)         # 1 / (N + g_jᵀ H_{j-1}⁻¹ g_j)
    for j, g in enumerate(sample_grads):
        u = g / damping - (scales[:j] * (updates[:j] @ g)) @ updates[:j]
        updates[j], scales[j] = u, 1.0 / (n + torch.dot(g, u))
    return v / damping - (scales * (updates @ v)) @ updates


@register_unlearner
class Influence(Unlearner):
    name = "influence"
    Config = InfluenceConfig
    search_space = {"alpha": (0.01, 100.0, "log"), "damping": (1e-5, 1e-1, "log")}

    def run(self, model, retain, forget, *, condensed, val):
        retain_data = self.retain_data(retain, forget, condensed)
        pick = torch.randperm(len(retain_data), generator=torch.Generator().manual_seed(self.cfg.seed))[: self.cfg.samples]
        rows = [_flat(g) for g in per_sample_gradients(model, retain_data.images[pick], retain_data.labels[pick])]
        forget_grad = summed_gradient(model, forget)
        v = torch.cat([g.flatten() for g in forget_grad.values()]) / len(forget)
        step = woodfisher_solve(torch.cat(rows), v, self.cfg.damping)
        step = step * self.cfg.alpha * len(forget) / (len(forget) + len(retain))
        with torch.no_grad():
            offset = 0
            for p in model.parameters():
                p.add_(step[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return model
