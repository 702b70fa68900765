"""dcu: unlearning on a refreshed condensed retain set, with forget targets calibrated on held-out data.

1. **Retain side.** The condensed set is refreshed for the request (every synthetic image whose bucket
   holds a forget id is re-made from the bucket's remaining members), and the model is distilled from the
   original on it (KL at temperature ``temperature`` plus cross-entropy on the synthetic labels), which
   keeps what the original knows about the retain data at a small fraction of an epoch's cost.
2. **Forget side.** A retrained model treats forget samples like images it never saw. dcu estimates that
   behaviour from held-out training images (``val``, never the test set): their loss distribution under
   the original model is what forget losses should look like. Forget samples are ranked by how robustly
   the original classifies them (margin averaged over augmented views: memorised, atypical samples are the
   least robust) and matched quantile-to-quantile to the held-out losses, the most robust getting the
   lowest loss. Each forget sample's target is a distribution with that loss on its label and the
   original's other-class probabilities for the rest, so samples assigned a high loss become errors
   towards the class the original found next most likely, as in a model that never saw them.
3. **Classes with no retain sample left** (class-wise forgetting): a retrained model cannot predict them,
   so they are removed from every teacher distribution (forget targets and distillation alike).
4. **Stopping point.** A fixed number of passes over the forget set, set per preset from validation data
   only; the time is dominated by these passes, which keeps the online cost a small fraction of retraining.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dcu.train import TrainConfig, augment_batch, predict, train

from .base import UnlearnConfig, Unlearner, register_unlearner


@dataclass
class DCUConfig(UnlearnConfig):
    epochs: int = 4                # passes over the forget set
    lr: float = 0.01
    batch_forget: int = 64
    batch_condensed: int = 128
    temperature: float = 4.0       # distillation temperature on the condensed set
    retain_weight: float = 1.0     # weight of the condensed-set terms against the forget term
    views: int = 4                 # augmented views for the robustness ranking
    augment: bool | None = None    # augment the condensed batches (None: as the original was trained)


def _without(probs: torch.Tensor, absent: torch.Tensor) -> torch.Tensor:
    """Distributions with the ``absent`` classes removed and the rest renormalised."""
    if not absent.any():
        return probs
    probs = probs.masked_fill(absent.view(1, -1), 0.0)
    return probs / probs.sum(1, keepdim=True).clamp(min=1e-12)


@register_unlearner
class DCU(Unlearner):
    name = "dcu"
    Config = DCUConfig
    requires_condensed = True
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-3, 5e-2, "log"), "retain_weight": (0.1, 10.0, "log"),
                    "temperature": (1.0, 8.0, "linear")}

    @torch.no_grad()
    def forget_targets(self, teacher, forget, val, absent: torch.Tensor) -> torch.Tensor:
        """Per forget sample, a target distribution whose loss follows the held-out loss distribution."""
        probs = _without(predict(teacher, forget.images).softmax(1), absent)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        margin = torch.zeros(len(forget))
        for view in range(self.cfg.views):
            x = forget.images if view == 0 else augment_batch(
                forget.images, flip=self.train_config.flip and self.train_config.augment, padding=4, generator=gen)
            z = predict(teacher, x)
            true = z.gather(1, forget.labels.view(-1, 1)).squeeze(1)
            other = z.scatter(1, forget.labels.view(-1, 1), -torch.inf).max(1).values
            margin += (true - other) / self.cfg.views
        held_losses = torch.sort(F.cross_entropy(predict(teacher, val.images), val.labels, reduction="none")).values
        # quantile matching: rank r of n (most robust first) gets the held-out loss at quantile (r + 0.5) / n
        rank = torch.empty(len(forget), dtype=torch.long)
        rank[torch.argsort(margin, descending=True)] = torch.arange(len(forget))
        q = ((rank.float() + 0.5) / len(forget) * len(held_losses)).long().clamp(max=len(held_losses) - 1)
        p_true = torch.exp(-held_losses[q]).clamp(1e-4, 1 - 1e-4)
        p_true = torch.where(absent[forget.labels], torch.zeros_like(p_true), p_true)
        others = probs.scatter(1, forget.labels.view(-1, 1), 0.0)
        others = others / others.sum(1, keepdim=True).clamp(min=1e-12)
        target = others * (1 - p_true).unsqueeze(1)
        return target.scatter(1, forget.labels.view(-1, 1), p_true.unsqueeze(1))

    def run(self, model, retain, forget, *, condensed, val):
        if val is None or len(val) == 0:
            raise ValueError("The 'dcu' method calibrates on held-out training images (val); none were given. "
                             "Train the original with --val-frac > 0 (the default) or pass a val split.")
        cfg = self.cfg
        synthetic = self.retain_data(retain, forget, condensed)
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        num_classes = model.arch_args.get("num_classes") or int(max(retain.labels.max(), forget.labels.max())) + 1
        absent = torch.bincount(retain.labels, minlength=num_classes) == 0
        target = self.forget_targets(teacher, forget, val, absent)
        T = cfg.temperature
        augment = self.train_config.augment if cfg.augment is None else cfg.augment
        gen = torch.Generator().manual_seed(cfg.seed + 1)

        def loss_fn(student, x_forget, _y, idx):
            pick = torch.randint(0, len(synthetic), (min(cfg.batch_condensed, len(synthetic)),), generator=gen)
            x_syn, y_syn = synthetic.images[pick], synthetic.labels[pick]
            if augment:
                x_syn = augment_batch(x_syn, flip=self.train_config.flip, padding=self.train_config.crop_padding,
                                      generator=gen)
            logits = student(torch.cat([x_forget, x_syn]))
            out_forget, out_syn = logits[: len(x_forget)], logits[len(x_forget):]
            forget_loss = F.kl_div(out_forget.log_softmax(1), target[idx], reduction="batchmean")
            with torch.no_grad():
                soft = _without((teacher(x_syn) / T).softmax(1), absent)
            distill = F.kl_div((out_syn / T).log_softmax(1), soft, reduction="batchmean") * T * T
            return forget_loss + cfg.retain_weight * (distill + F.cross_entropy(out_syn, y_syn))

        schedule = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_forget, lr=cfg.lr, schedule="cosine",
                               momentum=0.9, weight_decay=self.train_config.weight_decay, augment=False, seed=cfg.seed)
        train(model, forget, schedule, loss_fn=loss_fn, desc="dcu")
        self.stats["steps"] = cfg.epochs * math.ceil(len(forget) / cfg.batch_forget)
        return model
