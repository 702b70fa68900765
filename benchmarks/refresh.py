"""What a forget request costs a condensed set: for each request (a random share of the training set, or one
class) the seconds to re-make the buckets it touches, how many it touched, and the test accuracy of fresh
networks trained on the refreshed set, beside the full condensation's seconds and accuracy.

    python benchmarks/refresh.py --preset cifar10-cpu --data-root DIR \\
        --condensed runs/condensed/cifar10-cpu-ncfm-bucketed-ipc10.pt --requests random:0.1,random:0.02,class:0 \\
        --set refresh_iterations=100

``--set KEY=VALUE`` changes the condenser's settings for the refreshes only (e.g. a shorter refresh). Each
request is answered from the set as saved (requests are not chained). Writes
``benchmarks/results/refresh-<preset>-<method>.json`` after every request.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, resolve_device, set_threads
from dcu.forget import class_ids, random_ids
from dcu.io import atomic_write_json
from dcu.presets import get_preset, setting_value
from dcu.progress import set_quiet
from dcu.seeds import derive
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import prepare_splits

RESULTS = Path(__file__).resolve().parent / "results"


def request_ids(spec: str, splits, seed: int) -> torch.Tensor:
    kind, _, value = spec.partition(":")
    if kind == "random":
        return random_ids(splits.train.ids, float(value), derive(seed, "refresh request", spec))
    if kind == "class":
        return splits.train.ids[class_ids(splits.train.labels, value, list(splits.classes))]
    raise ValueError(f"Unknown request '{spec}'. Valid forms are random:<fraction> and class:<index or name>.")


def main(argv=None) -> int:
    from condense import load_condensed
    from condense.protocol import evaluate_condensed

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--condensed", required=True, help="a condensed set saved by condensation.py --save-dir")
    parser.add_argument("--requests", default="random:0.1,random:0.02,class:0")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--eval-runs", type=int, default=2)
    parser.add_argument("--protocol", default="dc-300ep")
    parser.add_argument("--skip-full", action="store_true",
                        help="do not score the saved set itself (condensation.py scored it with the same protocol and seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)

    device = resolve_device(args.device)
    splits = prepare_splits(get_preset(args.preset), args.data_root)
    cset = load_condensed(args.condensed)
    cset.check_fits(splits, args.condensed)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in cset.config:
            raise SystemExit(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(cset.config))}.")
        cset.config[key] = setting_value(value)
    out = Path(args.out) if args.out else RESULTS / f"refresh-{args.preset}-{cset.method}.json"
    full = None if args.skip_full else evaluate_condensed(cset, splits, runs=args.eval_runs, protocol=args.protocol,
                                                          seed=args.seed, device=device)
    result = {"benchmark": "refresh", "preset": args.preset, **provenance(), "device": str(device),
              "seed": args.seed, "condensed": {"path": str(args.condensed), "method": cset.method,
                                               "settings": cset.config, "images": len(cset),
                                               "buckets": int(len(torch.unique(cset.image_bucket))),
                                               "condense_seconds": cset.timings.get("condense_seconds"),
                                               "evaluation": full},
              "requests": []}
    for spec in args.requests.split(","):
        forget_ids = request_ids(spec, splits, args.seed)
        retain, forget = splits.train.without(forget_ids), splits.train.subset(forget_ids)
        start = time.perf_counter()
        refreshed = cset.refresh(forget_ids, retain, forget, device=device)
        seconds = time.perf_counter() - start
        evaluation = evaluate_condensed(refreshed, splits, runs=args.eval_runs, protocol=args.protocol,
                                        seed=args.seed, device=device)
        step = refreshed.history[-1]
        row = {"request": spec, "forget": int(len(forget_ids)), "seconds": seconds,
               "share_of_condense_time": seconds / cset.timings["condense_seconds"]
               if cset.timings.get("condense_seconds") else None,
               "buckets_remade": step["buckets_remade"], "buckets_dropped": step["buckets_dropped"],
               "images_after": step["images_after"], "evaluation": evaluation}
        result["requests"].append(row)
        atomic_write_json(result, out)
        print(f"{spec}: {row['forget']} ids, {row['buckets_remade']} buckets re-made in {seconds:.1f} s "
              f"({100 * (row['share_of_condense_time'] or 0):.1f}% of condensation), test acc "
              f"{100 * evaluation['mean']:.2f}" + (f" (full set {100 * full['mean']:.2f})" if full else ""), flush=True)
    atomic_write_json(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
