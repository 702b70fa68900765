"""Model inversion, scored with numbers rather than pictures alone.

* ``gradient`` — class-conditional input optimisation (Fredrikson et al., CCS 2015): for each class, images
  that maximise the model's log-probability of the class under total-variation and L2 priors (Adam on the
  pixels, from noise).
* ``unlearning_inversion`` — after Hu et al., "Learn What You Want to Unlearn: Unlearning Inversion Attacks
  against Machine Unlearning", S&P 2024 (TASI-LAB/Unlearning-inversion-attacks): the weight difference
  between the original and the unlearned model approximates a step along the forget set's gradient; images
  (with the class given) are optimised so that their loss gradient at the original weights points along
  that difference (cosine), under a TV prior.
* ``condensive`` — dcu's reading of the DC_U paper's data-assisted inverter: a small network learns to map
  the model's penultimate features back to images on auxiliary data the attacker holds (held-out images,
  or a condensed set), then inverts each class's prototype (the classifier row, scaled to a typical
  feature norm).

Scores (``inversion_scores``): the accuracy of an *independent* evaluation classifier on the inversions
(are they recognisable as their class), the distance to the nearest real image of the class in the
evaluator's feature space, SSIM and PSNR to the nearest real image in pixels, and the forget-vs-unseen
closeness gap: how much nearer the inversions come to forget images than to unseen images of the same class
(positive = the model still leaks its forget set).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.data import ImageSet
from dcu.models import num_classes
from dcu.progress import progress
from dcu.train import features, model_device, on_device, predict

from .mi_common import ssim, total_variation


@dataclass
class InversionConfig:
    per_class: int = 4
    steps: int = 300
    lr: float = 0.05
    tv: float = 0.02            # weight of the total-variation prior
    l2: float = 0.001           # weight of the L2 prior
    seed: int = 0


def _classes(model: nn.Module) -> int:
    return num_classes(model)


def _optimise(images: torch.Tensor, objective, cfg: InversionConfig, desc: str) -> torch.Tensor:
    images = images.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([images], lr=cfg.lr)
    for _ in progress(range(cfg.steps), desc=desc, unit="step"):
        loss = objective(images) + cfg.tv * total_variation(images) + cfg.l2 * images.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return images.detach()


def gradient_inversion(model: nn.Module, shape, cfg: Optional[InversionConfig] = None) -> ImageSet:
    """``per_class`` images per class that the model finds most like the class (found on the model's device,
    returned on the CPU)."""
    cfg = cfg or InversionConfig()
    model.eval().requires_grad_(False)
    device = model_device(model)
    try:
        gen = torch.Generator().manual_seed(cfg.seed)
        labels = torch.arange(_classes(model)).repeat_interleave(cfg.per_class)
        start = 0.1 * torch.randn(len(labels), *shape, generator=gen)
        on_model = labels.to(device)
        images = _optimise(start.to(device), lambda x: F.cross_entropy(model(x), on_model), cfg, "gradient inversion")
    finally:
        model.requires_grad_(True)
    return ImageSet(images.cpu(), labels)


def unlearning_inversion(original: nn.Module, unlearned: nn.Module, shape, cfg: Optional[InversionConfig] = None,
                         classes: Optional[torch.Tensor] = None) -> ImageSet:
    """Images whose loss gradient at the original weights aligns with (original − unlearned) weights."""
    cfg = cfg or InversionConfig()
    original.eval()
    params = [p for p in original.parameters()]
    delta = torch.cat([(p0.detach() - p1.detach()).flatten() for p0, p1 in zip(original.parameters(), unlearned.parameters())])
    if float(delta.norm()) == 0:
        raise ValueError("The two models have identical weights: there is no unlearning step to invert.")
    gen = torch.Generator().manual_seed(cfg.seed)
    classes = torch.arange(_classes(original)) if classes is None else torch.as_tensor(classes).cpu()
    labels = classes.repeat_interleave(cfg.per_class)
    start = 0.1 * torch.randn(len(labels), *shape, generator=gen)
    on_model = labels.to(delta.device)

    def objective(x):
        # the unlearning step moved weights against the forget gradient: θ0 − θ1 ≈ η·∇L(forget); match its direction
        grads = torch.autograd.grad(F.cross_entropy(original(x), on_model), params, create_graph=True)
        g = torch.cat([v.flatten() for v in grads])
        return 1 - F.cosine_similarity(g, delta, dim=0)

    images = _optimise(start.to(delta.device), objective, cfg, "unlearning inversion")
    return ImageSet(images.cpu(), labels)


@dataclass
class CondensiveConfig(InversionConfig):
    steps: int = 400
    width: int = 64
    lr: float = 1e-3            # the inverter's Adam step


def condensive_inversion(model: nn.Module, auxiliary: ImageSet, cfg: Optional[CondensiveConfig] = None) -> ImageSet:
    """Train a feature→image inverter on ``auxiliary`` images, then invert every class prototype (on the
    model's device; the images come back on the CPU)."""
    from dcu.models.inverter import Inverter

    cfg = cfg or CondensiveConfig()
    torch.manual_seed(cfg.seed)
    device = model_device(model)
    feats = features(model, auxiliary.images).to(device)
    targets = on_device(auxiliary.images, device)
    scale = feats.norm(dim=1).mean().clamp(min=1e-8)
    _, channels, size, _ = auxiliary.images.shape
    inverter = Inverter(feats.shape[1], channels, size, cfg.width).to(device)
    optimizer = torch.optim.Adam(inverter.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in progress(range(cfg.steps), desc="condensive inverter", unit="step"):
        idx = torch.randperm(len(feats), generator=gen)[:256].to(device)
        loss = F.mse_loss(inverter(feats[idx] / scale), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    rows = model.get_classifier().weight.detach()
    if rows.shape[1] != feats.shape[1]:
        raise ValueError("condensive inversion needs a model whose last linear layer reads the penultimate features.")
    prototypes = rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-8) * scale
    with torch.no_grad():
        images = inverter(prototypes / scale)
    return ImageSet(images.cpu(), torch.arange(len(rows)))


def inversion_scores(inverted: ImageSet, evaluator: nn.Module, reference: ImageSet, *,
                     forget: Optional[ImageSet] = None, unseen: Optional[ImageSet] = None) -> Dict[str, Any]:
    """Numbers for a set of inverted images (see the module docstring)."""
    out: Dict[str, Any] = {"images": len(inverted),
                           "evaluator_accuracy": (predict(evaluator, inverted.images).argmax(1) == inverted.labels)
                           .float().mean().item()}
    inv_feat = features(evaluator, inverted.images)
    ref_feat = features(evaluator, reference.images)
    feat_dist, ssims, psnrs = [], [], []
    for i in range(len(inverted)):
        same = reference.labels == inverted.labels[i]
        if not same.any():
            continue
        d = (ref_feat[same] - inv_feat[i]).norm(dim=1)
        feat_dist.append(float(d.min()))
        pix = reference.images[same]
        mse = (pix - inverted.images[i]).pow(2).flatten(1).mean(1)
        j = int(mse.argmin())
        value_range = float(reference.images.max() - reference.images.min())
        psnrs.append(float(10 * torch.log10(value_range ** 2 / mse[j].clamp(min=1e-12))))
        ssims.append(float(ssim(inverted.images[i : i + 1], pix[j : j + 1], value_range)))
    out.update({"nearest_feature_distance": sum(feat_dist) / max(len(feat_dist), 1),
                "nearest_ssim": sum(ssims) / max(len(ssims), 1), "nearest_psnr": sum(psnrs) / max(len(psnrs), 1)})
    if forget is not None and unseen is not None:
        f_feat, u_feat = features(evaluator, forget.images), features(evaluator, unseen.images)
        gaps = []
        for i in range(len(inverted)):
            fm, um = forget.labels == inverted.labels[i], unseen.labels == inverted.labels[i]
            if fm.any() and um.any():
                gaps.append(float((u_feat[um] - inv_feat[i]).norm(dim=1).min() - (f_feat[fm] - inv_feat[i]).norm(dim=1).min()))
        out["forget_closeness_gap"] = sum(gaps) / max(len(gaps), 1) if gaps else None
    return out
