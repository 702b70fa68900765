"""Multi-objective hyper-parameter search for an unlearning method, as the Deep Unlearn benchmark does it
(xcadet/deepunlearn: Optuna, objectives = gaps to the retrained model).

Everything is measured on held-out *training* images, never on the test set: the validation split is cut in
two, one half handed to the method (for methods that calibrate on held-out data), the other used for the
objectives: |Δ retain acc|, |Δ forget acc|, |Δ validation acc| to the retrained model, and
1 − Indiscernibility of the ``loss_lr`` attack (forget set against the objective half). The chosen trial is
the one on the Pareto front with the smallest sum of objectives (:func:`choose`).

With a ``forget_bound`` the choice puts forgetting first: among the front's trials whose forget gap is within
the bound, the one with the smallest retain + validation gap. A class-wise request needs it: there the
retrained model forgets the whole class, the attack tells its forget set apart perfectly (1 − Indiscernibility
is near 1 for every setting that forgets), and the plain sum prefers settings that keep the class.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn

from ..data import DatasetSplits, ImageSet
from ..train import TrainConfig
from .evaluate import indiscernibility, model_metrics

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
            abs(row["val_acc"] - reference.get("val_acc", reference.get("test_acc"))), 1.0 - indiscernibility(mia)]


def tune(method: str, original: nn.Module, splits: DatasetSplits, forget_ids: torch.Tensor, *,
         train_config: TrainConfig, trials: int = 20, seed: int = 0, fixed: Optional[Dict[str, Any]] = None,
         reference: Optional[nn.Module] = None, condensed=None, resume: Optional[Dict[str, Any]] = None,
         on_trial: Optional[Callable[[Dict[str, Any]], None]] = None, forget_bound: Optional[float] = None,
         grid: Optional[Dict[str, List[Any]]] = None) -> Dict[str, Any]:
    """Search ``method``'s ``search_space`` for ``trials`` trials; returns every trial, the Pareto front and the
    chosen settings. ``reference`` is the model retrained on the retain set (trained here when omitted).

    With ``grid`` (setting -> values) every combination is tried once instead (``trials`` is ignored), and the
    same rule chooses among them: a hand sweep, scored on held-out training images like any search.

    ``resume`` is the partial result of a stopped search with the same settings (what ``on_trial`` was given):
    its trials are replayed into the sampler, which draws exactly the settings it drew before, so the
    search continues to the result an uninterrupted run reaches.
    """
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("dcu tune needs Optuna: pip install 'dcu[tune]' (or pip install optuna).") from exc
    from unlearn import get_unlearner

    from ..io import ArtifactError

    fixed = dict(fixed or {})
    method_val, objective_val = split_validation(splits.val, seed)
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    space = {k: v for k, v in (grid or get_unlearner(method).search_space).items() if k not in fixed}
    if not space:
        raise ValueError(f"Unlearning method '{method}' has no search space to tune.")
    if grid:
        space = {k: list(v) for k, v in space.items()}
        trials = math.prod(len(v) for v in space.values())

    def measure(model):   # the held-out objective half stands where model_metrics puts a test set
        row = model_metrics(model, retain, forget, objective_val, attacks=("loss_lr",), seed=seed)
        row["val_acc"] = row.pop("test_acc")
        return row

    result: Dict[str, Any] = {"method": method, "objectives": list(OBJECTIVES), "fixed": fixed, "search_space":
                              {k: list(v) for k, v in space.items()}, "trials": [], "seed": seed}
    done: List[Dict[str, Any]] = []
    if resume is not None:
        same = {k: resume.get(k) for k in ("method", "fixed", "search_space", "seed")}
        if same != {k: result[k] for k in same}:
            raise ArtifactError(f"The search to resume was run with other settings ({same}).")
        done = list(resume.get("trials", []))
    start = time.perf_counter()
    if resume is not None and "reference" in resume:
        result["reference"] = ref = resume["reference"]
    else:
        if reference is None:
            reference = get_unlearner("retrain", train_config=train_config, seed=seed).unlearn(original, retain, forget).model
            result["reference_seconds"] = time.perf_counter() - start
        result["reference"] = ref = measure(reference)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize"] * len(OBJECTIVES),
                                sampler=optuna.samplers.TPESampler(seed=seed))
    for combination in itertools.product(*space.values()) if grid else ():   # the grid, in order, once each
        study.enqueue_trial(dict(zip(space, combination)))
    for number in range(trials):
        trial = study.ask()
        settings = {**fixed, **suggest(trial, space)}
        if number < len(done):           # replay: the sampler must draw what it drew before
            entry = done[number]
            if entry["settings"] != settings:
                raise ArtifactError(f"Resuming trial {number}: the sampler drew {settings}, the stopped search had "
                                    f"{entry['settings']}; it was not made with these settings.")
        else:
            entry = _run_trial(method, number, settings, train_config, seed, original, retain, forget, condensed,
                               method_val, measure, ref)
        study.tell(trial, [entry["objectives"][k] for k in OBJECTIVES])
        result["trials"].append(entry)
        if on_trial and number >= len(done):
            on_trial(result)
    result["pareto"] = sorted(t.number for t in study.best_trials)
    result["best"] = choose(result, forget_bound)
    result["seconds"] = time.perf_counter() - start
    return result


def choose(result: Dict[str, Any], forget_bound: Optional[float] = None) -> Dict[str, Any]:
    """The chosen trial of a finished search (``result`` as :func:`tune` returns it, or as stored).

    Without ``forget_bound``: the Pareto trial with the smallest sum of objectives. With it: the Pareto trial
    with the smallest retain + validation gap among those whose forget gap is at most ``forget_bound``; when
    none forgets that well, the one with the smallest forget gap (``bound_met`` False says so). Restricting to
    the front loses nothing: a trial that dominates another is also within the bound and no worse on the rest.
    """
    pareto = set(result["pareto"])
    candidates = [t for t in result["trials"] if t["number"] in pareto and "error" not in t]
    if not candidates:
        raise RuntimeError(f"Every trial of '{result['method']}' diverged; narrow its search space with --set.")
    rule = "smallest sum of objectives on the Pareto front"
    extra: Dict[str, Any] = {}
    if forget_bound is None:
        best = min(candidates, key=lambda t: sum(t["objectives"].values()))
    else:
        within = [t for t in candidates if t["objectives"]["forget_gap"] <= forget_bound]
        extra = {"forget_bound": forget_bound, "bound_met": bool(within)}
        if within:
            best = min(within, key=lambda t: t["objectives"]["retain_gap"] + t["objectives"]["val_gap"])
            rule = f"smallest retain + val gap among Pareto trials with forget gap <= {forget_bound:g}"
        else:
            best = min(candidates, key=lambda t: (t["objectives"]["forget_gap"], sum(t["objectives"].values())))
            rule = f"no Pareto trial has forget gap <= {forget_bound:g}: the smallest forget gap"
    return {"number": best["number"], "settings": best["settings"], "objectives": best["objectives"],
            "sum": sum(best["objectives"].values()), "rule": rule, **extra}


def _run_trial(method, number, settings, train_config, seed, original, retain, forget, condensed, method_val,
               measure, ref) -> Dict[str, Any]:
    from unlearn import get_unlearner

    unlearner = get_unlearner(method, train_config=train_config, seed=seed, **settings)
    try:
        result = unlearner.unlearn(original, retain, forget, condensed=condensed, val=method_val)
    except FloatingPointError as exc:   # a diverged setting is a bad trial, not a failed search
        return {"number": number, "settings": settings, "objectives": dict.fromkeys(OBJECTIVES, 1.0), "error": str(exc)}
    row = measure(result.model)
    return {"number": number, "settings": settings, "objectives": dict(zip(OBJECTIVES, objectives(row, ref))),
            "retain_acc": row["retain_acc"], "forget_acc": row["forget_acc"], "val_acc": row["val_acc"],
            "mia": row["mia"]["loss_lr"]["headline"], "seconds": result.seconds}
