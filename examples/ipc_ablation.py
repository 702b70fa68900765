"""The IPC / bucket-count ablation: dcu with condensed sets of 1..N images per class (buckets per class),
against one retraining. Offline cost, online cost, accuracies, MIA and RTE per IPC.

    python examples/ipc_ablation.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --ipcs 10,25,50,100
"""
from __future__ import annotations

import sys

from common import finish, parser, start

from dcu.plots import comparison_bars
from dcu.workflows.pipeline import compare


def main(argv=None) -> int:
    p = parser(__doc__, "runs/examples/ipc_ablation", methods="dcu")
    p.add_argument("--ipcs", default="2,5,10")
    args = p.parse_args(argv)
    out = start(args)
    runs, retrain = {}, None
    for i, ipc in enumerate(int(x) for x in args.ipcs.split(",")):
        methods = (["retrain"] if i == 0 else []) + args.methods.split(",")
        result = compare(args.preset, seed=args.seed, methods=methods, data_root=args.data_root, work_dir=out, device=args.device,
                         preset_overrides={"condense": {"method": "fdm", "ipc": ipc}})
        retrain = retrain or result["methods"]["retrain"]
        runs[ipc] = {"condense": result["condense"], **{m: result["methods"][m] for m in args.methods.split(",")}}
    head = "| IPC | images | offline s | method | retain | forget | test | MIA | online s | RTE |\n|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    lines = [f"| retrain | | | retrain | {100 * retrain['retain_acc']:.1f} | {100 * retrain['forget_acc']:.1f} | "
             f"{100 * retrain['test_acc']:.1f} | {100 * retrain['mia']['loss_lr']['headline']:.1f} | "
             f"{retrain['online_seconds']:.2f} | 1 |"]
    for ipc, run in runs.items():
        for m in args.methods.split(","):
            r = run[m]
            lines.append(f"| {ipc} | {run['condense']['images']} | {run['condense']['offline_seconds']:.1f} | {m} | "
                         f"{100 * r['retain_acc']:.1f} | {100 * r['forget_acc']:.1f} | {100 * r['test_acc']:.1f} | "
                         f"{100 * r['mia']['loss_lr']['headline']:.1f} | {r['online_seconds']:.2f} | "
                         f"{retrain['online_seconds'] / r['online_seconds']:.1f} |")
    bars = {f"ipc {ipc}": {"forget": run[args.methods.split(',')[0]]["forget_acc"],
                           "test": run[args.methods.split(',')[0]]["test_acc"],
                           "MIA": run[args.methods.split(',')[0]]["mia"]["loss_lr"]["headline"]} for ipc, run in runs.items()}
    bars = {"retrain": {"forget": retrain["forget_acc"], "test": retrain["test_acc"],
                        "MIA": retrain["mia"]["loss_lr"]["headline"]}, **bars}
    comparison_bars(bars, ["forget", "test", "MIA"], out / f"{args.preset}.png", title=f"{args.preset}: IPC ablation")
    finish({"retrain": retrain, "runs": runs}, f"## {args.preset}, IPC ablation, seed {args.seed}\n\n{head}\n" +
           "\n".join(lines), out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
