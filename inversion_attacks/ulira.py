"""U-LiRA (Hayes, Shumailov, Triantafillou, Khalifa & Papernot, "Inexact Unlearning Needs More Careful
Evaluations to Avoid a False Sense of Privacy", 2024; the Deep Unlearn benchmark's per-sample evaluation).

LiRA asks "did this model train on x?". U-LiRA asks "was x trained on and then unlearned, or never trained
on?" — the question an unlearned model must not answer. Each shadow model of the store is *unlearned with
the method under test*: it forgets every query sample it trained on (the target's forget set and the
held-out samples scored against it). Per sample, the unlearned shadows that had trained on it give the IN
Gaussian and the shadows that never saw it give the OUT Gaussian; the target's confidence is scored with the
LiRA likelihood ratio. A perfect method makes the two the same: AUC 0.5.

The unlearned shadows' logits are cached in the store (one file per shadow and method setting), so a stopped
run resumes and other targets of the same request reuse them; ``shard=i/n`` splits the unlearning over n jobs
(machines or GPUs), and a run after them all scores with every shadow (the merge).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from dcu.data import DatasetSplits, ImageSet
from dcu.io import ArtifactError, atomic_save, safe_load
from dcu.models import create_model
from dcu.progress import progress, quiet
from dcu.train import TrainConfig

from .base import AttackResult, register_attack
from .lira import LiRAConfig, _ShadowAttack, lira_scores, scaled_confidence
from .shadow import open_store, query_logits


@dataclass
class ULiRAConfig(LiRAConfig):
    method: str = "finetune"
    settings: Dict[str, Any] = field(default_factory=dict)     # the method's settings, as for `dcu forget --set`
    condense: Dict[str, Any] = field(default_factory=lambda: {"method": "fdm", "ipc": 10})   # when it needs one
    shard: str = "0/1"      # i/n: unlearn only shadows k with k % n == i (one job per shard); scoring uses every
                            # unlearned shadow cached so far, so a last run after all shards is the merge


@register_attack
class ULiRA(_ShadowAttack):
    name = "ulira"
    Config = ULiRAConfig

    def run(self, model, members, non_members, *, retain=None) -> AttackResult:
        from condense import get_condenser
        from unlearn import get_unlearner

        store = open_store(self.cfg.shadows)
        if retain is None:
            raise ValueError("ulira rebuilds each shadow's training half from the retain, forget and held-out sets; "
                             "pass retain=.")
        pool = _pool(store, [retain, members, non_members])
        query = torch.cat([members.ids, non_members.ids])
        query_pos = store.positions(query)
        labels = torch.cat([members.labels, non_members.labels])
        key = hashlib.sha256(json.dumps([self.cfg.method, self.cfg.settings, self.cfg.condense,
                                         query.tolist()], sort_keys=True).encode()).hexdigest()[:12]
        cache = store.path / f"ulira-{self.cfg.method}-{key}"
        manifest = store.manifest
        train_cfg = TrainConfig(**manifest["train_config"])
        classes = int(manifest["arch_args"].get("num_classes", int(pool.labels.max()) + 1))
        try:
            part, parts = (int(x) for x in self.cfg.shard.split("/"))
            assert 0 <= part < parts
        except (ValueError, AssertionError):
            raise ValueError(f"ulira shard must be i/n with 0 <= i < n. Got '{self.cfg.shard}'.") from None
        mine = [i for i in store.done() if i % parts == part]
        for i in progress(mine, desc=f"ulira: unlearning shadows with {self.cfg.method}", unit="model"):
            file = cache / f"shadow-{i:04d}.pt"
            if not file.exists():
                saved = safe_load(store.file(i), what="dcu shadow model")
                if "state_dict" not in saved:
                    raise ArtifactError(f"{store.file(i)} holds no weights (made by an older dcu); refill the store.")
                c, h = pool.images.shape[1], pool.images.shape[2]
                shadow = create_model(manifest["arch"], **{**manifest["arch_args"], "in_channels": c, "image_size": h,
                                                         "num_classes": classes})
                shadow.load_state_dict(saved["state_dict"])
                mask = saved["mask"]
                trained = ImageSet(pool.images[mask], pool.labels[mask], pool.ids[mask])
                forget_ids = query[torch.isin(query, trained.ids)]
                held = ImageSet(pool.images[~mask], pool.labels[~mask], pool.ids[~mask])
                held = held.without(query)       # held-out for this shadow, and not scored: what it may calibrate on
                unlearner = get_unlearner(self.cfg.method, train_config=train_cfg, seed=manifest["seed"] + i,
                                          **self.cfg.settings)
                condensed = None
                if unlearner.requires_condensed:
                    settings = dict(self.cfg.condense)
                    splits = DatasetSplits(name=manifest["dataset"], train=trained, test=held, val=held,
                                           classes=[str(k) for k in range(classes)], mean=(0.0,) * c, std=(1.0,) * c)
                    condensed = get_condenser(settings.pop("method"), seed=manifest["seed"] + i, **settings).condense(
                        splits, shadow, "")
                with quiet():
                    unlearned = unlearner.unlearn(shadow, trained.without(forget_ids), trained.subset(forget_ids),
                                                  condensed=condensed, val=held)
                atomic_save({"format": "dcu-ulira-shadow", "in": mask[query_pos],
                             "logits": query_logits(unlearned, pool.images[query_pos], store.flip).half()}, file)
        logits, trained_then_unlearned = [], []
        for file in sorted(cache.glob("shadow-*.pt")):
            saved = safe_load(file, what="dcu U-LiRA shadow")
            logits.append(saved["logits"].float())
            trained_then_unlearned.append(saved["in"])
        if len(logits) < 2:
            raise ValueError(f"U-LiRA needs at least 2 unlearned shadows; {cache} holds {len(logits)} so far.")
        target = query_logits(model, torch.cat([members.images, non_members.images]), store.flip)
        scores, extra = lira_scores(scaled_confidence(torch.stack(logits), labels), torch.stack(trained_then_unlearned),
                                    scaled_confidence(target, labels), self.cfg.online, self.cfg.fixed_variance)
        is_member = torch.cat([torch.ones(len(members), dtype=torch.bool), torch.zeros(len(non_members), dtype=torch.bool)])
        extra.update(method=self.cfg.method, settings=self.cfg.settings, cache=str(cache))
        result = self._result(scores, is_member, extra)
        result.headline_name = "AUC (unlearned vs never trained, per sample)"
        return result


def _pool(store, parts) -> ImageSet:
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([p.labels for p in parts])
    ids = torch.cat([p.ids for p in parts])
    order = torch.argsort(ids)
    data = ImageSet(images[order], labels[order], ids[order])
    if not torch.equal(data.ids, store.pool):
        raise ValueError("ulira needs the retain, forget and held-out sets that together make up the shadow store's "
                         "pool (the training split and its held-out part).")
    return data
