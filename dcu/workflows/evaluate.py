"""Evaluation: accuracies, membership inference, gaps to the retrained model, Indiscernibility.

Attacks are looked up by name in the ``inversion_attacks`` registry (imported here, at the top layer).
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict, Iterable, Optional

import torch
import torch.nn as nn

from ..data import DatasetSplits, ImageSet
from ..train import accuracy

ACCURACIES = ("retain_acc", "forget_acc", "test_acc")


def indiscernibility(mia: float) -> float:
    """Deep Unlearn's Indiscernibility: 1 - |2 * MIA - 1| (1 when the attack is at chance)."""
    return 1.0 - abs(2.0 * mia - 1.0)


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    # older files have no "threads" and hold torch's thread count under "cores"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "threads": torch.get_num_threads(), "gpu": gpu, "device": "cuda" if gpu else "cpu",
            "platform": platform.platform()}


def provenance() -> Dict[str, Any]:
    """What produced a result file: the command line, the machine and the package versions."""
    from ..checkpoint import versions

    return {"command": " ".join(sys.argv), "machine": machine(), "versions": versions()}


def run_attack(name: str, model: nn.Module, retain: ImageSet, forget: ImageSet, test: ImageSet, *, seed: int = 0,
               held_out: Optional[ImageSet] = None, shadows: Optional[str] = None,
               settings: Optional[Dict[str, Any]] = None):
    """One attack on the forget set. Shadow-model attacks need non-members whose ids the shadow store knows,
    so they score against ``held_out`` (held-out training images) instead of the test set."""
    from dataclasses import fields

    from inversion_attacks import ATTACKS, get_attack

    uses_shadows = "shadows" in {f.name for f in fields(ATTACKS.get(name).Config)}
    settings = dict(settings or {})
    if "unlearn_shadow" in {f.name for f in fields(ATTACKS.get(name).Config)} and "unlearn_shadow" not in settings:
        from .request import shadow_unlearning  # U-LiRA: each shadow answers the request as `dcu forget` would

        defaults = ATTACKS.get(name).Config()
        settings["unlearn_shadow"] = shadow_unlearning(settings.get("method", defaults.method),
                                                       settings.get("settings", defaults.settings),
                                                       settings.get("condense", defaults.condense))
    if not uses_shadows:
        return get_attack(name, seed=seed, **settings).run(model, forget, test, retain=retain)
    if held_out is None or len(held_out) == 0:
        raise ValueError(f"Attack '{name}' scores the forget set against held-out training images; the model has "
                         "no held-out split (train it with --val-frac > 0).")
    if shadows is not None:   # a store made with a smaller held-out split scores against the part it knows
        from inversion_attacks.shadow import open_store

        held_out = held_out.subset(held_out.ids[open_store(shadows).contains(held_out.ids)])
    return get_attack(name, seed=seed, shadows=shadows, **settings).run(model, forget, held_out, retain=retain)


def same_classes(pool: ImageSet, forget: ImageSet) -> ImageSet:
    """The images of ``pool`` whose class occurs in ``forget``: membership non-members for a forget set.

    For a random request that is all of ``pool``; for a class-wise one, unseen images of the *same* class,
    so a membership attack measures membership and not the class (against other classes, a retrained model
    that never learnt the class is told apart perfectly, which says nothing)."""
    keep = torch.isin(pool.labels, torch.unique(forget.labels))
    return pool.subset(pool.ids[keep]) if keep.any() else pool


def model_metrics(model: nn.Module, retain: ImageSet, forget: ImageSet, test: ImageSet, *,
                  attacks: Iterable[str] = ("loss_lr",), seed: int = 0, held_out: Optional[ImageSet] = None,
                  shadows: Optional[str] = None, attack_settings: Optional[Dict[str, Dict[str, Any]]] = None,
                  non_members: Optional[ImageSet] = None) -> Dict[str, Any]:
    """Accuracies on retain / forget / ``test``, and each attack on the forget set against ``non_members``
    (default: the ``test`` images of the forget set's classes, :func:`same_classes`)."""
    out: Dict[str, Any] = {"retain_acc": accuracy(model, retain), "forget_acc": accuracy(model, forget),
                           "test_acc": accuracy(model, test), "mia": {}}
    non_members = non_members if non_members is not None else same_classes(test, forget)
    held_out = same_classes(held_out, forget) if held_out is not None and len(held_out) else held_out
    for name in attacks:
        result = run_attack(name, model, retain, forget, non_members, seed=seed, held_out=held_out, shadows=shadows,
                            settings=(attack_settings or {}).get(name))
        out["mia"][name] = result.summary()
    if "loss_lr" in out["mia"]:
        out["indiscernibility"] = indiscernibility(out["mia"]["loss_lr"]["headline"])
    return out


def gaps(result: Dict[str, Any], reference: Dict[str, Any]) -> Dict[str, float]:
    """Absolute gap to the reference per accuracy and MIA, and their mean ("avg gap", SalUn)."""
    out = {k: abs(result[k] - reference[k]) for k in ACCURACIES}
    if "loss_lr" in result["mia"] and "loss_lr" in reference["mia"]:
        out["mia_loss_lr"] = abs(result["mia"]["loss_lr"]["headline"] - reference["mia"]["loss_lr"]["headline"])
    out["avg_gap"] = sum(out.values()) / len(out)
    return out


def evaluate(model: nn.Module, splits: DatasetSplits, forget_ids: torch.Tensor, *, meta: Optional[Dict] = None,
             reference: Optional[nn.Module] = None, reference_meta: Optional[Dict] = None,
             attacks: Iterable[str] = ("loss_lr",), seed: int = 0, shadows: Optional[str] = None,
             attack_settings: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The report of docs/method.md (section 3) for one model and one forget request (JSON-ready)."""
    attacks = list(attacks)
    forget = splits.train.subset(forget_ids)
    retain = splits.train.without(forget_ids)
    report: Dict[str, Any] = {
        "dataset": splits.name,
        "split_sizes": {"retain": len(retain), "forget": len(forget), "test": len(splits.test),
                        "val": len(splits.val) if splits.val is not None else 0,
                        "non_members": len(same_classes(splits.test, forget))},
        "seed": seed,
        "machine": machine(),
    }
    report.update(model_metrics(model, retain, forget, splits.test, attacks=attacks, seed=seed, held_out=splits.val,
                                shadows=shadows, attack_settings=attack_settings))
    if meta:
        report["model"] = {k: meta.get(k) for k in ("hash", "arch", "arch_args", "method", "parent_hash",
                                                     "forget_hash", "forget_count")}
        report["time"] = dict(meta.get("times", {}))
    if reference is not None:
        ref = model_metrics(reference, retain, forget, splits.test, attacks=attacks, seed=seed, held_out=splits.val,
                            shadows=shadows, attack_settings=attack_settings)
        report["reference"] = ref
        report["gap"] = gaps(report, ref)
        ref_time = (reference_meta or {}).get("times", {}).get("online_seconds")
        own_time = report.get("time", {}).get("online_seconds")
        if ref_time and own_time:
            report["time"]["rte"] = ref_time / own_time
    return report
