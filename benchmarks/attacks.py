"""Attack validation on a preset: LiRA / RMIA with a shadow-model store, on the original, the retrained model
and unlearned models, side by side (the forget set against held-out training images).

    python benchmarks/attacks.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --shadows 16 \\
        --methods retrain,finetune,dcu

The store (``--store``, default runs/shadows-<preset>-seed<seed>) is filled first and resumes where it
stopped. To share the shadows among processes or machines, start one run per shard into the same store with
``--shard i/n`` (each trains shadows k with k % n == i, then stops), and one run without it to score; the
original is trained by the first run, so start the shards once its checkpoint is in ``--work-dir``. A store
serves the originals of other seeds too (``--seed 101 --shadow-seed 100``): the shadows are the auditor's,
trained on random halves of the pool whatever the target. Results go to
``benchmarks/results/attacks-<preset>-seed<seed>.json`` after every model.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json, atomic_write_text
from dcu.presets import method_settings, parse_shard, seed_role
from dcu.progress import set_quiet
from dcu.train import accuracy
from dcu.workflows.evaluate import provenance, run_attack
from dcu.workflows.pipeline import forget_requests, preset_original
from dcu.workflows.request import answer_request

RESULTS = Path(__file__).resolve().parent / "results"


def table(result) -> str:
    """One row per model: forget / test accuracy, then AUC and TPR at 1% / 0.1% FPR per attack."""
    attacks = list(next(iter(result["models"].values()))["attacks"]) if result["models"] else []
    head = "| model | forget acc | test acc | " + " | ".join(f"{a} AUC | {a} TPR@1% | {a} TPR@0.1%" for a in attacks)
    lines = [head + " |", "|---|" + "---:|" * (2 + 3 * len(attacks))]
    for name, row in result["models"].items():
        cells = [f"{100 * row['forget_acc']:.2f}", f"{100 * row['test_acc']:.2f}"]
        for a in attacks:
            r = row["attacks"][a]
            cells += [f"{r['auc']:.4f}", f"{100 * r['tpr_at_1fpr']:.2f}", f"{100 * r['tpr_at_01fpr']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from condense import get_condenser
    from inversion_attacks.shadow import ShadowStore
    from unlearn import get_unlearner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu-sub")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--store", default=None)
    parser.add_argument("--shadow-seed", type=int, default=None,
                        help="the store's seed (default --seed); the store of another seed serves this one's original")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="train only this shard's shadows (k %% N == I) and stop; score in a run without it")
    parser.add_argument("--methods", default="retrain,finetune,dcu")
    parser.add_argument("--attacks", default="lira,rmia,loss_lr")
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="a method setting")
    parser.add_argument("--label", default="", help="names a variant (other --set values): its rows are added beside "
                                                   "the rows already in --out for the same preset and seed")
    parser.add_argument("--out", default=None,
                        help="JSON path (default benchmarks/results/attacks-<preset>-seed<seed>.json)")
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)
    try:
        part, parts = parse_shard(args.shard or "0/1")
    except ValueError as e:
        parser.error(str(e))

    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    shadow_seed = args.seed if args.shadow_seed is None else args.shadow_seed
    store_path = Path(args.store or f"runs/shadows-{args.preset}-seed{shadow_seed}")
    store = ShadowStore.create(store_path, splits, meta, count=args.shadows, seed=shadow_seed)
    started = time.perf_counter()
    if args.shard:
        store.fill(splits, shard=(part, parts))
        print(f"shard {part}/{parts}: {len(store.done())} of {args.shadows} shadows in {store_path}", flush=True)
        return 0
    store.fill(splits)
    forget_ids = torch.sort(torch.cat(forget_requests(splits, "random", args.seed, frac=preset.get("forget_frac", 0.1)))).values
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    held_out = int(store.contains(splits.val.ids).sum())   # attacks score against the held-out ids the pool holds
    result = {"benchmark": "attacks", "preset": args.preset, "seed": args.seed,
              "seed_role": seed_role(preset, args.seed), **provenance(),
              "shadows": len(store.done()), "shadow_seed": shadow_seed,
              "shadow_seconds_this_run": time.perf_counter() - started, "non_members": "held-out training images",
              "split_sizes": {"forget": len(forget), "held_out": held_out, "val": len(splits.val)}, "models": {}}
    out = Path(args.out) if args.out else RESULTS / f"attacks-{args.preset}-seed{args.seed}.json"
    if args.label and out.exists():   # a variant joins the models scored before
        earlier = json.loads(out.read_text())
        if (earlier.get("preset"), earlier.get("seed")) == (args.preset, args.seed):
            result["models"] = earlier["models"]
            result["commands"] = earlier.get("commands", [earlier["command"]]) + [result["command"]]
    overrides = method_settings(args.set)

    def score(name, model):
        row = {"forget_acc": accuracy(model, forget), "test_acc": accuracy(model, splits.test), "attacks": {}}
        for attack in args.attacks.split(","):
            summary = run_attack(attack, model, retain, forget, splits.test, seed=args.seed, held_out=splits.val,
                                 shadows=str(store_path)).summary()
            row["attacks"][attack] = {k: summary[k] for k in ("auc", "tpr_at_1fpr", "tpr_at_01fpr", "headline",
                                                               "balanced_accuracy")}
        result["models"][name] = row
        atomic_write_json(result, out)
        atomic_write_text(table(result) + "\n", out.with_suffix(".md"))
        print(name, {a: round(v["auc"], 4) for a, v in row["attacks"].items()}, flush=True)

    score("original", original)
    condensed = None
    for method in args.methods.split(","):
        settings = {**preset.get("unlearn", {}).get(method, {}), **overrides.get(method, {})}
        uses_condensed = get_unlearner(method).requires_condensed
        if uses_condensed and condensed is None:
            cond = dict(preset["condense"])
            condensed = get_condenser(cond.pop("method"), seed=args.seed, **cond).condense(splits, original, meta["hash"])
        answer = answer_request(original, meta, splits, forget.ids, method=method, settings=settings, seed=args.seed,
                                condensed=condensed if uses_condensed else None)
        label = method + (f" ({args.label})" if args.label else "")
        score(label, answer.model)
        result["models"][label]["settings"] = answer.meta["method_config"]
        atomic_write_json(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
