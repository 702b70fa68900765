"""Per-example verdicts from model *ensembles*: many models unlearned by a method against many models
retrained without the forget set (docs/method.md, section 4).

Every score reads banks of logits: ``(models, examples, classes)`` tensors of what each model of an
ensemble predicts for the same examples, so a new score needs no training. Each returns a
:class:`EnsembleResult` with a value per example and the aggregate the literature reports.

* ``forgetting_score`` — the NeurIPS 2023 Machine Unlearning Challenge (Triantafillou et al. 2024, "Are we
  making progress in unlearning?"; reference google-deepmind/unlearning_evaluation ``metric.py``). Per forget
  example, the logit-scaled confidences of the unlearned models and of the retrained models are two samples;
  single-threshold and interval ("double-threshold") decision rules give (FPR, FNR) pairs, and
  ε = max over rules of max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR), δ = 1e-5, capped at 50
  (a rule with FPR = FNR = 0 gives ∞; one with only one of them 0 is discarded; a unlearned distribution
  whose range is under 1% of the other's gets the cap). An example scores 2 / 2^n for ε in the n-th bin of
  width 0.5 up to ⌈ln(N − 1)⌉, 0 beyond; the forgetting quality F is the mean, and the final score is
  F × (retain accuracy ratio) × (test accuracy ratio), unlearned over retrained.
* ``ulira`` — U-LiRA (Hayes et al., SaTML 2025, "Inexact Unlearning Needs More Careful Evaluations"): each
  model of the two ensembles is in turn the target; per example, Gaussians are fitted to the logit-scaled
  confidences of the *other* unlearned and retrained models, and the target scores log N(φ; unlearned) −
  log N(φ; retrained). AUC and TPR at 1% / 0.1% FPR of "was this model unlearned?" over all (model,
  example) pairs: 0.5 is indistinguishable from retraining.
* ``loss_lr_per_model`` — the population loss attack (``loss_lr``) on each model of an ensemble, from its
  stored logits: the number an average-case audit reports, shown beside the per-example verdicts.
* ``klom`` — KL divergence of margins (Georgiev et al., ICLR 2025; reference RoyRin/data-unlearning-bench
  ``eval.py``): per example, D_KL(unlearned ‖ retrained) between the two ensembles' margins
  z_y − logsumexp_{j≠y} z_j, on 20 shared bins over their joint range (clipped to ±100, 1e-5 floor on the
  retrained side); reported as the 95th percentile over the examples of a split.

Beside each score, :func:`ceiling` gives the same score for two disjoint halves of the retrain ensemble:
what a perfect method would reach with the same number of models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np
import torch

from .base import roc_metrics
from .lira import scaled_confidence
from .loss_lr import cross_validated_accuracy

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0
BIN_WIDTH = 0.5


@dataclass
class EnsembleResult:
    name: str
    value: float                                   # the aggregate the literature reports
    per_example: torch.Tensor                      # (examples,)
    extra: Dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Dict[str, Any]:
        return {"name": self.name, "value": self.value, **self.extra}


def confidences(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit-scaled confidence φ = log p_y − log(1 − p_y) of every model on every example, (models, examples).

    ``logits`` is (models, examples, classes), or (models, examples, views, classes), whose views are averaged
    (the image and its mirror, as LiRA queries)."""
    if logits.dim() == 3:
        logits = logits.unsqueeze(2)
    return scaled_confidence(logits.double(), labels).mean(-1)


# --- the challenge's forgetting score ------------------------------------------------------------------------

def _rates_single(pos: torch.Tensor, neg: torch.Tensor):
    """(FPR, FNR, TPR, TNR) of "φ ≥ t means positive" for thresholds t every 0.01 over the joint range."""
    low, high = float(torch.minimum(pos.min(), neg.min())), float(torch.maximum(pos.max(), neg.max()))
    t = torch.linspace(low, high, max(1, math.ceil((high - low) * THRESHOLDS_PER_UNIT)), dtype=torch.float64)
    tpr = _at_least(pos, t)
    fpr = _at_least(neg, t)
    return fpr, 1 - tpr, tpr, 1 - fpr


