"""Why dcu's reference targets fall short of retraining per example (development seeds only).

Two measurements, on the logit-scaled confidence φ of each forget image:

1. **From an audit store** (no training): for every ensemble in it, how far its per-example mean φ lies from
   the retrain ensemble's (bias, mean absolute error, correlation) and how its per-example spread compares
   (median std ratio); beside it, the same for the reference file's prediction (shadows' OUT mean + offset)
   and, as the noise floor, one half of the retrain ensemble against the other.
2. **How closely dcu meets its targets** (``--fit``): dcu with ``reference_spread=0`` (every target the OUT
   mean + offset), for each ``--fit`` setting; the error between the φ it reaches and its targets.
3. **An oracle reference** (``--oracle FILE``): a reference file made from the store's *ceiling* half of the
   retrain ensemble (each forget image's mean and spread of φ over those retrained models, offset 0). dcu run
   on it (``--set dcu@oracle.reference=FILE``) shows how far dcu gets when its targets are exactly what
   retraining does: the bound a better reference could reach, and what dcu's fit alone costs. No method could
   have this file (it reads retrained models), and the score's reference half is not in it.

    python benchmarks/reference_diagnostics.py --preset audit --data-root ~/data/cifar10 --seed 0 \\
        --fit "{}" --fit '{"epochs": 40, "lr": 0.1}'
    python benchmarks/reference_diagnostics.py --preset audit --data-root ~/data/cifar10 --seed 0 \\
        --oracle runs/oracle-audit-seed0.pt

Output: ``benchmarks/results/reference-diagnostics-<preset>-seed<seed>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json, safe_load
from dcu.presets import check_development_seed
from dcu.progress import quiet, set_quiet
from dcu.train import TrainConfig, accuracy, logit_confidence, predict
from dcu.workflows.audit import EnsembleStore
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import preset_original
from dcu.workflows.reference import write_reference

RESULTS = Path(__file__).resolve().parent / "results"


def compare(phi: torch.Tensor, reference_mean: torch.Tensor, reference_std: torch.Tensor | None = None) -> dict:
    """``phi``: (models, examples), or (examples,) for a prediction; against the retrain ensemble's means."""
    mean = phi.mean(0) if phi.dim() == 2 else phi
    error = mean - reference_mean
    out = {"bias": float(error.mean()), "mean_abs_error": float(error.abs().mean()),
           "correlation": float(torch.corrcoef(torch.stack([mean, reference_mean]))[0, 1])}
    if phi.dim() == 2 and reference_std is not None:
        out["median_std"] = float(phi.std(0).median())
        out["median_std_ratio"] = float((phi.std(0) / reference_std).median())
    return out


def oracle_reference(store: EnsembleStore, labels: torch.Tensor) -> dict:
    """A dcu reference file for the store's forget ids from the first (ceiling) half of its retrain ensemble:
    the half that the scorecard never uses as the reference."""
    retrained = store.bank("retrain", "retrain")
    half = len(retrained["seeds"]) // 2
    phi = logit_confidence(retrained["forget"][:half], labels)
    ids, order = torch.sort(store.forget_ids)   # dcu looks ids up by binary search
    return {"format": "dcu-reference", "ids": ids, "out_mean": phi.mean(0)[order],
            "out_std": phi.std(0)[order], "offset": 0.0, "shadows": half, "min_out": half, "filled_in": 0,
            "oracle": f"retrained models {retrained['seeds'][:half]} of {store.path}"}


def main(argv=None) -> int:
    from condense import load_condensed
    from unlearn import get_unlearner
    from unlearn.dcu import held_out_line

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="audit")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default=None, help="default runs/ensembles-<preset>-random-seed<seed>")
    parser.add_argument("--reference", default=None, help="default runs/reference-<preset>-seed<seed>.pt")
    parser.add_argument("--oracle", default=None, metavar="FILE",
                        help="write an oracle reference file from the store's ceiling half of retrains, and stop")
    parser.add_argument("--fit", action="append", default=[], metavar="JSON", help="dcu settings to test (repeatable)")
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)

    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    try:
        check_development_seed(preset, args.seed, "this diagnosis")
    except ValueError as exc:
        parser.error(str(exc))
    store = EnsembleStore(args.store or f"runs/ensembles-{args.preset}-random-seed{args.seed}")
    if args.oracle:
        oracle = oracle_reference(store, splits.train.subset(store.forget_ids).labels)
        write_reference(oracle, Path(args.oracle))
        print(f"{args.oracle}: {oracle['oracle']}; median spread {float(oracle['out_std'].median()):.3f}")
        return 0
    reference_path = args.reference or f"runs/reference-{args.preset}-seed{args.seed}.pt"
    reference = safe_load(reference_path, what="dcu reference file")
    forget_ids = store.forget_ids
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    labels = forget.labels
    retrained = logit_confidence(store.bank("retrain", "retrain")["forget"], labels)
    half = len(retrained) // 2
    target_mean, target_std = retrained.mean(0), retrained.std(0)
    pos = torch.searchsorted(reference["ids"], forget_ids)
    predicted = reference["out_mean"][pos] + reference["offset"]
    result = {**provenance(), "preset": args.preset, "seed": args.seed, "store": str(store.path),
              "reference": reference_path, "retrain_models": len(retrained),
              "retrain": {"mean_phi": float(target_mean.mean()), "median_std": float(target_std.median())},
              "noise_floor (retrain half vs half)": compare(retrained[:half], retrained[half:].mean(0)),
              "reference prediction (OUT mean + offset)": compare(predicted, target_mean),
              "original against the reference prediction": compare(
                  logit_confidence(predict(original, forget.images), labels), predicted),
              # what reference_fit would use: the line from the shadows' means to the original on held-out images
              "held_out_line": dict(zip(("slope", "intercept"), held_out_line(
                  reference["out_mean"][torch.searchsorted(reference["ids"], splits.val.ids)],
                  logit_confidence(predict(original, splits.val.images), splits.val.labels)))),
              "ensembles": {}, "fit": []}
    methods = sorted({p.stem[len("unlearn-"):].rsplit("-", 1)[0] for p in store.path.glob("unlearn-*.pt")})
    for method in methods:
        result["ensembles"][method] = compare(logit_confidence(store.bank("unlearn", method)["forget"], labels),
                                              target_mean, target_std)
    cset = load_condensed(store.path / "condensed.pt")
    for text in args.fit:
        settings = json.loads(text)
        unlearner = get_unlearner("dcu", train_config=TrainConfig(**meta["train_config"]), reference=reference_path,
                                  reference_spread=0.0, **settings)
        with quiet():
            answer = unlearner.unlearn(original, retain, forget, condensed=cset, val=splits.val)
        reached = logit_confidence(predict(answer.model, forget.images), labels)
        result["fit"].append({"settings": settings, **compare(reached, predicted),
                              "retain_acc": accuracy(answer.model, retain), "forget_acc": accuracy(answer.model, forget),
                              "seconds": answer.seconds})
        print(json.dumps(result["fit"][-1]), flush=True)
    out = Path(args.out) if args.out else RESULTS / f"reference-diagnostics-{args.preset}-seed{args.seed}.json"
    atomic_write_json(result, out)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "versions", "command")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
