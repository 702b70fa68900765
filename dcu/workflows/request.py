"""Answering a forget request: the one path every caller takes.

``dcu forget``, the preset benchmarks (``pipeline.compare``), the cycles example, the attack benchmark and
U-LiRA's shadows all answer a request with :func:`answer_request`: it checks that the condensed set
belongs to the model, unlearns, refuses a run that changed nothing, refreshes the condensed set when the
method did not, and writes the unlearned model's metadata (lineage, counts and salted digests, times) and
its request ledger. Writing the files is left to the caller (the CLI commits them as one transaction).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ..checkpoint import checkpoint_payload
from ..data import DatasetSplits
from ..ledger import Ledger
from ..train import TrainConfig

# what each step of a model's lineage records about the model it came from
LINEAGE_KEYS = ("hash", "kind", "method", "method_config", "parent_hash", "forget_hash", "forget_count",
                "withdrawn_count", "times", "created", "versions", "num_trained_on")


@dataclass
class Answer:
    """An answered request: the unlearned model and everything a checkpoint of it records."""
    model: nn.Module
    meta: Dict[str, Any]        # the checkpoint's metadata, its ``hash`` included
    payload: Dict[str, Any]     # what ``torch.save`` writes as the checkpoint
    ledger: Ledger              # the request ledger after this request (ids, salt, the requests so far)
    refreshed: Any = None       # the condensed set without the forget ids (None when none was given)
    times: Dict[str, float] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return self.meta["hash"]


def check_condensed(condensed, meta: Dict[str, Any], forgotten: torch.Tensor, name: str = "the condensed set") -> None:
    """Refuse a condensed set that does not belong to the model ``meta`` describes: another held-out split,
    condensed with a model outside its lineage, refreshed for another model, or still holding forgotten ids."""
    if condensed.source.get("holdout") not in (None, meta.get("holdout")):
        raise ValueError(f"{name} was made with held-out split {condensed.source['holdout']}, but the model with "
                         f"{meta.get('holdout')}.")
    lineage = {meta.get("hash")} | {step.get("hash") for step in meta.get("lineage", [])}
    made_with = condensed.source.get("model_hash")
    if made_with and made_with not in lineage:
        raise ValueError(f"{name} was condensed with model {made_with}, which is neither the model "
                         f"({meta.get('hash')}) nor one of its ancestors.")
    paired = condensed.source.get("refreshed_for")
    if paired and paired != meta.get("hash"):
        raise ValueError(f"{name} was refreshed for model {paired}, not for this model ({meta.get('hash')}); "
                         "pass the model and condensed set that one request wrote.")
    stale = torch.isin(condensed.members, forgotten)
    if stale.any():
        raise ValueError(f"{name} still holds id {int(condensed.members[stale][0])}, "
                         "which an earlier request forgot; pass the condensed set that request wrote.")


def answer_request(model: nn.Module, meta: Dict[str, Any], splits: DatasetSplits, forget_ids: torch.Tensor, *,
                   method: str, settings: Optional[Dict[str, Any]] = None, seed: int = 0,
                   ledger: Optional[Ledger] = None, withdrawn: Optional[torch.Tensor] = None,
                   condensed=None, require_change: bool = True) -> Answer:
    """Forget ``forget_ids`` (training ids not forgotten before) from ``model`` with ``method``.

    ``meta`` is the model's checkpoint metadata (``hash``, ``train_config``, lineage), ``ledger`` its request
    ledger (a fresh one for an original), ``withdrawn`` held-out ids the request names: they are recorded
    and leave the held-out split. The retain set is the training split without every id forgotten so far.
    ``condensed`` is checked against the model and refreshed for the request; the answer carries the
    refreshed set, marked as belonging to the new model. The method runs on the model's device.
    """
    from unlearn import get_unlearner

    ledger = ledger if ledger is not None else Ledger(model_hash=meta.get("hash", ""))
    withdrawn = withdrawn if withdrawn is not None else torch.empty(0, dtype=torch.long)
    forget_ids = torch.sort(torch.as_tensor(forget_ids, dtype=torch.long)).values
    again = torch.isin(forget_ids, torch.cat([ledger.forgotten, ledger.withdrawn]))
    if again.any():
        raise ValueError(f"id {int(forget_ids[again][0])} was already removed by an earlier request.")
    if condensed is not None:
        check_condensed(condensed, meta, ledger.forgotten)
    remaining = splits.train.without(ledger.forgotten) if len(ledger.forgotten) else splits.train
    forget, retain = remaining.subset(forget_ids), remaining.without(forget_ids)
    gone = torch.cat([ledger.withdrawn, withdrawn])
    val = splits.val.without(gone) if splits.val is not None and len(gone) else splits.val
    unlearner = get_unlearner(method, train_config=TrainConfig(**meta["train_config"]), seed=seed, **(settings or {}))
    refreshed, stats = None, {}
    if len(forget_ids):
        result = unlearner.unlearn(model, retain, forget, condensed=condensed, val=val)
        if require_change:
            before = {k: v.cpu() for k, v in model.state_dict().items()}
            if all(torch.equal(v.cpu(), before[k]) for k, v in result.model.state_dict().items()):
                raise ValueError(f"Unlearning with '{method}' left every weight as it was (settings "
                                 f"{unlearner.config_dict()}); nothing was written. Check the settings (epochs=0?).")
        unlearned, refreshed, stats = result.model, result.refreshed, dict(result.stats)
        times = {"online_seconds": stats["seconds"],
                 **{k: v for k, v in stats.items() if k.endswith("seconds") and k != "seconds"}}
    else:   # every id was held out: nothing to unlearn, but the held-out split loses them
        unlearned, times = copy.deepcopy(model), {"online_seconds": 0.0}
    if condensed is not None:
        if refreshed is None and len(forget_ids):   # the method did not use the set: it must still lose the ids
            start = time.perf_counter()
            refreshed = condensed.refresh(forget_ids, retain, forget)
            times["store_refresh_seconds"] = time.perf_counter() - start
        refreshed = refreshed if refreshed is not None else condensed
        times["offline_seconds"] = condensed.timings.get("condense_seconds")
    new_ledger = ledger.after(forget_ids, withdrawn)
    parent = {k: meta.get(k) for k in LINEAGE_KEYS}
    new_meta = {**{k: v for k, v in meta.items() if k not in ("hash", "created", "versions", "forgotten_ids")},
                "kind": "unlearned", "parent_hash": meta.get("hash"), "forget_hash": new_ledger.digest(forget_ids),
                "forget_count": int(len(forget_ids)), "withdrawn_count": int(len(new_ledger.withdrawn)),
                **new_ledger.summary(), "train_ids_hash": new_ledger.digest(retain.ids),
                "num_trained_on": len(retain), "method": method, "method_config": unlearner.config_dict(),
                "times": times, "lineage": list(meta.get("lineage", [])) + [parent]}
    payload, digest = checkpoint_payload(unlearned, new_meta)
    new_ledger.model_hash = digest
    new_ledger.requests.append({"model_hash": digest, "parent_hash": meta.get("hash"), "method": method,
                                "created": payload["meta"]["created"], "forget_ids": forget_ids.tolist(),
                                "withdrawn_ids": withdrawn.tolist()})
    if refreshed is not None:
        refreshed = copy.copy(refreshed) if refreshed is condensed else refreshed   # the caller's set is not changed
        refreshed.source = {**refreshed.source, "refreshed_for": digest}
    return Answer(unlearned, payload["meta"], payload, new_ledger, refreshed, times, stats)


def shadow_unlearning(method: str, settings: Optional[Dict[str, Any]] = None,
                      condense: Optional[Dict[str, Any]] = None):
    """U-LiRA's unlearning step: ``step(shadow, meta, splits, forget_ids, seed) -> model`` answers a shadow
    model's request with ``method`` as :func:`answer_request` does, condensing the shadow's own training
    half first (``condense``: a condenser's name and settings) when the method needs a condensed set."""
    from unlearn import get_unlearner

    def step(shadow: nn.Module, meta: Dict[str, Any], splits: DatasetSplits, forget_ids: torch.Tensor,
             seed: int) -> nn.Module:
        condensed = None
        if get_unlearner(method).requires_condensed:
            from condense import get_condenser

            cfg = dict(condense or {"method": "fdm", "ipc": 10})
            condensed = get_condenser(cfg.pop("method"), seed=seed, **cfg).condense(splits, shadow, "")
        return answer_request(shadow, {"train_config": meta["train_config"]}, splits, forget_ids, method=method,
                              settings=settings, seed=seed, condensed=condensed, require_change=False).model

    return step
