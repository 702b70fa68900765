"""Per-example reference behaviour, computed offline once per original and reused by every request.

For every training id, shadow models that never trained on it (the OUT side an auditor estimates) say what
an unseen image's logit-scaled confidence looks like *for that image*: its mean and its spread over models.
``dcu --set reference=FILE`` draws each forget example's target from that distribution instead of from the
held-out loss quantiles (docs/method.md, section 2). Shadows train on half the pool, so they are less sure
of unseen images than a model trained on the retain set; ``offset`` (the original's mean confidence on
held-out images less the shadows' OUT mean there) moves the means to the original's level.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn as nn

from ..data import DatasetSplits
from ..io import atomic_save
from ..train import logit_confidence, predict

FORMAT = "dcu-reference"


def reference_behaviour(store, splits: DatasetSplits, original: nn.Module) -> Dict[str, Any]:
    """Per pool id, the mean and standard deviation of the logit-scaled confidence of the shadows that did not
    train on it (views averaged), and the offset to the original's level on held-out images."""
    logits, inside = store.load(store.pool)                 # (S, N, Q, C), (S, N)
    labels = torch.cat([splits.train.labels, splits.val.labels])[
        torch.argsort(torch.cat([splits.train.ids, splits.val.ids]))]
    pool_labels = labels[torch.searchsorted(torch.sort(torch.cat([splits.train.ids, splits.val.ids])).values,
                                            store.pool)]
    if logits.dim() == 4:      # (S, N, views, C): the views averaged
        phi = logit_confidence(logits.transpose(1, 2), pool_labels).mean(1)
    else:
        phi = logit_confidence(logits, pool_labels)
    outside = (~inside).float()
    count = outside.sum(0)
    mean = (phi * outside).sum(0) / count.clamp(min=1)
    std = (((phi - mean) ** 2 * outside).sum(0) / (count - 1).clamp(min=1)).sqrt()
    held = torch.isin(store.pool, splits.val.ids)
    # an id that (by chance) nearly every shadow trained on: the typical spread, and with no OUT model at all
    # the held-out images' mean
    std = torch.where(count < 2, std[count >= 2].median(), std)
    mean = torch.where(count < 1, mean[held & (count >= 1)].mean(), mean)
    original_phi = logit_confidence(predict(original, splits.val.images), splits.val.labels)
    offset = float(original_phi.mean() - mean[held].mean())
    return {"format": FORMAT, "ids": store.pool.clone(), "out_mean": mean, "out_std": std, "offset": offset,
            "shadows": int(inside.shape[0]), "min_out": int(count.min()), "filled_in": int((count < 2).sum())}


def write_reference(reference: Dict[str, Any], path) -> None:
    atomic_save(reference, path)
