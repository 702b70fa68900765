"""The end-to-end job shared by ``dcu demo``, the benchmarks and the examples: train the original once,
condense once, answer one forget request with several methods, evaluate each against ``retrain``.

This module sits at the top layer (like the CLI): it looks methods up by name in the registries of
``condense``, ``unlearn`` and ``inversion_attacks``.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch

from ..checkpoint import base_meta, load_checkpoint, save_checkpoint
from ..data import DatasetSplits, load
from ..forget import random_ids
from ..io import ids_hash
from ..models import create_model
from ..presets import get_preset, method_of, seed_role
from ..train import TrainConfig, model_device, train
from .evaluate import gaps, machine, model_metrics, same_classes

log = logging.getLogger(__name__)


def prepare_splits(preset: Dict[str, Any], data_root: Optional[str] = None) -> DatasetSplits:
    """The preset's dataset with its held-out split (``subsample`` or ``val_frac``)."""
    splits = load(preset["dataset"], data_root)
    if "subsample" in preset:
        return splits.subsample(**preset["subsample"])
    return splits.holdout(preset.get("val_frac", 0.1), seed=0)


def preset_original(name: str, data_root: Optional[str], seed: int, work_dir: str | Path,
                    device: torch.device | str = "cpu"):
    """A benchmark's start: ``(preset, splits, original, meta)``, the original cached in ``work_dir`` under a
    name that says its preset, model and seed."""
    preset = get_preset(name)
    splits = prepare_splits(preset, data_root)
    cache = Path(work_dir) / f"original-{name}-{preset['model']}-seed{seed}.pt"
    return (preset, splits, *train_original(splits, preset, seed, cache, device))


def condenser_settings(preset: Dict[str, Any], overrides: Dict[str, Dict[str, Any]],
                       method: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The condenser a run uses and its settings, or None where the run keeps the preset's as they are.

    ``method`` (``--condense``) swaps the preset's condenser for another at the preset's IPC; a condenser's own
    ``--set METHOD.KEY=VALUE`` entries are moved out of ``overrides`` onto it. A ``--set`` that names a condenser
    the run does not use raises ``ValueError``.
    """
    from condense import list_condensers

    named = set(list_condensers()) & set(overrides)
    if method is None and not named:
        return None
    condense = dict(preset["condense"])
    if method and method != condense["method"]:
        condense = {"method": method, "ipc": condense.get("ipc", 10)}
    condense.update(overrides.pop(condense["method"], {}))
    for name in named - {condense["method"]}:
        raise ValueError(f"--set names condenser '{name}', but the run condenses with '{condense['method']}' "
                         "(--condense)")
    return condense


def train_original(splits: DatasetSplits, preset: Dict[str, Any], seed: int, cache: Optional[Path] = None,
                   device: torch.device | str = "cpu"):
    """Train (or load from ``cache``) the original model of a preset and seed on ``device``; returns (model, meta)."""
    if cache is not None and cache.exists():
        model, meta = load_checkpoint(cache, splits)
        if (meta.get("train_ids_hash") == ids_hash(splits.train.ids) and meta.get("seed") == seed
                and meta.get("arch") == preset["model"] and meta.get("train_config", {}).get("epochs") == preset["train"]["epochs"]
                and _model_settings(meta.get("arch_args", {})) == preset.get("model_args", {})):
            log.info("Reusing the original model in %s.", cache)
            return model.to(device), meta
    torch.manual_seed(seed)
    c, h, _ = splits.input_shape
    model = create_model(preset["model"], in_channels=c, num_classes=splits.num_classes, image_size=h,
                         **preset.get("model_args", {})).to(device)
    cfg = TrainConfig(**{**preset["train"], "seed": seed})
    start = time.perf_counter()
    train(model, splits.train, cfg, desc="original")
    seconds = time.perf_counter() - start
    meta = {**base_meta(model, splits, splits.train.ids), "kind": "original", "seed": seed,
            "train_config": asdict(cfg), "times": {"online_seconds": seconds}, "forgotten_count": 0}
    if cache is not None:
        meta["hash"] = save_checkpoint(cache, model, meta)
    return model, meta


def _model_settings(arch_args: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's model arguments less those the data fixes (what a preset's ``model_args`` holds)."""
    return {k: v for k, v in arch_args.items() if k not in ("in_channels", "num_classes", "image_size")}


SCENARIOS = ("random", "class", "sequential")


def forget_requests(splits: DatasetSplits, scenario: str, seed: int, *, frac: float = 0.1, forget_class: int = 0,
                    requests: int = 5, request_frac: float = 0.02) -> List[torch.Tensor]:
    """The forget requests of a scenario: one random fraction, one whole class, or several disjoint small ones."""
    if scenario == "random":
        return [random_ids(splits.train.ids, frac, seed)]
    if scenario == "class":
        return [splits.train.ids[splits.train.labels == forget_class]]
    if scenario == "sequential":
        ids = splits.train.ids[torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))]
        size = max(1, int(round(request_frac * len(ids))))
        return [torch.sort(ids[i * size : (i + 1) * size]).values for i in range(requests)]
    raise ValueError(f"Unknown scenario '{scenario}'. Valid values are: {', '.join(SCENARIOS)}.")


