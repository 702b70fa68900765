"""The fastest retraining schedule that reaches a preset's accuracy, and RTE measured against it.

An RTE against a needlessly slow retrain is inflated, so this finds the shortest schedule that retraining
needs here, then times against it.

**Part 1, accuracy (development seeds only).** For each seed, the preset's random request is retrained with
the preset's own recipe (one-cycle SGD) cut to E epochs, for each E in ``--epochs``. The held-out
*validation* accuracy of each is read; test accuracy is recorded but chooses nothing. The fastest schedule is
the fewest epochs whose mean validation accuracy is within ``--tolerance`` of the preset schedule's.

**Part 2, ``--time`` (on an otherwise idle machine).** In one process, on the first seed's request: retrain at
the preset's schedule and at the fastest one, and each ``--methods`` entry. RTE = retrain seconds / method
seconds, against both schedules.

    python benchmarks/retrain_schedule.py --preset audit --data-root ~/data/cifar10 --seeds 0,1,2 --epochs 6,8,12,16,24
    python benchmarks/retrain_schedule.py --preset audit --data-root ~/data/cifar10 --seeds 0 --time \\
        --methods dcu,finetune

Results go to ``benchmarks/results/retrain-schedule-<preset>.json``, each part written as it finishes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json
from dcu.presets import check_development_seed, method_of, method_settings
from dcu.progress import progress, quiet, set_quiet
from dcu.train import TrainConfig, accuracy
from dcu.workflows.audit import shared_condensed
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import forget_requests, preset_original

RESULTS = Path(__file__).resolve().parent / "results"


def retrain(original, splits, forget_ids, train_cfg: TrainConfig, epochs: int, seed: int):
    """The ``retrain`` method at ``epochs`` epochs of the preset's recipe: (model, seconds)."""
    from unlearn import get_unlearner

    unlearner = get_unlearner("retrain", train_config=replace(train_cfg, epochs=epochs), seed=seed)
    start = time.perf_counter()
    with quiet():
        model = unlearner.unlearn(original, splits.train.without(forget_ids), splits.train.subset(forget_ids)).model
    return model, time.perf_counter() - start


def fastest(rows, preset_epochs: int, tolerance: float) -> int:
    """The fewest epochs whose mean validation accuracy is within ``tolerance`` of the preset schedule's."""
    mean = {e: statistics.mean(r["val_acc"] for r in rows if r["epochs"] == e) for e in {r["epochs"] for r in rows}}
    return min(e for e, acc in mean.items() if acc >= mean[preset_epochs] - tolerance)


def main(argv=None) -> int:
    from unlearn import get_unlearner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="audit")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seeds", default="0,1,2", help="development seeds (each: its original and request)")
    parser.add_argument("--epochs", default="6,8,12,16,24", help="retraining schedules to try (epochs)")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="validation accuracy the fastest schedule may lose against the preset's")
    parser.add_argument("--time", action="store_true", help="part 2: time retrain and --methods (machine idle)")
    parser.add_argument("--methods", default="dcu", help="methods timed by --time (METHOD@LABEL variants with --set)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="a method setting")
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)
    seeds = [int(s) for s in args.seeds.split(",")]
    schedules = sorted({int(e) for e in args.epochs.split(",")})
    out = Path(args.out) if args.out else RESULTS / f"retrain-schedule-{args.preset}.json"
    result = json.loads(out.read_text()) if out.exists() else {"benchmark": "retrain-schedule", "preset": args.preset}

    preset_epochs = None
    if not args.time:
        rows = []
        for seed in seeds:
            preset, splits, original, meta = preset_original(args.preset, args.data_root, seed, args.work_dir)
            try:
                check_development_seed(preset, seed, "the schedule study")
            except ValueError as exc:
                parser.error(str(exc))
            train_cfg, preset_epochs = TrainConfig(**meta["train_config"]), meta["train_config"]["epochs"]
            forget_ids = forget_requests(splits, "random", seed, frac=preset.get("forget_frac", 0.1))[0]
            for epochs in progress(sorted({*schedules, preset_epochs}), desc=f"seed {seed}", unit="schedule"):
                model, seconds = retrain(original, splits, forget_ids, train_cfg, epochs, seed)
                rows.append({"seed": seed, "epochs": epochs, "val_acc": accuracy(model, splits.val),
                             "test_acc": accuracy(model, splits.test), "seconds": seconds})
                print(json.dumps(rows[-1]), flush=True)
        result["accuracy"] = {**provenance(), "seeds": seeds, "seed_role": "development", "tolerance": args.tolerance,
                              "preset_epochs": preset_epochs, "rows": rows,
                              "fastest_epochs": fastest(rows, preset_epochs, args.tolerance),
                              "note": "seconds shared the machine with other jobs: not a timing"}
        atomic_write_json(result, out)
        print(f"fastest schedule: {result['accuracy']['fastest_epochs']} epochs "
              f"(preset {preset_epochs}, tolerance {args.tolerance})", flush=True)
        return 0

    if "accuracy" not in result:
        parser.error(f"{out} has no accuracy part yet: run without --time first")
    seed, short = seeds[0], result["accuracy"]["fastest_epochs"]
    preset, splits, original, meta = preset_original(args.preset, args.data_root, seed, args.work_dir)
    train_cfg, preset_epochs = TrainConfig(**meta["train_config"]), meta["train_config"]["epochs"]
    forget_ids = forget_requests(splits, "random", seed, frac=preset.get("forget_frac", 0.1))[0]
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    overrides = method_settings(args.set)
    timing = {"seed": seed, "retrain_seconds": {}, "methods": {}}
    for epochs in (preset_epochs, short):
        _, timing["retrain_seconds"][str(epochs)] = retrain(original, splits, forget_ids, train_cfg, epochs, seed)
    for method in [m for m in args.methods.split(",") if m]:
        settings = {**preset.get("unlearn", {}).get(method, {}), **overrides.get(method, {})}
        unlearner = get_unlearner(method_of(method), train_config=train_cfg, seed=seed, **settings)
        condensed = None
        if unlearner.requires_condensed:
            cond = dict(preset["condense"])
            condensed = shared_condensed(Path(args.work_dir) / f"condensed-{args.preset}-seed{seed}.pt", splits,
                                         original, meta, method=cond.pop("method"), seed=seed, **cond)
        with quiet():
            answer = unlearner.unlearn(original, retain, forget, val=splits.val, condensed=condensed)
        seconds = answer.seconds
        timing["methods"][method] = {"settings": settings, "online_seconds": seconds,
                                     "rte_preset_schedule": timing["retrain_seconds"][str(preset_epochs)] / seconds,
                                     "rte_fastest_schedule": timing["retrain_seconds"][str(short)] / seconds,
                                     "offline_seconds": condensed.timings.get("condense_seconds") if condensed else None}
        print(method, json.dumps(timing["methods"][method]), flush=True)
    result["timing"] = {**provenance(), "preset_epochs": preset_epochs, "fastest_epochs": short,
                        "train_config": asdict(train_cfg), **timing}
    atomic_write_json(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
