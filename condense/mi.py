"""Model-inversion condensation (Khan, "Dataset Condensation Driven Machine Unlearning", 2024; reference code
algebraicdianuj/DC_U). The buckets are those of ``fdm`` (K-means on the trained model's penultimate
features, ``ipc`` per class). A small inverter network maps each bucket's mean feature to an image and is
trained with the cross-entropy of the bucket's class through the frozen model plus the pixel MSE to the
bucket's members (equal, up to a constant, to the MSE to their mean image, which is what is kept).

The inverter is shared by every bucket, so its weights carry every member's influence: a refresh retrains
it from its seeded initialisation on the updated bucket statistics and re-makes *every* image, never
reusing a weight a forgotten sample shaped. Bucket feature and pixel sums are kept, so a refresh subtracts
the forgotten members instead of re-embedding the retain set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.models.inverter import Inverter
from dcu.progress import progress
from dcu.train import features

from .base import register_condenser
from .fdm import FastDistributionMatching, FDMConfig, _extractor


@dataclass
class MIConfig(FDMConfig):
    inverter_steps: int = 300
    inverter_lr: float = 1e-3
    inverter_width: int = 64
    pixel_weight: float = 1.0      # weight of the pixel MSE against the cross-entropy


@register_condenser
class ModelInversion(FastDistributionMatching):
    name = "mi"
    Config = MIConfig
    shared_state = True

    def _invert(self, extractor: nn.Module, codes: torch.Tensor, labels: torch.Tensor, mean_images: torch.Tensor,
                desc: str) -> torch.Tensor:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        _, channels, size, _ = mean_images.shape
        inverter = Inverter(codes.shape[1], channels, size, cfg.inverter_width).to(self.device)
        extractor = extractor.to(self.device)
        codes, labels, mean_images = codes.to(self.device), labels.to(self.device), mean_images.to(self.device)
        optimizer = torch.optim.Adam(inverter.parameters(), lr=cfg.inverter_lr)
        scale = codes.norm(dim=1, keepdim=True).mean().clamp(min=1e-8)
        self.history = []
        bar = progress(range(cfg.inverter_steps), desc=desc, unit="step")
        for _ in bar:
            images = inverter(codes / scale)
            loss = F.cross_entropy(extractor(images), labels) + cfg.pixel_weight * F.mse_loss(images, mean_images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.history.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        with torch.no_grad():
            return inverter(codes / scale).cpu()

    def build(self, train, num_classes, model):
        cset = super().build(train, num_classes, model)   # buckets, feature sums and the extractor
        extractor = _extractor(cset)
        count = cset.bucket_state["count"]
        pixel_sum = torch.zeros(len(count), *train.images.shape[1:], dtype=torch.float64)
        pixel_sum.index_add_(0, cset.member_bucket, train.images.double())
        cset.bucket_state["pixel_sum"] = pixel_sum
        codes = (cset.bucket_state["feature_sum"] / count.clamp(min=1).unsqueeze(1)).float()
        cset.images = self._invert(extractor, codes, cset.labels, (pixel_sum / count.clamp(min=1).view(-1, 1, 1, 1)).float(), "mi")
        cset.state["loss_history"] = list(self.history)
        return cset

    def remake(self, cset, buckets, retain, forget, *, old, forget_ids):
        extractor = _extractor(cset)
        gone = torch.isin(old.members, forget_ids)
        gone_ids, gone_bucket = old.members[gone], old.member_bucket[gone]
        fsum, psum, count = (cset.bucket_state[k] for k in ("feature_sum", "pixel_sum", "count"))
        gone_images = forget.subset(gone_ids).images if forget is not None else None
        if gone_images is None:   # re-sum the remaining members of the touched buckets
            kept = torch.isin(cset.member_bucket, buckets)
            fsum[buckets], psum[buckets] = 0, 0
            kept_images = retain.subset(cset.members[kept]).images
            fsum.index_add_(0, cset.member_bucket[kept], features(extractor, kept_images).double())
            psum.index_add_(0, cset.member_bucket[kept], kept_images.double())
        else:
            fsum.index_add_(0, gone_bucket, -features(extractor, gone_images).double())
            psum.index_add_(0, gone_bucket, -gone_images.double())
        count.index_add_(0, gone_bucket, -torch.ones_like(gone_bucket))
        rows = torch.isin(cset.image_bucket, buckets)    # with shared state: every bucket that still has members
        chosen = cset.image_bucket[rows]
        codes = (fsum[chosen] / count[chosen].clamp(min=1).unsqueeze(1)).float()
        means = (psum[chosen] / count[chosen].clamp(min=1).view(-1, 1, 1, 1)).float()
        return self._invert(extractor, codes, cset.labels[rows], means, "mi refresh")
