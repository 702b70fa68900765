"""Where a forgotten class can still be read: a linear probe on the output of every block, for the original,
retrained models and dcu's class reset with each ``class_erase`` strength. The audit's probe reads the last
block's features only (where ``class_erase`` acts); this shows what the blocks below still hold.

    python benchmarks/class_probe_layers.py --preset audit --data-root DIR --seed 0 --erase 0,0.25,1 \\
        --condensed runs/ensembles-audit-class-seed0/condensed.pt

Each probe is the audit's (``dcu.workflows.audit.probes``): multinomial logistic regression fitted on the
held-out images' flattened activations, read as the share of the forget set it puts in the forgotten class.
Each row also records the seconds that made its model (retraining, or the dcu request); time only on an
otherwise idle machine.
Writes ``benchmarks/results/class-probe-layers-<preset>-seed<S>.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json
from dcu.presets import seed_role
from dcu.progress import progress, set_quiet
from dcu.train import TrainConfig, accuracy, features, predict
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import forget_requests, preset_original

RESULTS = Path(__file__).resolve().parent / "results"


def layer_probes(model, splits, forget) -> dict:
    """The probe's reading of the forget set at each block's output ("block k") and at the features the
    classifier reads ("features": after any eraser)."""
    from dcu.models import split_model
    from dcu.workflows.audit import linear_probe

    def read(fit, query) -> float:
        return linear_probe(fit, splits.val.labels, query, forget.labels)

    out = {}
    blocks = len(model.stages()) - 1
    for k in range(1, blocks + 1):
        trunk, _ = split_model(model, len(model.stages()) - k)
        out[f"block {k}"] = read(predict(trunk, splits.val.images).flatten(1), predict(trunk, forget.images).flatten(1))
    out["features"] = read(features(model, splits.val.images), features(model, forget.images))
    return out


def main(argv=None) -> int:
    import condense
    import unlearn
    from dcu.models import create_model
    from dcu.train import train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="audit")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0, help="the original's training seed")
    parser.add_argument("--forget-class", type=int, default=0)
    parser.add_argument("--erase", default="0,0.25,1", help="class_erase strengths of the class-reset rows")
    parser.add_argument("--retrains", type=int, default=2, help="retrained models (seeds 0..N-1)")
    parser.add_argument("--condensed", default=None, help="a condensed set of this original to reuse")
    parser.add_argument("--work-dir", default="runs/benchmarks", help="where original models are cached")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)
    try:
        strengths = [float(s) for s in args.erase.split(",") if s]
    except ValueError:
        parser.error(f"--erase must be numbers separated by commas. Got {args.erase!r}.")
    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    if not 0 <= args.forget_class < splits.num_classes:
        parser.error(f"--forget-class must be in 0..{splits.num_classes - 1}. Got {args.forget_class}.")
    ids = forget_requests(splits, "class", args.seed, forget_class=args.forget_class)[0]
    forget, retain = splits.train.subset(ids), splits.train.without(ids)
    if args.condensed:
        cset = condense.load_condensed(args.condensed)
        if cset.source.get("model_hash") != meta["hash"]:
            parser.error(f"--condensed {args.condensed} was made from another model than this preset's seed "
                         f"{args.seed} original.")
    else:
        cond = dict(preset["condense"])
        cset = condense.get_condenser(cond.pop("method"), seed=args.seed, **cond).condense(splits, original, meta["hash"])
    train_cfg = TrainConfig(**meta["train_config"])
    models, seconds = {"original": original}, {"original": 0.0}
    for k in range(args.retrains):
        torch.manual_seed(k)
        model = create_model(meta["arch"], **meta["arch_args"])
        start = time.perf_counter()
        train(model, retain, TrainConfig(**{**meta["train_config"], "seed": k}), desc="retrain")
        models[f"retrain {k}"], seconds[f"retrain {k}"] = model, time.perf_counter() - start
    for strength in strengths:
        name = f"dcu class_reset, class_erase {strength:g}"
        result = unlearn.get_unlearner("dcu", train_config=train_cfg, seed=0, class_reset=True,
                                       class_erase=strength).unlearn(original, retain, forget, condensed=cset,
                                                                     val=splits.val)
        models[name], seconds[name] = result.model, result.seconds
    rows = {}
    for name, model in progress(list(models.items()), desc="probes", unit="model"):
        rows[name] = {**layer_probes(model.eval(), splits, forget),
                      "retain_acc": accuracy(model, retain), "val_acc": accuracy(model, splits.val),
                      "seconds": seconds[name]}
    result = {**provenance(), "preset": args.preset, "seed": args.seed, "seed_role": seed_role(preset, args.seed),
              "forget_class": args.forget_class, "condensed": args.condensed, "rows": rows}
    out = Path(args.out) if args.out else RESULTS / f"class-probe-layers-{args.preset}-seed{args.seed}.json"
    atomic_write_json(result, out)
    for name, row in rows.items():
        print(f"{name:40s} " + "  ".join(f"{k} {v:.1f}" if k == "seconds" else f"{k} {100 * v:5.1f}"
                                         for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
