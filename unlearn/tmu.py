"""TMU-style aligned forgetting (after Niu et al., "Towards Aligned Data Forgetting via Twin Machine
Unlearning", 2025). A retrained model still classifies most forget samples correctly, as it does unseen
images; forgetting all of them overshoots. TMU forgets only the forget samples the retrained model would get
wrong, and learns to tell which from a *twin* problem whose gold model is observable:

* twin: the held-out training images (``val``) play the forget set. The original never saw them, so it is
  their gold "retrained" model; a copy fine-tuned on them together with retain data (``twin_epochs``) is
  their "original". Features of each sample under the twin original (loss, margin, confidence, entropy)
  and the gold label (does the original get it right?) train a logistic-regression predictor.
* forget: the same features under the real original go through the predictor. Samples predicted wrong get
  the original's runner-up class as target, the rest keep their label; the model is trained on those
  targets together with the retain data (condensed when given) for ``epochs`` passes over the forget set.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.data import ImageSet
from dcu.seeds import derive
from dcu.train import predict, train

from .base import UnlearnConfig, Unlearner, register_unlearner
from .common import batches, classes_without_retain, joined


@dataclass
class TMUConfig(UnlearnConfig):
    twin_epochs: int = 5
    epochs: int = 5                # passes over the forget set
    lr: float = 0.01
    batch_size: int = 128
    schedule: str = "cosine"
    threshold: float = 0.5         # predicted probability of "gold model is wrong" above which a sample is forgotten


def sample_features(model: nn.Module, data: ImageSet) -> torch.Tensor:
    logits = predict(model, data.images)
    log_probs = F.log_softmax(logits, 1)
    true = log_probs.gather(1, data.labels.view(-1, 1)).squeeze(1)
    other = log_probs.scatter(1, data.labels.view(-1, 1), float("-inf")).max(1).values
    entropy = -(log_probs.exp() * log_probs).sum(1)
    return torch.stack([-true, true - other, true.exp(), entropy], 1)


def runner_up(model: nn.Module, data: ImageSet) -> torch.Tensor:
    logits = predict(model, data.images).scatter(1, data.labels.view(-1, 1), float("-inf"))
    return logits.argmax(1)


@register_unlearner
class TMU(Unlearner):
    name = "tmu"
    Config = TMUConfig
    search_space = {"epochs": (1, 10, "int"), "lr": (1e-3, 1e-1, "log"), "threshold": (0.2, 0.8, "linear")}

    def run(self, model, retain, forget, *, condensed, val):
        c = self.cfg
        if val is None or len(val) < 20:
            raise ValueError("tmu learns its forget predictor on held-out training images; pass val (≥ 20 images).")
        retain_data = self.retain_data(retain, forget, condensed)
        gold_right = (predict(model, val.images).argmax(1) == val.labels).numpy()
        twin = copy.deepcopy(model)
        pick = torch.randperm(len(retain_data), generator=torch.Generator().manual_seed(c.seed))[: 4 * len(val)]
        twin_data, _ = joined(ImageSet(retain_data.images[pick], retain_data.labels[pick]), val)
        train(twin, twin_data, self.schedule(epochs=c.twin_epochs, seed=c.seed), desc="tmu twin")
        from sklearn.linear_model import LogisticRegression  # imported here: sklearn costs seconds at startup

        predictor = LogisticRegression(max_iter=1000, class_weight="balanced")
        if gold_right.all() or not gold_right.any():
            forget_wrong = torch.zeros(len(forget), dtype=torch.bool) if gold_right.all() else torch.ones(len(forget), dtype=torch.bool)
        else:
            predictor.fit(sample_features(twin, val).numpy(), ~gold_right)
            p_wrong = predictor.predict_proba(sample_features(model, forget).numpy())[:, 1]
            forget_wrong = torch.as_tensor(p_wrong > c.threshold)
        # a class with no retain sample left cannot be predicted by the retrained model: all of it is forgotten
        absent = classes_without_retain(retain_data, int(forget.labels.max()) + 1)
        forget_wrong = forget_wrong | absent[forget.labels]
        self.stats["forgotten_fraction"] = float(forget_wrong.float().mean())
        targets = torch.where(forget_wrong, runner_up(model, forget), forget.labels)
        forget_targets = ImageSet(forget.images, targets)
        cfg = self.schedule(seed=c.seed)
        retain_batches = batches(retain_data, cfg.batch_size, seed=derive(c.seed, "retain batches"), augment=cfg,
                                 device=self.device)

        def loss_fn(m, x, y, idx):
            rx, ry, _ = next(retain_batches)
            return F.cross_entropy(m(x), y) + F.cross_entropy(m(rx), ry)

        train(model, forget_targets, cfg, loss_fn=loss_fn, desc="tmu")
        return model
