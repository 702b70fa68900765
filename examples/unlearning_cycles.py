"""Unlearning cycles: several forget requests in a row, each applied to the previous answer's model (and, for
dcu, to the previous request's refreshed condensed set), measured after every cycle against retraining on
what remains (the DC_U paper's cycles experiment, in dcu's presets).

    python examples/unlearning_cycles.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --cycles 5
"""
from __future__ import annotations

import sys

import torch
from common import finish, parser, start

from dcu.plots import loss_curve
from dcu.workflows.evaluate import model_metrics
from dcu.workflows.pipeline import forget_requests, preset_original
from dcu.workflows.request import answer_request


def main(argv=None) -> int:
    from condense import get_condenser
    from unlearn import get_unlearner

    p = parser(__doc__, "runs/examples/unlearning_cycles", methods="finetune,dcu")
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--request-frac", type=float, default=0.02)
    args = p.parse_args(argv)
    out = start(args)
    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, out, args.device)
    requests = forget_requests(splits, "sequential", args.seed, requests=args.cycles, request_frac=args.request_frac)
    settings = dict(preset["condense"])
    condensed = get_condenser(settings.pop("method"), seed=args.seed, **settings).to(args.device).condense(
        splits, original, meta["hash"])
    methods = ["retrain"] + args.methods.split(",")
    rows = {m: [] for m in methods}
    state = {m: (original, meta, None, condensed) for m in methods}   # model, its meta, its ledger, its condensed set
    forgotten = torch.empty(0, dtype=torch.long)
    for cycle, request in enumerate(requests, 1):
        forgotten = torch.cat([forgotten, request])
        retain, forget_all = splits.train.without(forgotten), splits.train.subset(forgotten)
        for m in methods:
            model, model_meta, ledger, cset = state[m]
            uses_condensed = get_unlearner(m).requires_condensed
            # retraining answers every cycle from scratch on what remains; the others chain their answers
            if m == "retrain":
                model, model_meta, ledger, request_ids = original, meta, None, forgotten
            else:
                request_ids = request
            answer = answer_request(model, model_meta, splits, request_ids, method=m, seed=args.seed,
                                    settings=preset.get("unlearn", {}).get(m, {}), ledger=ledger,
                                    condensed=cset if uses_condensed else None, require_change=False)
            state[m] = (answer.model, answer.meta, answer.ledger, answer.refreshed if uses_condensed else cset)
            row = model_metrics(answer.model, retain, forget_all, splits.test, seed=args.seed)
            row.update(cycle=cycle, forgotten=len(forgotten), seconds=answer.times["online_seconds"])
            rows[m].append(row)
    head = "| cycle | forgotten | method | retain | forget (all so far) | test | MIA | online s |\n|---:|---:|---|---:|---:|---:|---:|---:|"
    lines = [f"| {r['cycle']} | {r['forgotten']} | {m} | {100 * r['retain_acc']:.1f} | {100 * r['forget_acc']:.1f} | "
             f"{100 * r['test_acc']:.1f} | {100 * r['mia']['loss_lr']['headline']:.1f} | {r['seconds']:.2f} |"
             for i in range(len(requests)) for m, rs in rows.items() for r in [rs[i]]]
    for m, rs in rows.items():
        loss_curve([r["forget_acc"] for r in rs], out / f"{args.preset}-{m}-forget.png", ylabel="forget accuracy",
                   xlabel="cycle", title=f"{args.preset}: {m}, forget accuracy per cycle")
    finish(rows, f"## {args.preset}, {len(requests)} cycles of {args.request_frac:.0%}, seed {args.seed}\n\n{head}\n"
           + "\n".join(lines), out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
