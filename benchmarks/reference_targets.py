"""Offline per-example reference behaviour for dcu's targets (dcu.workflows.reference): a shadow store of the
preset's original, then each training id's OUT confidence mean and spread, written for `dcu --set reference=`.

    python benchmarks/reference_targets.py --preset audit --data-root DIR --seed 0 --shadows 16 --threads 1

Writes runs/reference-<preset>-seed<seed>.pt and benchmarks/results/reference-<preset>-seed<seed>.json (the
offline seconds, the offset, the shadows). The store (runs/shadows-<preset>-seed<seed>, or --store) resumes
after a stop. A store's masks are seeded per index, so a larger store (--store, --shadows 32) may start from a
smaller one's shadow files, copied or linked in. ``--shard i/n`` lets n processes (``--threads 1`` each) fill one
store; the last to finish writes the reference.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json
from dcu.presets import parse_shard
from dcu.progress import set_quiet
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import preset_original
from dcu.workflows.reference import reference_behaviour, write_reference

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    from inversion_attacks.shadow import ShadowStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="audit")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--keep", type=float, default=0.5,
                        help="share of the pool each shadow trains on (a new store; 0.5 as LiRA's)")
    parser.add_argument("--store", default=None, help="shadow store folder (default runs/shadows-<preset>-seed<seed>)")
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--out", default=None, help="reference file (default runs/reference-<preset>-seed<seed>.pt)")
    parser.add_argument("--results", default=None, help="JSON (default benchmarks/results/reference-<preset>-seed<seed>.json)")
    parser.add_argument("--shard", default="0/1", help="train only shadows k with k %% n == i")
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    try:
        shard = parse_shard(args.shard)
    except ValueError as err:
        parser.error(str(err))
    set_quiet(args.quiet)
    set_threads(args.threads)
    _, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    store = ShadowStore.create(Path(args.store or f"runs/shadows-{args.preset}-seed{args.seed}"), splits, meta,
                               count=args.shadows, seed=args.seed, keep=args.keep)
    start = time.perf_counter()
    trained = store.fill(splits, shard=shard)
    shadow_seconds = time.perf_counter() - start
    if len(store.done()) < store.manifest["count"]:
        print(f"shard {args.shard} done; {store.path} waits for the other shards", flush=True)
        return 0
    start = time.perf_counter()
    reference = reference_behaviour(store, splits, original)
    out = Path(args.out or f"runs/reference-{args.preset}-seed{args.seed}.pt")
    write_reference(reference, out)
    files = sorted(store.path.glob("shadow-*.pt"), key=lambda f: f.stat().st_mtime)
    summary = {**provenance(), "preset": args.preset, "seed": args.seed, "shadows": reference["shadows"],
               "keep": store.manifest.get("keep", 0.5),
               "shadows_trained_now": len(trained), "shadow_seconds_this_run": shadow_seconds,
               # the store's whole training time, from its files' times (a run that was stopped and resumed
               # included); it counts any other load the machine had then. A store whose every file was
               # linked in from another has none of its own (None)
               "shadow_seconds_from_file_times": (max(0.0, files[-1].stat().st_mtime - (store.path / "manifest.json").stat().st_mtime)
                                                  or None) if files else None,
               "reference_seconds": time.perf_counter() - start, "offset": reference["offset"],
               "min_out": reference["min_out"], "ids_with_fewer_than_2_out": reference["filled_in"], "out_std_median": float(reference["out_std"].median()),
               "store": str(store.path), "reference_file": str(out)}
    results = Path(args.results or RESULTS / f"reference-{args.preset}-seed{args.seed}.json")
    atomic_write_json(summary, results)
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
