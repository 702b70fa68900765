"""What dcu's ``class_reset`` costs in accuracy against its default (the switched-off class row), from one
original, one condensed set and one whole-class request: retain, forget, held-out and other-class test
accuracy of each, beside the original's. The per-example verdict on the same choice is the audit's
(``benchmarks/audit.py --scenario class``); this is the cheap check on a preset whose ensembles are too dear.

    python benchmarks/class_reset.py --preset cifar10-cpu-sub --data-root DIR --seed 0 --forget-class 0

Writes ``benchmarks/results/class-reset-<preset>-seed<S>.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json
from dcu.presets import seed_role
from dcu.progress import set_quiet
from dcu.train import TrainConfig, accuracy
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import preset_original

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    import condense
    import unlearn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu-sub")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0, help="the original's training seed")
    parser.add_argument("--forget-class", type=int, default=0)
    parser.add_argument("--work-dir", default="runs/benchmarks", help="where original models are cached")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)
    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    if not 0 <= args.forget_class < splits.num_classes:
        parser.error(f"--forget-class must be in 0..{splits.num_classes - 1}. Got {args.forget_class}.")
    ids = splits.train.ids[splits.train.labels == args.forget_class]
    forget, retain = splits.train.subset(ids), splits.train.without(ids)
    others = splits.test.subset(splits.test.ids[splits.test.labels != args.forget_class])
    cond = dict(preset["condense"])
    cset = condense.get_condenser(cond.pop("method"), seed=args.seed, **cond).condense(splits, original, meta["hash"])

    def scores(model):
        return {"retain_acc": accuracy(model, retain), "forget_acc": accuracy(model, forget),
                "val_acc": accuracy(model, splits.val), "test_other_classes_acc": accuracy(model, others)}

    rows = {"original": scores(original)}
    train_cfg = TrainConfig(**meta["train_config"])
    for name, settings in (("dcu (switched-off row)", {}), ("dcu class_reset", {"class_reset": True})):
        result = unlearn.get_unlearner("dcu", train_config=train_cfg, seed=args.seed, **settings).unlearn(
            original, retain, forget, condensed=cset, val=splits.val)
        rows[name] = {**scores(result.model), "steps": result.stats["steps"], "seconds": result.seconds,
                      "settings": settings}
    out = Path(args.out) if args.out else RESULTS / f"class-reset-{args.preset}-seed{args.seed}.json"
    atomic_write_json({"benchmark": "class_reset", **provenance(), "preset": args.preset, "seed": args.seed,
                       "seed_role": seed_role(preset, args.seed), "forget_class": args.forget_class,
                       "condensed_images": len(cset), "rows": rows}, out)
    for name, row in rows.items():
        print(f"{name:24s} " + "  ".join(f"{k} {100 * v:.1f}" for k, v in row.items() if k.endswith("_acc")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