def _at_least(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    ordered = torch.sort(sample).values
    return (len(ordered) - torch.searchsorted(ordered, t, right=False)).double() / len(ordered)


def _within(sample: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    ordered = torch.sort(sample).values
    inside = torch.searchsorted(ordered, right, right=True) - torch.searchsorted(ordered, left, right=False)
    return inside.clamp(min=0).double() / len(ordered)


def _rates_double(pos: torch.Tensor, neg: torch.Tensor):
    """Rates of "left ≤ φ ≤ right means positive", the positive class being the peakier sample: right ends
    every 0.01 from its minimum + width − 2 to its maximum + 2, left ends every 0.01 within ±2 of
    right − width, width the smaller of the two ranges (the reference's interval family)."""
    pos_range, neg_range = float(pos.max() - pos.min()), float(neg.max() - neg.min())
    width = min(pos_range, neg_range)
    if pos_range >= neg_range:
        pos, neg = neg, pos
    low, high = float(pos.min()) + width - BUFFER, float(pos.max()) + BUFFER
    right = torch.linspace(low, high, max(1, math.ceil((high - low) * THRESHOLDS_PER_UNIT)), dtype=torch.float64)
    offsets = torch.linspace(-width - BUFFER, -width + BUFFER, math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT),
                             dtype=torch.float64)
    left = (right[:, None] + offsets[None, :]).reshape(-1)
    right = right[:, None].expand(-1, len(offsets)).reshape(-1)
    tpr, fpr = _within(pos, left, right), _within(neg, left, right)
    return fpr, 1 - tpr, tpr, 1 - fpr


def example_epsilon(pos: torch.Tensor, neg: torch.Tensor, delta: float = DELTA) -> float:
    """ε of one example from the two samples (positive: the one with the larger median)."""
    pos_range, neg_range = float(pos.max() - pos.min()), float(neg.max() - neg.min())
    largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
    if largest == 0 or smallest / largest < 0.01:
        return EPSILON_CAP
    fprs, fnrs, tprs, tnrs = zip(_rates_double(pos, neg), _rates_single(pos, neg))
    fpr, fnr, tpr, tnr = (torch.cat(x) for x in (fprs, fnrs, tprs, tnrs))
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    if perfect.any():
        return EPSILON_CAP
    usable = fpr * fnr > 0
    if not usable.any():
        return 0.0
    fpr, fnr = fpr[usable], fnr[usable]
    # either bound is NaN where 1 − δ − rate < 0 (the rate is ~1): that bound gives no evidence, the other may
    one = torch.nan_to_num(torch.log(1 - delta - fpr) - torch.log(fnr), nan=0.0)
    two = torch.nan_to_num(torch.log(1 - delta - fnr) - torch.log(fpr), nan=0.0)
    return float(torch.maximum(one, two).clamp(0, EPSILON_CAP).max())


def epsilons(unlearned: torch.Tensor, retrained: torch.Tensor) -> torch.Tensor:
    """Per-example ε from (models, examples) confidences of the two ensembles."""
    retrain_positive = retrained.median(0).values > unlearned.median(0).values
    pos = torch.where(retrain_positive, retrained, unlearned)
    neg = torch.where(retrain_positive, unlearned, retrained)
    return torch.tensor([example_epsilon(pos[:, i], neg[:, i]) for i in range(pos.shape[1])], dtype=torch.float64)


def epsilon_points(eps: torch.Tensor, num_models: int) -> torch.Tensor:
    """2 / 2^n for ε in the n-th bin of width 0.5 below ⌈ln(N − 1)⌉ (n from 1), 0 beyond."""
    if num_models < 2:
        raise ValueError(f"The forgetting score needs at least 2 models per ensemble. Got {num_models}.")
    bins = int(round(math.ceil(math.log(num_models - 1)) / BIN_WIDTH)) if num_models > 2 else 0
    index = torch.floor(eps / BIN_WIDTH)
    points = 0.5 ** index
    return torch.where(index < bins, points, torch.zeros_like(points))


def forgetting_score(unlearned: torch.Tensor, retrained: torch.Tensor, labels: torch.Tensor, *,
                     accuracy_ratios: float = 1.0) -> EnsembleResult:
    """The challenge's score from forget-set logits of the two ensembles (equal numbers of models)."""
    u, r = confidences(unlearned, labels), confidences(retrained, labels)
    if u.shape[0] != r.shape[0]:
        raise ValueError(f"The forgetting score compares ensembles of one size: {u.shape[0]} unlearned models "
                         f"against {r.shape[0]} retrained.")
    eps = epsilons(u, r)
    points = epsilon_points(eps, u.shape[0])
    quality = float(points.mean())
    return EnsembleResult("forgetting_score", quality * accuracy_ratios, eps,
                          {"forgetting_quality": quality, "accuracy_ratios": accuracy_ratios,
                           "epsilon_median": float(eps.median()), "models": int(u.shape[0])})


# --- U-LiRA -------------------------------------------------------------------------------------------------

def ulira(unlearned: torch.Tensor, retrained: torch.Tensor, labels: torch.Tensor) -> EnsembleResult:
    """Leave-one-model-out U-LiRA over both ensembles; per example: the mean score of unlearned targets
    minus that of retrained targets."""
    u, r = confidences(unlearned, labels), confidences(retrained, labels)
    if min(u.shape[0], r.shape[0]) < 3:
        raise ValueError("U-LiRA needs at least 3 models in each ensemble (one target, two to fit).")

    def loo(bank):   # (models, examples): mean and std of the others
        total, squares, n = bank.sum(0), (bank ** 2).sum(0), bank.shape[0] - 1
        mean = (total - bank) / n
        var = ((squares - bank ** 2) - n * mean ** 2) / max(n - 1, 1)
        return mean, var.clamp(min=1e-6).sqrt()

    def logpdf(x, mean, std):
        return -0.5 * ((x - mean) / std) ** 2 - std.log()

    u_mean_loo, u_std_loo = loo(u)
    r_mean_loo, r_std_loo = loo(r)
    u_mean, u_std = u.mean(0), u.std(0).clamp(min=1e-3)
    r_mean, r_std = r.mean(0), r.std(0).clamp(min=1e-3)
    score_u = logpdf(u, u_mean_loo, u_std_loo) - logpdf(u, r_mean, r_std)          # unlearned targets
    score_r = logpdf(r, u_mean, u_std) - logpdf(r, r_mean_loo, r_std_loo)          # retrained targets
    scores = torch.cat([score_u.reshape(-1), score_r.reshape(-1)]).numpy()
    truth = np.concatenate([np.ones(score_u.numel(), bool), np.zeros(score_r.numel(), bool)])
    metrics = roc_metrics(scores, truth)
    return EnsembleResult("ulira", metrics["auc"], score_u.mean(0) - score_r.mean(0), metrics)


# --- KLoM ---------------------------------------------------------------------------------------------------

def binned_kl(p: torch.Tensor, q: torch.Tensor, bins: int = 20, floor: float = 1e-5, clip: float = 100.0) -> float:
    """D_KL(p ‖ q) of two samples on ``bins`` equal bins over their joint range."""
    p, q = p.double().clamp(-clip, clip), q.double().clamp(-clip, clip)
    low, high = float(torch.minimum(p.min(), q.min())), float(torch.maximum(p.max(), q.max()))
    if high <= low:
        high = low + 1
    p_hist = torch.histc(p, bins, low, high)
    q_hist = torch.histc(q, bins, low, high)
    p_prob, q_prob = p_hist / p_hist.sum(), q_hist / q_hist.sum()
    q_prob = torch.where(p_prob > 0, q_prob.clamp(min=floor), q_prob)
    q_prob = q_prob / q_prob.sum()
    keep = p_prob > 0
    return float((p_prob[keep] * (p_prob[keep] / q_prob[keep]).log()).sum())


def klom(unlearned: torch.Tensor, retrained: torch.Tensor, labels: torch.Tensor, percentile: float = 95.0) -> EnsembleResult:
    """Per-example KL of margins, and its ``percentile``-th percentile (the paper's headline)."""
    u, r = confidences(unlearned, labels), confidences(retrained, labels)
    kl = torch.tensor([binned_kl(u[:, i], r[:, i]) for i in range(u.shape[1])], dtype=torch.float64)
    return EnsembleResult("klom", float(np.percentile(kl.numpy(), percentile)), kl,
                          {"percentile": percentile, "mean": float(kl.mean())})


def loss_lr_per_model(forget: torch.Tensor, forget_labels: torch.Tensor, non_members: torch.Tensor,
                      non_member_labels: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """``loss_lr``'s mean cross-validated accuracy for each model of a bank: forget examples against unseen
    ones (``(models, examples, classes)`` logits each); 0.5 means the losses do not tell them apart."""
    out = []
    for member_logits, other_logits in zip(forget, non_members):
        member_loss = torch.nn.functional.cross_entropy(member_logits, forget_labels, reduction="none")
        other_loss = torch.nn.functional.cross_entropy(other_logits, non_member_labels, reduction="none")
        accs, _ = cross_validated_accuracy(member_loss.numpy(), other_loss.numpy(), seed=seed)
        out.append(float(accs.mean()))
    return torch.tensor(out)