def compare(
    preset_name: str,
    *,
    seed: int = 0,
    methods: Iterable[str] = ("retrain", "finetune", "dcu"),
    scenario: str = "random",
    data_root: Optional[str] = None,
    work_dir: Optional[str | os.PathLike] = None,
    attacks: Iterable[str] = ("loss_lr",),
    on_update: Optional[Callable[[Dict[str, Any]], None]] = None,
    method_overrides: Optional[Dict[str, Dict[str, Any]]] = None,
    preset_overrides: Optional[Dict[str, Any]] = None,
    device: torch.device | str = "cpu",
    deadline: Optional[float] = None,
    condensed_for: Iterable[str] = (),
) -> Dict[str, Any]:
    """Run one preset, seed and scenario: the original, the condensed set, then every method, all evaluated.

    On a GPU ``device`` everything runs there: the original, the condensation, every method and attack.

    In the ``sequential`` scenario each request is applied to the previous request's model (and refreshed
    condensed set); ``retrain`` trains once on what remains after the last. In the ``class`` scenario the
    test accuracy is on the other classes (``test_forget_class_acc`` beside it). ``on_update(result)`` is
    called after each part, so a long run can write what has finished. A method not started by ``deadline``
    (a ``time.perf_counter()`` value) is listed under ``skipped`` instead.

    A row named ``METHOD@LABEL`` runs ``METHOD`` with the settings ``method_overrides[METHOD@LABEL]`` (on top of the
    preset's for ``METHOD``), so one run can hold several settings of a method. The rows in ``condensed_for`` are
    given the condensed set as their retain data (refreshed for the request) although their method does not
    need one, e.g. fine-tuning on the condensed set instead of the retain set.
    """
    from condense import get_condenser
    from unlearn import get_unlearner

    from .request import answer_request

    methods = list(methods)
    base = {name: method_of(name) for name in methods}
    on_condensed = set(condensed_for)
    if on_condensed - set(methods):
        raise ValueError(f"condensed_for names {sorted(on_condensed - set(methods))[0]!r}, which is not among the "
                         f"methods run: {', '.join(methods)}.")
    preset = {**get_preset(preset_name, scenario), **(preset_overrides or {})}
    work = Path(work_dir) if work_dir else None
    splits = prepare_splits(preset, data_root)
    requests = forget_requests(splits, scenario, seed, frac=preset.get("forget_frac", 0.1))
    forget_ids = torch.sort(torch.cat(requests)).values
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    test = splits.test
    if scenario == "class":
        test = splits.test.subset(splits.test.ids[splits.test.labels != int(forget.labels[0])])
    result: Dict[str, Any] = {
        "preset": preset_name, "seed": seed, "seed_role": seed_role(preset, seed), "scenario": scenario,
        "requests": len(requests),
        "machine": machine(), "dataset": splits.name,
        "split_sizes": {"train": len(splits.train), "retain": len(retain), "forget": len(forget),
                        "val": len(splits.val) if splits.val is not None else 0, "test": len(test)},
        "forget_hash": ids_hash(forget_ids), "config": preset, "methods": {},
    }

    def metrics(model) -> Dict[str, Any]:
        row = model_metrics(model, retain, forget, test, attacks=attacks, seed=seed,
                            non_members=same_classes(splits.test, forget))
        if scenario == "class":
            from ..train import accuracy

            row["test_forget_class_acc"] = accuracy(model, splits.test.without(test.ids))
        return row

    cache = work / f"original-{preset_name}-{preset['model']}-seed{seed}.pt" if work else None
    original, meta = train_original(splits, preset, seed, cache, device)
    result["original"] = {**metrics(original), "train_seconds": meta["times"]["online_seconds"]}
    if on_update:
        on_update(result)

    condensed = None
    if on_condensed or any(get_unlearner(base[m]).requires_condensed for m in methods):
        cond_cfg = dict(preset["condense"])
        method = cond_cfg.pop("method")
        condensed = get_condenser(method, seed=seed, **cond_cfg).to(device).condense(splits, original, meta.get("hash", ""))
        result["condense"] = {"method": method, **cond_cfg, "images": len(condensed),
                              "offline_seconds": condensed.timings["condense_seconds"]}

    overrides = method_overrides or {}
    for name in methods:
        if deadline is not None and time.perf_counter() > deadline:
            result.setdefault("skipped", []).append(name)
            continue
        settings = {**preset.get("unlearn", {}).get(base[name], {}), **overrides.get(name, {})}
        model, model_meta, cset, ledger, seconds, stats = original, meta, condensed, None, [], []
        uses_condensed = get_unlearner(base[name]).requires_condensed or name in on_condensed
        chain = [forget_ids] if base[name] == "retrain" else requests
        for request in chain:
            answer = answer_request(model, model_meta, splits, request, method=base[name], settings=settings, seed=seed,
                                    ledger=ledger, condensed=cset if uses_condensed else None,
                                    require_change=False)
            model, model_meta, ledger = answer.model, answer.meta, answer.ledger
            cset = answer.refreshed if uses_condensed else cset
            seconds.append(answer.times["online_seconds"])
            stats.append({k: v for k, v in answer.stats.items() if k != "seconds"})
        config = model_meta["method_config"]
        row = metrics(model)
        row["online_seconds"] = sum(seconds) / len(seconds)  # per request
        row["online_seconds_total"] = sum(seconds)
        row["stats"] = stats if len(stats) > 1 else stats[0]
        row["config"] = config
        row["device"] = str(model_device(model))
        if uses_condensed and "condense" in result:
            row["offline_seconds"] = result["condense"]["offline_seconds"]
        if name in on_condensed:
            row["retain_data"] = "condensed"
        result["methods"][name] = row
        add_reference_columns(result)
        if on_update:
            on_update(result)
    return result


