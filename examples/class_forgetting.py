"""Class-wise forgetting: one whole class removed (the DC_U paper's class-wise table, in dcu's presets).
Test accuracy is on the other classes; the forgotten class's test accuracy is reported beside it.

    python examples/class_forgetting.py --preset cifar10-cpu-sub --data-root ~/data/cifar10
"""
from __future__ import annotations

import sys

from common import accuracy_bars, finish, parser, start

from dcu.workflows.pipeline import compare, table


def main(argv=None) -> int:
    args = parser(__doc__, "runs/examples/class_forgetting").parse_args(argv)
    out = start(args)
    result = compare(args.preset, seed=args.seed, methods=args.methods.split(","), scenario="class",
                     data_root=args.data_root, work_dir=out, device=args.device)
    lines = [f"| {m} | {100 * r['test_forget_class_acc']:.1f} |" for m, r in result["methods"].items()]
    text = (f"## {args.preset}, class 0 forgotten, seed {args.seed}\n\n{table(result)}\n\n"
            "| method | test acc on the forgotten class |\n|---|---:|\n" + "\n".join(lines))
    accuracy_bars({"original": result["original"], **result["methods"]}, out / f"{args.preset}.png",
                  f"{args.preset}: class 0 forgotten")
    finish(result, text, out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
