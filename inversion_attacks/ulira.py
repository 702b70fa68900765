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

The attack does not unlearn by itself: ``unlearn_shadow(shadow, meta, splits, forget_ids, seed) -> model``
is given to it (``dcu.workflows.request.shadow_unlearning`` answers each shadow's request as ``dcu forget``
would), so this package needs neither the unlearning nor the condensation package.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import torch

from dcu.data import DatasetSplits, ImageSet
from dcu.io import ArtifactError, atomic_save, safe_load
from dcu.models import create_model
from dcu.progress import progress, quiet

from .base import Scores, register_attack
from .lira import LiRAConfig, _ShadowAttack, lira_scores, scaled_confidence
from .shadow import open_store, query_logits


@dataclass
class ULiRAConfig(LiRAConfig):
    method: str = "finetune"
    settings: Dict[str, Any] = field(default_factory=dict)     # the method's settings, as for `dcu forget --set`
    condense: Dict[str, Any] = field(default_factory=lambda: {"method": "fdm", "ipc": 10})   # when it needs one
    shard: str = "0/1"      # i/n: unlearn only shadows k with k % n == i (one job per shard); scoring uses every
                            # unlearned shadow cached so far, so a last run after all shards is the merge
    # (shadow, meta, splits, forget_ids, seed) -> unlearned model, answering the request with `method`
    unlearn_shadow: Optional[Callable[..., Any]] = None


@register_attack
class ULiRA(_ShadowAttack):
    name = "ulira"
    Config = ULiRAConfig
    headline_name = "AUC (unlearned vs never trained, per sample)"

    def score(self, model, members, non_members, *, retain=None) -> Scores:
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
        if self.cfg.unlearn_shadow is None and any(not (cache / f"shadow-{i:04d}.pt").exists() for i in store.done()):
            raise ValueError("ulira unlearns each shadow with the method under test: pass unlearn_shadow= "
                             "(dcu.workflows.request.shadow_unlearning builds it; `dcu attack` does this).")
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
                splits = DatasetSplits(name=manifest["dataset"], train=trained, test=held, val=held,
                                       classes=[str(k) for k in range(classes)], mean=(0.0,) * c, std=(1.0,) * c)
                with quiet():
                    unlearned = self.cfg.unlearn_shadow(shadow, manifest, splits, forget_ids, manifest["seed"] + i)
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
        extra.update(method=self.cfg.method, settings=self.cfg.settings, cache=str(cache))
        return Scores(scores, None, extra)


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