def add_reference_columns(result: Dict[str, Any]) -> None:
    """Each method's gaps to ``retrain`` and its RTE (retraining time / its online time), when retrain ran."""
    ref = result["methods"].get("retrain")
    if ref is None:
        return
    for row in result["methods"].values():
        row["gap"] = gaps(row, ref)
        row["rte"] = ref["online_seconds"] / max(row["online_seconds"], 1e-9)


def table(result: Dict[str, Any]) -> str:
    """A markdown table of one ``compare`` result."""
    head = "| method | retain acc | forget acc | test acc | MIA (loss_lr) | avg gap | time (s) | RTE |\n"
    head += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
    rows = [("original", {**result["original"], "online_seconds": result["original"]["train_seconds"]})]
    rows += list(result["methods"].items())
    lines = []
    for name, row in rows:
        mia = row["mia"].get("loss_lr", {}).get("headline", float("nan"))
        gap = row.get("gap", {}).get("avg_gap")
        gap_text = "" if gap is None else f"{100 * gap:.2f}"
        rte_text = f"{row['rte']:.1f}" if "rte" in row else ""
        lines.append(
            f"| {name} | {100 * row['retain_acc']:.1f} | {100 * row['forget_acc']:.1f} | {100 * row['test_acc']:.1f} "
            f"| {100 * mia:.1f} | {gap_text} | {row['online_seconds']:.2f} | {rte_text} |"
        )
    return head + "\n".join(lines)
