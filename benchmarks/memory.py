"""Peak memory of condensing and evaluating all of CIFAR-10 (the reliability target: under 4 GiB resident).

    python benchmarks/memory.py --preset cifar10-cpu --data-root ~/data/cifar10

Loads the preset's data (45,000 training images after the held-out split), condenses it with ``fdm`` using
the cached original of seed 0 (trained here if missing), evaluates the original against a random 10%
request (accuracies and the loss_lr MIA) and records the process's peak resident set size after each step
(``ru_maxrss``) in ``benchmarks/results/memory-<preset>.json``.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, set_threads
from dcu.forget import random_ids
from dcu.io import atomic_write_json
from dcu.presets import get_preset
from dcu.progress import set_quiet
from dcu.workflows.evaluate import model_metrics, provenance
from dcu.workflows.pipeline import prepare_splits, train_original

RESULTS = Path(__file__).resolve().parent / "results"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def main(argv=None) -> int:
    from condense import get_condenser

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--limit-gib", type=float, default=4.0)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)
    steps = []

    def mark(name, started):
        steps.append({"step": name, "seconds": time.perf_counter() - started, "peak_rss_mib": peak_mib()})
        print(f"{name}: peak RSS {steps[-1]['peak_rss_mib']:.0f} MiB", flush=True)

    started = time.perf_counter()
    preset = get_preset(args.preset)
    splits = prepare_splits(preset, args.data_root)
    mark("load data", started)
    started = time.perf_counter()
    cache = Path(args.work_dir) / f"original-{args.preset}-{preset['model']}-seed0.pt"
    original, meta = train_original(splits, preset, 0, cache)
    mark("original (cached or trained)", started)
    started = time.perf_counter()
    cset = get_condenser("fdm", ipc=args.ipc).condense(splits, original, meta.get("hash", ""))
    mark(f"condense fdm ipc {args.ipc}", started)
    started = time.perf_counter()
    forget_ids = random_ids(splits.train.ids, 0.1, 0)
    row = model_metrics(original, splits.train.without(forget_ids), splits.train.subset(forget_ids), splits.test)
    mark("evaluate (accuracies + loss_lr)", started)
    peak = max(s["peak_rss_mib"] for s in steps)
    result = {"benchmark": "memory", "preset": args.preset, **provenance(),
              "train_images": len(splits.train), "condensed_images": len(cset),
              "steps": steps, "peak_rss_mib": peak, "limit_gib": args.limit_gib,
              "within_limit": peak <= 1024 * args.limit_gib,
              "evaluation": {k: row[k] for k in ("retain_acc", "forget_acc", "test_acc")},
              "threads": torch.get_num_threads()}
    out = RESULTS / f"memory-{args.preset}.json"
    atomic_write_json(result, out)
    print(f"peak RSS {peak:.0f} MiB ({'within' if result['within_limit'] else 'OVER'} {args.limit_gib} GiB) -> {out}")
    return 0 if result["within_limit"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
