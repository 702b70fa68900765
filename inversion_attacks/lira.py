"""Likelihood-ratio membership inference with shadow models.

* ``lira`` — Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022 (reference
  tensorflow/privacy ``research/mi_lira_2021``). For each sample, the logit-scaled confidence
  φ = log p_y − log(1 − p_y) of shadows that trained on it (IN) and of shadows that did not (OUT) are fitted
  with Gaussians; the target's φ scores as log N(φ; IN) − log N(φ; OUT) (``online``), or as the one-sided
  p-value against OUT alone (``online=False``, the offline attack), averaged over the query views (the
  image and its mirror). ``fixed_variance`` uses one variance over all samples, as the paper suggests with
  few shadows. Models are queried in eval mode (the reference queries in train mode, which lets batch norm
  leak batch statistics).
* ``rmia`` — Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024 (reference
  privacytrustlab/ml_privacy_meter). The ratio p(x | θ) / p(x), with p(x) the reference models' mean
  probability (offline: OUT models only, rescaled by ``a``), is compared with the same ratio on population
  samples z (the non-members given); the score is the fraction of z that x dominates by more than ``gamma``.

Members are the forget set, non-members held-out training images; both must be in the store's pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import Attack, AttackConfig, Scores, register_attack
from .shadow import open_store, query_logits


def _label_index(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gather indices of the true class for logits shaped (..., samples, queries, classes)."""
    return labels.view(-1, 1, 1).expand(*logits.shape[:-1], 1)


def scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """φ = logit(p_y), computed stably as z_y − logsumexp_{j≠y} z_j, per query view."""
    index = _label_index(logits, labels)
    true = logits.gather(-1, index).squeeze(-1)
    others = logits.scatter(-1, index, float("-inf"))
    return true - torch.logsumexp(others, -1)


def _gaussian_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - std.log()


@dataclass
class ShadowAttackConfig(AttackConfig):
    shadows: Optional[str] = None      # the store (a folder made by `dcu shadows`)


@dataclass
class LiRAConfig(ShadowAttackConfig):
    online: bool = True
    fixed_variance: bool = False


class _ShadowAttack(Attack):
    def _inputs(self, model, members, non_members):
        store = open_store(self.cfg.shadows)
        data_ids = torch.cat([members.ids, non_members.ids])
        labels = torch.cat([members.labels, non_members.labels])
        images = torch.cat([members.images, non_members.images])
        shadow_logits, shadow_in = store.load(data_ids)
        target_logits = query_logits(model, images, store.flip)
        return store, labels, shadow_logits, shadow_in, target_logits


@register_attack
class LiRA(_ShadowAttack):
    name = "lira"
    Config = LiRAConfig

    def score(self, model, members, non_members, *, retain=None) -> Scores:
        store, labels, shadow_logits, shadow_in, target_logits = self._inputs(model, members, non_members)
        scores, extra = lira_scores(scaled_confidence(shadow_logits, labels), shadow_in,
                                    scaled_confidence(target_logits, labels), self.cfg.online, self.cfg.fixed_variance)
        return Scores(scores, None, extra)


def lira_scores(phi_shadow: torch.Tensor, shadow_in: torch.Tensor, phi_target: torch.Tensor, online: bool = True,
                fixed_variance: bool = False):
    """Per-sample LiRA scores from shadow confidences ``phi_shadow`` (S, N, Q), their IN mask (S, N) and the
    target's confidences (N, Q); returns (scores, details)."""
    inside = shadow_in.unsqueeze(-1).float()
    outside = 1 - inside

    def stats(weight):
        count = weight.sum(0).clamp(min=1)
        mean = (phi_shadow * weight).sum(0) / count
        var = (((phi_shadow - mean) ** 2) * weight).sum(0) / (count - 1).clamp(min=1)
        return mean, var.sqrt()

    mean_out, std_out = stats(outside)
    mean_in, std_in = stats(inside)
    if fixed_variance:
        std_out = torch.full_like(std_out, float(std_out.median()))
        std_in = torch.full_like(std_in, float(std_in.median()))
    std_out, std_in = std_out.clamp(min=1e-3), std_in.clamp(min=1e-3)
    if online:
        per_query = _gaussian_logpdf(phi_target, mean_in, std_in) - _gaussian_logpdf(phi_target, mean_out, std_out)
    else:  # one-sided: how unlikely so high a confidence is for a model that never saw the sample
        per_query = -torch.special.log_ndtr(-(phi_target - mean_out) / std_out)
    counts = shadow_in.sum(0)
    return per_query.mean(1), {"online": online, "fixed_variance": fixed_variance, "shadows": int(shadow_in.shape[0]),
                               "queries": int(phi_target.shape[1]), "min_in": int(counts.min()),
                               "min_out": int((~shadow_in).sum(0).min())}


@dataclass
class RMIAConfig(ShadowAttackConfig):
    offline_a: float = 0.3     # p(x) = ((1 + a)·mean OUT probability + 1 − a) / 2 (the paper's offline scaling)
    gamma: float = 1.0
    online: bool = False


@register_attack
class RMIA(_ShadowAttack):
    name = "rmia"
    Config = RMIAConfig

    def score(self, model, members, non_members, *, retain=None) -> Scores:
        store, labels, shadow_logits, shadow_in, target_logits = self._inputs(model, members, non_members)
        is_member = torch.cat([torch.ones(len(members), dtype=torch.bool), torch.zeros(len(non_members), dtype=torch.bool)])

        def true_probability(logits):   # mean over the query views
            return logits.softmax(-1).gather(-1, _label_index(logits, labels)).squeeze(-1).mean(-1)

        p_target, p_shadow = true_probability(target_logits), true_probability(shadow_logits)
        if self.cfg.online:
            p_x = p_shadow.mean(0)
        else:
            out = (~shadow_in).float()
            p_out = (p_shadow * out).sum(0) / out.sum(0).clamp(min=1)
            p_x = 0.5 * ((1 + self.cfg.offline_a) * p_out + 1 - self.cfg.offline_a)
        ratio = p_target / p_x.clamp(min=1e-12)
        population = ratio[~is_member]
        scores = (ratio.view(-1, 1) / population.view(1, -1) > self.cfg.gamma).float().mean(1)
        return Scores(scores, None, {"online": self.cfg.online, "shadows": int(shadow_in.shape[0]),
                                     "population": int(len(population))})
