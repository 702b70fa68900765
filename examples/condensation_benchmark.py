"""The condensation benchmark of the DC_U paper, done right: test accuracy of fresh networks trained on each
condensed set alone, measured on the *test* split (DC_U's script scores on the training set), with the
condensation time beside it.

    python examples/condensation_benchmark.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --ipc 10

(`benchmarks/condensation.py` is the full CIFAR-10 benchmark with time budgets and every IPC.)
"""
from __future__ import annotations

import sys

from common import finish, parser, start

from dcu.plots import comparison_bars
from dcu.presets import method_settings
from dcu.workflows.pipeline import preset_original


def main(argv=None) -> int:
    from condense import get_condenser
    from condense.protocol import evaluate_condensed

    p = parser(__doc__, "runs/examples/condensation_benchmark", methods="random,herding,kcenter,dm,fdm,mi")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--eval-runs", type=int, default=3)
    p.add_argument("--protocol", default="dc-cpu")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE")
    args = p.parse_args(argv)
    out = start(args)
    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, out, args.device)
    overrides = method_settings(args.set)
    rows = {}
    for method in args.methods.split(","):
        cset = get_condenser(method, ipc=args.ipc, seed=args.seed, **overrides.get(method, {})).to(args.device).condense(
            splits, original, meta["hash"])
        evaluation = evaluate_condensed(cset, splits, runs=args.eval_runs, protocol=args.protocol, seed=args.seed,
                                        device=args.device)
        rows[method] = {"condense_seconds": cset.timings["condense_seconds"], "images": len(cset), **evaluation}
    head = "| method | images | condense s | test acc % (mean ± std) | protocol |\n|---|---:|---:|---:|---|"
    lines = [f"| {m} | {r['images']} | {r['condense_seconds']:.1f} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
             f"{r['protocol']} ({r['runs']} runs) |" for m, r in rows.items()]
    comparison_bars({m: {"test acc": r["mean"]} for m, r in rows.items()}, ["test acc"], out / f"{args.preset}.png",
                    title=f"{args.preset}: fresh networks on {args.ipc} images per class", reference="random")
    finish(rows, f"## {args.preset}, {args.ipc} images per class, seed {args.seed}\n\n{head}\n" + "\n".join(lines),
           out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
