"""Fast distribution matching (Khan, "Dataset Condensation Driven Machine Unlearning", 2024; reference code
algebraicdianuj/DC_U).

Per class, K-means on the trained model's penultimate features splits the class into ``ipc`` buckets. Each
bucket becomes one synthetic image: a learned convex combination of its members, fitted with Adam so that
the image's feature matches the bucket's mean feature. Buckets are independent, so every bucket of every
class is fitted in one batched problem, and a refresh re-fits only the buckets a forget request touches.

Two choices of dcu's own, both to make ``refresh`` cheap without keeping anything a forgotten sample
shaped: the combination weights start from a closed form (a softmax over each member's distance to the
bucket mean in a low-dimensional PCA code of the features, stored per member), and the bucket mean is kept
as a feature *sum*, so a refresh subtracts the forgotten members' features instead of re-embedding the
bucket. A refresh re-fits from that closed form, never from the old weights (which forgotten members
shaped). The model the set was made with travels inside the artifact, so refresh uses the same features.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from dcu.models import MODELS, create_model, model_config
from dcu.progress import progress
from dcu.train import features, on_device

from .base import CondenseConfig, Condenser, class_positions, new_set, register_condenser


@dataclass
class FDMConfig(CondenseConfig):
    steps: int = 100            # Adam steps fitting the weights (the reference uses about 100)
    refresh_steps: int = 0      # Adam steps when a refresh re-fits a bucket (0: the closed form alone)
    lr: float = 0.1             # Adam lr on the weight logits
    sharpness: float = 4.0      # closed-form weights: softmax(-sharpness * distance / mean distance)
    code_dim: int = 32          # PCA dimensions of the per-member code
    kmeans_init: int = 3        # K-means restarts


def _segment_softmax(logits: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    peak = torch.full((num_segments,), -torch.inf, device=logits.device).scatter_reduce(0, segment, logits, "amax",
                                                                                        include_self=True)
    e = torch.exp(logits - peak[segment])
    return e / torch.zeros(num_segments, device=logits.device).index_add(0, segment, e)[segment]


def _extractor(cset) -> nn.Module:
    """The model the set was condensed with: rebuilt from its registration, or (a wrapped model of the
    user's, which only this process knows) the copy kept with the set in memory."""
    spec = cset.state["extractor"]
    if spec["arch"] in MODELS:
        net = create_model(spec["arch"], **spec["arch_args"])
        net.load_state_dict(spec["state_dict"])
    elif "module" in spec:
        net = copy.deepcopy(spec["module"])
    else:
        raise ValueError(f"This condensed set was made with model '{spec['arch']}', which is not registered in this "
                         "process: register its builder (dcu.models.register_model) and import it first.")
    return net.eval().requires_grad_(False)


@register_condenser
class FastDistributionMatching(Condenser):
    name = "fdm"
    Config = FDMConfig
    needs_model = True

    def _closed_form_logits(self, codes: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
        counts = torch.bincount(group, minlength=num_groups).clamp(min=1).unsqueeze(1).float()
        centre = torch.zeros(num_groups, codes.shape[1], device=codes.device).index_add(0, group, codes) / counts
        dist = ((codes - centre[group]) ** 2).sum(1)
        scale = torch.zeros(num_groups, device=codes.device).index_add(0, group, dist) / counts.squeeze(1)
        return -self.cfg.sharpness * dist / scale[group].clamp(min=1e-8)

    def _fit(self, extractor: nn.Module, images: torch.Tensor, group: torch.Tensor, codes: torch.Tensor,
             targets: torch.Tensor, steps: int, desc: str) -> torch.Tensor:
        """One image per group: softmax-weighted members whose feature is fitted to ``targets[group]``; computed
        on ``self.device``, returned on the CPU."""
        num_groups = len(targets)
        device = self.device
        extractor.to(device)
        images, group, codes = on_device(images, device), group.to(device), codes.to(device)
        logits = self._closed_form_logits(codes.float(), group, num_groups).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=self.cfg.lr)
        targets = targets.float().to(device)
        norm = (targets**2).sum(1).clamp(min=1e-8)

        def combine() -> torch.Tensor:
            w = _segment_softmax(logits, group, num_groups)
            out = torch.zeros(num_groups, *images.shape[1:], device=device)
            return out.index_add(0, group, w.view(-1, 1, 1, 1) * images)

        for _ in progress(range(steps), desc=desc, unit="step", disable=steps == 0):
            loss = (((extractor.forward_features(combine()) - targets) ** 2).sum(1) / norm).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return combine().cpu()

    def build(self, train, num_classes, model):
        from sklearn.cluster import KMeans

        extractor = copy.deepcopy(model)
        extractor.eval().requires_grad_(False).to(self.device)
        feats = features(extractor, train.images)
        centred = feats - feats.mean(0)
        q = min(self.cfg.code_dim, *centred.shape)
        _, _, v = torch.pca_lowrank(centred, q=q, center=False, niter=4)
        codes = centred @ v[:, :q]
        member_bucket = torch.empty(len(train), dtype=torch.long)
        for c, pos in enumerate(class_positions(train.labels, num_classes)):
            km = KMeans(n_clusters=self.cfg.ipc, n_init=self.cfg.kmeans_init, random_state=self.cfg.seed)
            assignment = km.fit_predict(codes[pos].double().numpy())
            # renumber clusters by first appearance so bucket ids do not depend on K-means' internal order
            _, first = np.unique(assignment, return_index=True)
            rank = {int(assignment[i]): r for r, i in enumerate(sorted(first))}
            member_bucket[pos] = torch.tensor([c * self.cfg.ipc + rank[int(a)] for a in assignment])
        num_buckets = num_classes * self.cfg.ipc
        feature_sum = torch.zeros(num_buckets, feats.shape[1], dtype=torch.float64).index_add(0, member_bucket, feats.double())
        count = torch.bincount(member_bucket, minlength=num_buckets)
        targets = feature_sum / count.clamp(min=1).unsqueeze(1)
        images = self._fit(extractor, train.images, member_bucket, codes, targets, self.cfg.steps, "fdm")
        extractor.cpu()
        labels = torch.arange(num_classes).repeat_interleave(self.cfg.ipc)
        return new_set(images, labels, torch.arange(num_buckets), train.ids.clone(), member_bucket,
                       member_state={"code": codes.half()},
                       bucket_state={"feature_sum": feature_sum, "count": count},
                       state={"extractor": {**model_config(extractor), "state_dict": extractor.state_dict(),
                                            **({} if extractor.arch in MODELS else {"module": extractor})}})

    def remake(self, cset, buckets, retain, forget, *, old, forget_ids):
        extractor = _extractor(cset).to(self.device)
        gone = torch.isin(old.members, forget_ids) & torch.isin(old.member_bucket, buckets)
        gone_ids, gone_bucket = old.members[gone], old.member_bucket[gone]
        fsum, count = cset.bucket_state["feature_sum"], cset.bucket_state["count"]
        if forget is not None:
            fsum.index_add_(0, gone_bucket, -features(extractor, forget.subset(gone_ids).images).double())
        else:  # no forget images at hand: re-embed the remaining members of the touched buckets
            kept = torch.isin(cset.member_bucket, buckets)
            fsum[buckets] = 0
            fsum.index_add_(0, cset.member_bucket[kept],
                            features(extractor, retain.subset(cset.members[kept]).images).double())
        count.index_add_(0, gone_bucket, -torch.ones_like(gone_bucket))
        rows = torch.isin(cset.member_bucket, buckets)
        local = torch.searchsorted(buckets, cset.member_bucket[rows])
        targets = fsum[buckets] / count[buckets].clamp(min=1).unsqueeze(1)
        fitted = self._fit(extractor, retain.subset(cset.members[rows]).images, local, cset.member_state["code"][rows],
                           targets, self.cfg.refresh_steps, "fdm refresh")
        image_rows = torch.isin(cset.image_bucket, buckets)
        return fitted[torch.searchsorted(buckets, cset.image_bucket[image_rows])]
