"""Unlearning as a privacy treatment: how exposed the forget set is to membership inference before and after
each method (the DC_U paper's privacy experiment, in dcu's presets), under every population attack.

    python examples/privacy_treatment.py --preset cifar10-cpu-sub --data-root ~/data/cifar10
"""
from __future__ import annotations

import sys

from common import finish, parser, start

from dcu.plots import comparison_bars
from dcu.workflows.pipeline import compare

ATTACKS = ("loss_lr", "svc_efficacy", "entropy")


def main(argv=None) -> int:
    args = parser(__doc__, "runs/examples/privacy_treatment").parse_args(argv)
    out = start(args)
    result = compare(args.preset, seed=args.seed, methods=args.methods.split(","), data_root=args.data_root,
                     work_dir=out, device=args.device, attacks=ATTACKS)
    rows = {"before (original)": result["original"], **{f"after {m}": r for m, r in result["methods"].items()}}
    head = ("| model | loss_lr acc | loss_lr AUC | MIA-Efficacy (svc) | entropy: forget predicted member |\n"
            "|---|---:|---:|---:|---:|")
    lines = [f"| {name} | {100 * r['mia']['loss_lr']['headline']:.1f} | {r['mia']['loss_lr']['auc']:.3f} | "
             f"{100 * r['mia']['svc_efficacy']['headline']:.1f} | {100 * r['mia']['entropy']['headline']:.1f} |"
             for name, r in rows.items()]
    bars = {name: {"loss_lr": r["mia"]["loss_lr"]["headline"], "MIA-Efficacy": r["mia"]["svc_efficacy"]["headline"],
                   "entropy": r["mia"]["entropy"]["headline"]} for name, r in rows.items()}
    comparison_bars(bars, ["loss_lr", "MIA-Efficacy", "entropy"], out / f"{args.preset}.png",
                    title=f"{args.preset}: membership inference on the forget set", reference="after retrain")
    finish(result, f"## {args.preset}, random forgetting, seed {args.seed}: the forget set under attack\n\n{head}\n"
           + "\n".join(lines), out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
