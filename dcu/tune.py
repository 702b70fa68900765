"""Multi-objective hyper-parameter search for an unlearning method, as the Deep Unlearn benchmark does it
(xcadet/deepunlearn: Optuna, objectives = gaps to the retrained model).

Everything is measured on held-out *training* images, never on the test set: the validation split is cut in
two, one half handed to the method (for methods that calibrate on held-out data), the other used for the
objectives: |Δ retain acc|, |Δ forget acc|, |Δ validation acc| to the retrained model, and
1 − Indiscernibility of the ``loss_lr`` attack (forget set against the objective half). The chosen trial is
the one on the Pareto front with the smallest sum of objectives.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn

from .data import DatasetSplits, ImageSet
from .evaluate import indiscernibility, model_metrics
from .train import TrainConfig

OBJECTIVES = ("retain_gap", "forget_gap", "val_gap", "one_minus_indiscernibility")


def suggest(trial, space: Dict[str, Any]) -> Dict[str, Any]:
    """Draw settings from a method's ``search_space``: ``(low, high, "log" | "linear" | "int")`` or choices."""
    out = {}
    for name, spec in space.items():
        if isinstance(spec, (list, tuple)) and len(spec) == 3 and spec[2] in ("log", "linear", "int"):
            low, high, kind = spec
            if kind == "int":
                out[name] = trial.suggest_int(name, int(low), int(high))
            else:
                out[name] = trial.suggest_float(name, float(low), float(high), log=kind == "log")
        else:
            out[name] = trial.suggest_categorical(name, list(spec))
    return out


def split_validation(val: ImageSet, seed: int = 0):
    """Two disjoint halves of the held-out images: for the method, and for the objectives."""
    if val is None or len(val) < 20:
        raise ValueError("Tuning needs a validation split of at least 20 held-out training images "
                         "(train the original with --val-frac > 0).")
    order = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))
    half = len(val) // 2
    return val.subset(val.ids[order[:half]]), val.subset(val.ids[order[half:]])


def objectives(row: Dict[str, Any], reference: Dict[str, Any]) -> List[float]:
    mia = row["mia"]["loss_lr"]["headline"]
    return [abs(row["retain_acc"] - reference["retain_acc"]), abs(row["forget_acc"] - reference["forget_acc"]),
            abs(row["test_acc"] - reference["test_acc"]), 1.0 - indiscernibility(mia)]


def tune(method: str, original: nn.Module, splits: DatasetSplits, forget_ids: torch.Tensor, *,
         train_config: TrainConfig, trials: int = 20, seed: int = 0, fixed: Optional[Dict[str, Any]] = None,
         reference: Optional[nn.Module] = None, condensed=None,
         on_trial: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Search ``method``'s ``search_space`` for ``trials`` trials; returns every trial, the Pareto front and the
    chosen settings. ``reference`` is the model retrained on the retain set (trained here when omitted)."""
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("dcu tune needs Optuna: pip install 'dcu[tune]' (or pip install optuna).") from exc
    from unlearn import get_unlearner

    fixed = dict(fixed or {})
    method_val, objective_val = split_validation(splits.val, seed)
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    space = {k: v for k, v in get_unlearner(method).search_space.items() if k not in fixed}
    if not space:
        raise ValueError(f"Unlearning method '{method}' has no search space to tune.")

    def measure(model):
        return model_metrics(model, retain, forget, objective_val, attacks=("loss_lr",), seed=seed)

    result: Dict[str, Any] = {"method": method, "objectives": list(OBJECTIVES), "fixed": fixed, "search_space":
                              {k: list(v) for k, v in space.items()}, "trials": [], "seed": seed}
    start = time.perf_counter()
    if reference is None:
        reference = get_unlearner("retrain", train_config=train_config, seed=seed).unlearn(original, retain, forget)
        result["reference_seconds"] = time.perf_counter() - start
    result["reference"] = ref = measure(reference)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize"] * len(OBJECTIVES),
                                sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial):
        settings = {**fixed, **suggest(trial, space)}
        unlearner = get_unlearner(method, train_config=train_config, seed=seed, **settings)
        try:
            model = unlearner.unlearn(original, retain, forget, condensed=condensed, val=method_val)
        except FloatingPointError as exc:   # a diverged setting is a bad trial, not a failed search
            trial.set_user_attr("error", str(exc))
            return [1.0] * len(OBJECTIVES)
        row = measure(model)
        values = objectives(row, ref)
        entry = {"number": trial.number, "settings": settings, "objectives": dict(zip(OBJECTIVES, values)),
                 "retain_acc": row["retain_acc"], "forget_acc": row["forget_acc"], "val_acc": row["test_acc"],
                 "mia": row["mia"]["loss_lr"]["headline"], "seconds": unlearner.stats["seconds"]}
        result["trials"].append(entry)
        if on_trial:
            on_trial(result)
        return values

    study.optimize(objective, n_trials=trials)
    pareto = {t.number for t in study.best_trials}
    result["pareto"] = sorted(pareto)
    candidates = [t for t in result["trials"] if t["number"] in pareto] or result["trials"]
    if not candidates:
        raise RuntimeError(f"Every trial of '{method}' diverged; narrow its search space with --set.")
    best = min(candidates, key=lambda t: sum(t["objectives"].values()))
    result["best"] = {"number": best["number"], "settings": best["settings"], "objectives": best["objectives"],
                      "sum": sum(best["objectives"].values())}
    result["seconds"] = time.perf_counter() - start
    if not math.isfinite(result["best"]["sum"]):  # pragma: no cover
        raise RuntimeError("The best trial has non-finite objectives.")
    return result
