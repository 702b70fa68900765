"""Unlearning benchmark: original, then every method on random forgetting, evaluated against retrain.

    python benchmarks/unlearning.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --seeds 1

Writes ``benchmarks/results/unlearn-<preset>.json`` after every finished part (a long run that is
stopped keeps what finished) and prints a markdown table per seed and the mean ± std over seeds.
The original model of each seed is cached in ``--work-dir`` and reused by every method. ``--append`` adds
seeds to an existing file (never evaluation seeds to development ones: the summary averages them);
``--update`` reruns only ``--methods`` on its seeds against the retrained models already there (e.g. after
changing one method's settings); when the preset's config or split sizes changed since, the run records the
earlier ones under ``updates`` (the rows not rerun ran under those).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json, atomic_write_text
from dcu.presets import get_preset, method_settings, seed_role
from dcu.progress import set_quiet
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import add_reference_columns, compare, condenser_settings, table

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("retain_acc", "forget_acc", "test_acc", "avg_gap", "mia", "indiscernibility", "online_seconds", "rte")


def _value(row, column):
    if column == "mia":
        return row["mia"]["loss_lr"]["headline"]
    if column == "avg_gap":
        return row.get("gap", {}).get("avg_gap")
    return row.get(column)


def summarise(runs):
    """Mean and std over seeds per method and column."""
    out = {}
    methods = list(dict.fromkeys(m for r in runs for m in r["methods"]))   # rows added to later seeds too
    for method in methods:
        out[method] = {}
        for column in COLUMNS:
            values = [_value(r["methods"][method], column) for r in runs if method in r["methods"]]
            values = [v for v in values if v is not None]
            if values:
                out[method][column] = {"mean": statistics.fmean(values),
                                       "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
    return out


def summary_table(summary, seeds: int | None = None):
    """Markdown table of ``summarise``'s output; a row from fewer than ``seeds`` seeds names its count."""
    head = "| method | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    lines = []
    for method, cols in summary.items():
        cells = []
        for column in COLUMNS:
            if column not in cols:
                cells.append("")
                continue
            scale = 1 if column in ("online_seconds", "rte") else 100
            cells.append(f"{scale * cols[column]['mean']:.2f} ± {scale * cols[column]['std']:.2f}")
        n = max((c["n"] for c in cols.values()), default=0)
        label = f"{method} ({n} of {seeds} seeds)" if seeds is not None and n < seeds else method
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def retrain_row(path: Path, result, *, wait_seconds: float = 0.0, poll_seconds: float = 30.0):
    """The retrain row of ``path``'s run of the same preset, scenario, seed and request as ``result``, marked with
    where it came from; waits up to ``wait_seconds`` for a run that is still writing ``path``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        if path.exists():
            other = json.loads(path.read_text())
            if (other.get("preset"), other.get("scenario")) != (result["preset"], result["scenario"]):
                raise SystemExit(f"--retrain-from: {path} holds {other.get('preset')} / {other.get('scenario')}, "
                                 f"not {result['preset']} / {result['scenario']}")
            for run in other["runs"]:
                if run["seed"] == result["seed"] and "retrain" in run["methods"]:
                    if run["forget_hash"] != result["forget_hash"]:
                        raise SystemExit(f"--retrain-from: seed {result['seed']}'s request in {path} is another one "
                                         f"({run['forget_hash']} vs {result['forget_hash']})")
                    return {**run["methods"]["retrain"], "from": str(path)}
        if time.monotonic() >= deadline:
            raise SystemExit(f"--retrain-from: {path} has no retrain row for seed {result['seed']}")
        time.sleep(poll_seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu-sub")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", default="retrain,finetune,dcu",
                        help="comma-separated, or 'all' (every registered method, retrain first)")
    parser.add_argument("--scenario", default="random", choices=["random", "class", "sequential"],
                        help="random 10%% (the preset's fraction), one whole class, or 5 sequential requests of 2%%")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--work-dir", default="runs/benchmarks", help="where original models are cached")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/unlearn-<preset>.json)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="override a method setting, e.g. dcu.epochs=6; a row METHOD@LABEL runs METHOD with its own "
                             "settings (dcu@deep.tail_stages=3); the condenser's settings too (ncfm.iterations=300)")
    parser.add_argument("--condense", default=None, metavar="METHOD",
                        help="the condenser (default: the preset's), with the preset's IPC unless --set METHOD.ipc=N")
    parser.add_argument("--on-condensed", default="", metavar="ROWS",
                        help="comma-separated rows that train on the condensed set instead of the retain set, "
                             "e.g. finetune@syn (with finetune@syn in --methods)")
    parser.add_argument("--append", action="store_true",
                        help="keep the seeds already in the JSON file (same preset and scenario) and add these")
    parser.add_argument("--update", action="store_true",
                        help="rerun only --methods on seeds already in the JSON file, keeping their other rows "
                             "(retrain included: the gaps and RTE are taken against it)")
    parser.add_argument("--retrain-from", default=None, metavar="FILE",
                        help="take each seed's retrain row from FILE (a run of the same preset, scenario and request, "
                             "e.g. one with another condenser) instead of retraining; a run still writing FILE is "
                             "waited for, up to --wait minutes")
    parser.add_argument("--wait", type=float, default=90.0, help="minutes to wait for --retrain-from's row")
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    set_quiet(args.quiet)
    methods = args.methods.split(",")
    if args.methods == "all":
        from unlearn import list_unlearners

        methods = ["retrain"] + [m for m in list_unlearners() if m not in ("retrain", "dcu")] + ["dcu"]
    overrides = method_settings(args.set)
    try:
        condense = condenser_settings(get_preset(args.preset, args.scenario), overrides, args.condense)
    except ValueError as err:
        parser.error(str(err))
    preset_overrides = {"condense": condense} if condense else None
    if args.retrain_from and ("retrain" in methods or args.update):
        parser.error("--retrain-from takes retrain's rows from another run: leave retrain out of --methods, "
                     "and use it without --update")
    condensed_for = [row for row in args.on_condensed.split(",") if row]
    unknown = [row for row in condensed_for if row not in methods]
    if unknown:
        parser.error(f"--on-condensed names '{unknown[0]}', which is not in --methods")
    suffix = "" if args.scenario == "random" else f"-{args.scenario}"
    out = Path(args.out) if args.out else RESULTS / f"unlearn-{args.preset}{suffix}.json"
    report = {"benchmark": "unlearn", "preset": args.preset, "scenario": args.scenario, **provenance(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "overrides": overrides,
              "condense": (preset_overrides or {}).get("condense"), "on_condensed": condensed_for, "runs": []}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.append and args.update:
        parser.error("--append adds seeds, --update reruns methods on the seeds there: one or the other")
    if (args.append or args.update) and out.exists():
        earlier = json.loads(out.read_text())
        if (earlier.get("preset"), earlier.get("scenario")) != (args.preset, args.scenario):
            parser.error(f"--append: {out} holds {earlier.get('preset')} / {earlier.get('scenario')}, "
                         f"not {args.preset} / {args.scenario}")
        report["runs"] = [r for r in earlier["runs"] if r["methods"] and (args.update or r["seed"] not in seeds)]
        roles = {r.get("seed_role") for r in report["runs"]} | {seed_role(get_preset(args.preset), s) for s in seeds}
        if {"development", "evaluation"} <= roles:
            parser.error(f"--append: {out} would hold development and evaluation seeds, and its summary would "
                         "average them; write the other kind to another --out")
        report["command"] = f"{earlier['command']} ; then {report['command']}"
        report["started"] = f"{earlier['started']} ; then {report['started']}"

    def write(partial=None):
        runs = report["runs"] + ([partial] if partial is not None else [])
        atomic_write_json({**report, "runs": runs, "summary": summarise([r for r in runs if r["methods"]])}, out)

    if args.update:
        by_seed = {r["seed"]: r for r in report["runs"]}
        if not out.exists() or any(seed not in by_seed for seed in seeds):
            parser.error(f"--update: {out} does not hold every seed of {list(seeds)}")
        if "retrain" in methods:
            parser.error("--update keeps the retrained reference; leave retrain out of --methods")
    for seed in seeds:
        if args.update:
            run = by_seed[seed]
            result = compare(args.preset, seed=seed, methods=methods, scenario=args.scenario, data_root=args.data_root,
                             work_dir=args.work_dir, method_overrides=overrides, preset_overrides=preset_overrides,
                             condensed_for=condensed_for)
            if result["forget_hash"] != run["forget_hash"]:
                raise SystemExit(f"--update: seed {seed}'s request is not the one in {out} "
                                 f"({result['forget_hash']} vs {run['forget_hash']})")
            run["methods"].update(result["methods"])
            changed = {k: result[k] for k in ("split_sizes", "config") if result[k] != run.get(k)}
            if changed:  # e.g. a larger held-out split: rows not rerun here ran under "before"
                run.setdefault("updates", []).append({"methods": methods, "before": {k: run[k] for k in changed}})
                run.update(changed)
            add_reference_columns(run)
            write()
            print(f"\n## {args.preset}, {args.scenario}, seed {seed} (updated: {', '.join(methods)})\n\n{table(run)}\n",
                  flush=True)
            continue
        result = compare(args.preset, seed=seed, methods=methods, scenario=args.scenario,
                         data_root=args.data_root,
                         work_dir=args.work_dir, on_update=write, method_overrides=overrides,
                         preset_overrides=preset_overrides, condensed_for=condensed_for)
        if args.retrain_from:
            row = retrain_row(Path(args.retrain_from), result, wait_seconds=60 * args.wait)
            result["methods"] = {"retrain": row, **result["methods"]}
            add_reference_columns(result)
        report["runs"].append(result)
        write()
        print(f"\n## {args.preset}, {args.scenario}, seed {seed}\n\n{table(result)}\n", flush=True)
    summary = summarise(report["runs"])
    text = summary_table(summary, seeds=len(report["runs"]))
    print(f"\n## {args.preset}, {args.scenario}: mean ± std over {len(report['runs'])} seed(s)\n\n{text}\n")
    atomic_write_text(text + "\n", out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
