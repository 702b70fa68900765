"""Population membership-inference attacks that learn "member" from the retain set and "non-member" from
held-out images, then judge the forget set. Each is kept under its own name: their numbers are not
comparable with each other or with ``loss_lr``.

* ``svc_efficacy`` — SalUn's / Unlearn-Sparse's MIA-Efficacy (OPTML-Group): an SVC on the model's confidence
  in the true label, trained on balanced retain (member) vs held-out (non-member) samples; the headline is
  the fraction of the forget set predicted *non-member* (higher = more forgotten; a retrained model's
  value is the reference).
* ``entropy`` — the Bad Teacher / SSD attack (vikram2000b/bad-teaching-unlearning,
  if-loops/selective-synaptic-dampening): logistic regression on the entropy of the output, same training
  data; the headline is the fraction of the forget set predicted *member* (lower = more forgotten).

The per-sample scores (for AUC and TPR at low FPR) rank the forget set against the held-out images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dcu.train import predict

from .base import Attack, AttackConfig, Scores, register_attack


@dataclass
class PopulationConfig(AttackConfig):
    max_per_side: int = 1000       # retain / held-out samples each fit uses (balanced)
    repeats: int = 5               # fits on independent random draws; the headline is their mean, spread beside it


def _feature(name: str, model, data) -> np.ndarray:
    probs = F.softmax(predict(model, data.images), 1)
    if name == "confidence":
        return probs.gather(1, data.labels.view(-1, 1)).squeeze(1).numpy()
    return (-(probs * probs.clamp_min(1e-12).log()).sum(1)).numpy()


class _Population(Attack):
    Config = PopulationConfig
    feature = "confidence"

    def classifier(self):
        raise NotImplementedError

    def score(self, model, members, non_members, *, retain=None) -> Scores:
        if retain is None or len(retain) < 2:
            raise ValueError(f"{self.name} learns what a member looks like from the retain set; pass retain=.")
        rng = np.random.default_rng(self.cfg.seed)
        n = min(len(retain), len(non_members), self.cfg.max_per_side)
        member_feature = _feature(self.feature, model, retain)
        held_out = _feature(self.feature, model, non_members)
        forget = _feature(self.feature, model, members)
        headlines, scores = [], np.zeros(len(forget) + len(held_out))
        for _ in range(self.cfg.repeats):
            fit_in = rng.choice(member_feature, n, replace=False)
            fit_out = rng.choice(held_out, n, replace=False)
            clf = self.classifier().fit(np.concatenate([fit_in, fit_out]).reshape(-1, 1),
                                        np.concatenate([np.ones(n, int), np.zeros(n, int)]))
            headlines.append(self.headline(clf.predict(forget.reshape(-1, 1))))
            scores += clf.decision_function(np.concatenate([forget, held_out]).reshape(-1, 1)) / self.cfg.repeats
        return Scores(torch.from_numpy(scores), float(np.mean(headlines)),
                      {"fit_per_side": int(n), "repeats": self.cfg.repeats, "std": float(np.std(headlines))})


@register_attack
class SVCEfficacy(_Population):
    name = "svc_efficacy"
    feature = "confidence"
    headline_name = "fraction of forget predicted non-member (MIA-Efficacy)"

    def classifier(self):
        from sklearn.svm import SVC

        return SVC(C=3, gamma="auto", kernel="rbf")

    def headline(self, predicted_member: np.ndarray) -> float:
        return float(1.0 - predicted_member.mean())


@register_attack
class EntropyAttack(_Population):
    name = "entropy"
    feature = "entropy"
    headline_name = "fraction of forget predicted member"

    def classifier(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(class_weight="balanced", solver="lbfgs")

    def headline(self, predicted_member: np.ndarray) -> float:
        return float(predicted_member.mean())
