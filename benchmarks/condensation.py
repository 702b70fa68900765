"""Condensation benchmark: every method at each IPC on CIFAR-10, condensation time and the test accuracy of
fresh ConvNets trained on the condensed set alone (a named protocol, mean ± std over runs).

    python benchmarks/condensation.py --preset cifar10-cpu --data-root ~/data/cifar10 --ipc 10 --budget-minutes 20

Methods that iterate (dc, dsa, dm) stop at ``--budget-minutes`` of condensation; the iterations reached are
recorded. ``--evaluate FILE,...`` scores saved sets (``--save-dir``) under ``--protocol`` instead of condensing
again; a row is kept per method, IPC, protocol, DSA at evaluation (``--dsa``) and the split scored
(``--score-on val`` scores on the preset's held-out training images, to choose settings without the test
set). The cap is checked between iterations, so an iteration begun inside it runs to its end (at IPC 50 one
``dc``/``dsa`` iteration is 50 outer steps, about 17 CPU-minutes here, and the second overruns the cap).
Methods that need a trained model (herding, kcenter, fdm, mi) use the preset's original (seed 0), cached in
``--work-dir``. Writes ``benchmarks/results/condense-<preset>.json`` after every finished part.
Anchor numbers (GPU, full protocol, ConvNet-128, IPC 10): random 26.0, DC 44.9, DSA 52.1, DM 48.9; DM 63.0 at
IPC 50 (Zhao & Bilen, WACV 2023, Table 1).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, resolve_device, set_threads
from dcu.io import atomic_write_json, atomic_write_text
from dcu.presets import get_preset, method_settings
from dcu.progress import set_quiet
from dcu.workflows.evaluate import machine, provenance
from dcu.workflows.pipeline import prepare_splits, train_original

RESULTS = Path(__file__).resolve().parent / "results"
ITERATIVE = {"dc", "dsa", "dm", "idm", "ncfm"}
# GPU numbers, ConvNet-128 (coresets: Zhao, Mopuri & Bilen, ICLR 2021, Table 1; DC, DSA, DM: Zhao & Bilen,
# WACV 2023, Table 1)
ANCHORS = {1: {"random": 14.4, "herding": 21.5, "kcenter": 21.5, "dc": 28.3, "dsa": 28.8, "dm": 26.0},
           10: {"random": 26.0, "herding": 31.6, "kcenter": 14.7, "dc": 44.9, "dsa": 52.1, "dm": 48.9},
           50: {"random": 43.4, "herding": 40.4, "kcenter": 27.0, "dc": 53.9, "dsa": 60.6, "dm": 63.0}}


def row_key(row) -> tuple:
    """What makes two rows the same measurement: a later one replaces an earlier one."""
    ev = row["evaluation"]
    return row["method"], row["ipc"], ev["protocol"], ev.get("dsa_augment"), ev.get("scored_on", "test")


def table(rows) -> str:
    lines = ["| method | IPC | images | condense s | iterations | accuracy % (protocol, runs; test unless said) "
             "| anchor (GPU) |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        ev = r["evaluation"]
        anchor = ANCHORS.get(r["ipc"], {}).get(r["method"].split(" ")[0])
        lines.append(f"| {r['method']} | {r['ipc']} | {r['images']} | {r['condense_seconds']:.0f} | "
                     f"{r.get('iterations', '')} | {100 * ev['mean']:.2f} ± {100 * ev['std']:.2f} "
                     f"({ev['protocol']}{', DSA' if ev.get('dsa_augment') else ''}, {ev['runs']}"
                     f"{'; on val' if ev.get('scored_on') == 'val' else ''}) | "
                     f"{anchor if anchor is not None else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from condense import get_condenser, load_condensed
    from condense.protocol import evaluate_condensed

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--ipc", default="1,10,50")
    parser.add_argument("--methods", default="random,herding,kcenter,dc,dsa,dm,fdm,mi")
    parser.add_argument("--budget-minutes", type=float, default=20.0, help="condensation time cap per run")
    parser.add_argument("--eval-runs", type=int, default=3, help="0: condense and save (--save-dir) only; "
                                                                    "score the set later with --evaluate")
    parser.add_argument("--protocol", default="dc-300ep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where dc, dsa, dm and the evaluation run (cpu, cuda, auto)")
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE")
    parser.add_argument("--label", default="", help="names a variant (e.g. other --set values) so its rows are kept "
                                                   "beside the default ones")
    parser.add_argument("--save-dir", default=None, help="also save each condensed set here (to evaluate it again "
                                                         "under another protocol)")
    parser.add_argument("--dsa", choices=("auto", "on", "off"), default="auto",
                        help="DSA at evaluation: auto follows the protocol and the set's config")
    parser.add_argument("--evaluate", default=None, metavar="FILE[,FILE]",
                        help="score these saved sets under --protocol instead of condensing (rows keep their method)")
    parser.add_argument("--score-on", choices=("test", "val"), default="test",
                        help="val: the accuracy on the preset's held-out training images (to choose settings by)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    if args.eval_runs < 0 or (args.eval_runs == 0 and (args.evaluate or not args.save_dir)):
        parser.error("--eval-runs must be at least 1, or 0 with --save-dir (condense and save only)")
    set_threads(args.threads)
    set_quiet(args.quiet)

    overrides = method_settings(args.set)

    device = resolve_device(args.device)
    preset = get_preset(args.preset)
    splits = prepare_splits(preset, args.data_root)
    if args.score_on == "val" and splits.val is None:
        parser.error(f"--score-on val: preset '{args.preset}' holds no images out of training")
    methods = args.methods.split(",")
    model, meta = None, {}
    if not args.evaluate and set(methods) & {"herding", "kcenter", "fdm", "mi"}:
        cache = Path(args.work_dir) / f"original-{args.preset}-{preset['model']}-seed{args.seed}.pt"
        model, meta = train_original(splits, preset, args.seed, cache)
    out = Path(args.out) if args.out else RESULTS / f"condense-{args.preset}.json"
    result = {"benchmark": "condense", "preset": args.preset, **provenance(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed,
              "budget_minutes": args.budget_minutes, "split_sizes": {"train": len(splits.train), "test": len(splits.test)},
              "runs": []}
    if out.exists():   # keep what an earlier, stopped run finished
        earlier = json.loads(out.read_text())
        if earlier.get("preset") == args.preset:
            result["runs"] = earlier.get("runs", [])

    def record(cset, method: str, ipc: int, source=None) -> None:
        evaluation = evaluate_condensed(cset, splits, runs=args.eval_runs, protocol=args.protocol, seed=args.seed,
                                        dsa={"auto": None, "on": True, "off": False}[args.dsa], device=device,
                                        test=splits.val if args.score_on == "val" else None)
        evaluation["scored_on"] = args.score_on
        row = {"method": method + (f" ({args.label})" if args.label else ""), "ipc": ipc, "images": len(cset),
               "settings": cset.config, "device": str(device), "condense_seconds": cset.timings["condense_seconds"],
               "evaluation": evaluation, "machine": machine()}   # a file's rows may come from several machines
        if source is not None:
            row["condensed"] = str(source)
        if method in ITERATIVE:
            row["iterations"] = len(cset.state.get("loss_history", []))
            row["seconds_per_iteration"] = row["condense_seconds"] / max(row["iterations"], 1)
        result["runs"] = [r for r in result["runs"] if row_key(r) != row_key(row)] + [row]
        atomic_write_json(result, out)
        atomic_write_text(table(result["runs"]) + "\n", out.with_suffix(".md"))
        print(table([row]).splitlines()[-1], flush=True)

    if args.evaluate:
        for path in args.evaluate.split(","):
            cset = load_condensed(path)
            record(cset, cset.method, int(cset.config["ipc"]), source=path)
        print(table(result["runs"]))
        return 0
    for ipc in [int(x) for x in args.ipc.split(",")]:
        for method in methods:
            settings = dict(overrides.get(method, {}))
            if method in ITERATIVE:
                settings.setdefault("max_seconds", 60 * args.budget_minutes)
            condenser = get_condenser(method, ipc=ipc, seed=args.seed, **settings).to(device)
            cset = condenser.condense(splits, model, meta.get("hash", ""))
            if args.save_dir:
                Path(args.save_dir).mkdir(parents=True, exist_ok=True)
                label = f"-{args.label}" if args.label else ""
                cset.save(Path(args.save_dir) / "".join(ch if ch.isalnum() or ch in "-_." else "_"
                                                        for ch in f"{args.preset}-{method}{label}-ipc{ipc}.pt"))
            if args.eval_runs > 0:
                record(cset, method, ipc)
    print(table(result["runs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
