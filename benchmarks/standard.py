"""The field's standard table: every method on CIFAR-10 / ResNet-18, random 10% and one whole class, in the columns
SalUn (Fan et al., ICLR 2024) and l1-sparse (Jia et al., NeurIPS 2023) report, beside their published rows.

    python benchmarks/standard.py --device cuda --data-root ~/data --budget-minutes 15   # a lent GPU
    python benchmarks/standard.py --device cpu --tiny                                    # a smoke run anywhere

Columns: UA (unlearning accuracy, 100 - forget accuracy), MIA-Efficacy (``svc_efficacy``: the fraction of the
forget set an SVC on confidences calls non-member), RA (retain accuracy), TA (test accuracy; the other classes in
the class scenario), the average gap of those four to ``retrain`` (SalUn's "Avg. Gap") and the online time in
minutes. The preset defaults to ``cifar10-resnet18-short`` (30 epochs; ``cifar10-resnet18`` is SalUn's 182).
Random 10% runs first, then the class scenario; no method starts after ``--budget-minutes`` (counted from the
script's start) and those are listed as skipped. ``--tiny`` runs the same plumbing on the embedded digits with
the ``smoke`` preset's MLP (no CIFAR, no ResNet: it checks the script, not the numbers).

Published rows come from ``benchmarks/published/standard.json`` (``--published``): per paper a ``cite``, the
table it was read from, and ``rows[scenario][row name]`` with UA, MIA-Efficacy, RA, TA, avg_gap and minutes; a
paper whose rows are not transcribed yet is printed as such, never filled from memory. Writes
``benchmarks/results/standard-<preset>-seed<seed>.json`` after every method.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from dcu.device import add_threads_argument, resolve_device, set_threads
from dcu.io import atomic_write_json, atomic_write_text
from dcu.presets import get_preset
from dcu.progress import set_quiet
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import compare

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PUBLISHED = HERE / "published" / "standard.json"
# our method names under the papers' row names
PAPER_NAMES = {"retrain": "Retrain", "finetune": "FT", "random_label": "RL", "gradient_ascent": "GA",
               "influence": "IU", "l1_sparse": "l1-sparse", "salun": "SalUn"}
COLUMNS = ("UA", "MIA-Efficacy", "RA", "TA")
# what makes our numbers differ from the papers' whatever the method, said once beside every table
DIFFERENCES = {
    "cifar10-resnet18": "seeds and hardware; like the papers' code, we hold out 10% of each class (45,000 images "
                        "train), and the unlearning settings are their commands' (dcu/tuned/cifar10-resnet18.json)",
    "cifar10-resnet18-short": "the original and retraining train 30 epochs of one-cycle SGD, the papers' 182 of step "
                              "decay; the unlearning settings are the papers' for their 182-epoch original",
}
TINY = {"dataset": "digits", "model": "mlp", "model_args": {}, "val_frac": 0.1,
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "schedule": "onecycle", "weight_decay": 5e-4,
                  "augment": False},
        "condense": {"method": "fdm", "ipc": 5}}


def salun_row(row: dict) -> dict:
    """One method's row in SalUn's columns (percent) and its online minutes."""
    return {"UA": 100 * (1 - row["forget_acc"]), "MIA-Efficacy": 100 * row["mia"]["svc_efficacy"]["headline"],
            "RA": 100 * row["retain_acc"], "TA": 100 * row["test_acc"], "minutes": row["online_seconds"] / 60}


def our_table(result: dict) -> dict:
    """``{method: SalUn row}`` with the average gap to retrain where retrain ran."""
    rows = {name: salun_row(row) for name, row in result["methods"].items()}
    if "retrain" in rows:
        ref = rows["retrain"]
        for row in rows.values():
            row["avg_gap"] = sum(abs(row[c] - ref[c]) for c in COLUMNS) / len(COLUMNS)
    return rows


def load_published(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def markdown(scenario: str, rows: dict, published: dict, differs: str) -> str:
    """Our rows, each followed by the papers' row for the same method where one is transcribed."""
    head = "| method | source | UA | MIA-Efficacy | RA | TA | Avg. Gap | time (min) |\n"
    head += "|---|---|---:|---:|---:|---:|---:|---:|\n"
    lines = []
    for name, row in rows.items():
        gap = f"{row['avg_gap']:.2f}" if "avg_gap" in row else ""
        lines.append(f"| {name} | ours | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS)
                     + f" | {gap} | {row['minutes']:.2f} |")
        for paper in published.values():
            theirs = paper.get("rows", {}).get(scenario, {}).get(PAPER_NAMES.get(name, ""))
            if theirs:
                cells = " | ".join("" if theirs.get(c) is None else f"{theirs[c]:.2f}" for c in COLUMNS)
                gap = "" if theirs.get("avg_gap") is None else f"{theirs['avg_gap']:.2f}"
                minutes = "" if theirs.get("minutes") is None else f"{theirs['minutes']:.2f}"
                lines.append(f"| {PAPER_NAMES[name]} | {paper['cite']} | {cells} | {gap} | {minutes} |")
    notes = [f"Where ours differs: {differs}."]
    for paper in published.values():
        if not paper.get("rows", {}).get(scenario):
            notes.append(f"{paper['cite']}: {paper.get('status', 'rows not transcribed')}.")
    return head + "\n".join(lines) + "\n\n" + "\n".join(notes)


def main(argv=None) -> int:
    from unlearn import list_unlearners

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-resnet18-short", choices=sorted(DIFFERENCES))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="all", help="comma-separated, or 'all' (retrain, then dcu, then the rest)")
    parser.add_argument("--scenarios", default="random,class", help="random (the preset's 10%%) and/or class")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no method after this many minutes from the script's start")
    parser.add_argument("--tiny", action="store_true", help="the plumbing on digits with an MLP: a smoke run")
    parser.add_argument("--published", default=str(PUBLISHED), help="the papers' rows (JSON, see the docstring)")
    parser.add_argument("--work-dir", default="runs/standard", help="where original models are cached")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/standard-<preset>-seed<seed>"
                                                   "[-tiny].json)")
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    names = list_unlearners()
    methods = (["retrain", "dcu"] + [m for m in names if m not in ("retrain", "dcu")] if args.methods == "all"
               else [m.strip() for m in args.methods.split(",") if m.strip()])
    unknown = [m for m in methods if m not in names]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(names)}, or all")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or any(s not in ("random", "class") for s in scenarios):
        parser.error(f"--scenarios takes random and/or class. Got '{args.scenarios}'.")
    set_threads(args.threads)
    set_quiet(args.quiet)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = resolve_device(args.device)
    deadline = started + 60 * args.budget_minutes if args.budget_minutes is not None else None
    overrides = TINY if args.tiny else None
    published = load_published(Path(args.published))
    differs = "a smoke run on digits with an MLP: nothing to compare" if args.tiny else DIFFERENCES[args.preset]
    out = Path(args.out) if args.out else RESULTS / f"standard-{args.preset}-seed{args.seed}{'-tiny' if args.tiny else ''}.json"
    report = {"benchmark": "standard", "preset": args.preset, "tiny": args.tiny, "seed": args.seed,
              "seed_role": "smoke" if args.tiny else None, **provenance(), "device": str(device),
              "budget_minutes": args.budget_minutes, "differs": differs,
              "published": published, "scenarios": {}}
    if not args.tiny:
        from dcu.presets import seed_role

        report["seed_role"] = seed_role(get_preset(args.preset), args.seed)

    for scenario in scenarios:
        if deadline is not None and time.perf_counter() > deadline:   # not even its original is loaded
            report["scenarios"][scenario] = {"methods": {}, "skipped": methods, "markdown": "Not started within the budget."}
            atomic_write_json(report, out)
            continue

        def write(result, scenario=scenario):
            report["scenarios"][scenario] = {**result, "table": our_table(result)}
            atomic_write_json(report, out)

        result = compare(args.preset, seed=args.seed, methods=methods, scenario=scenario, data_root=args.data_root,
                         work_dir=args.work_dir, attacks=("svc_efficacy", "loss_lr"), on_update=write,
                         preset_overrides=overrides, device=device, deadline=deadline)
        write(result)
        text = markdown(scenario, our_table(result), published, differs)
        skipped = result.get("skipped", [])
        if skipped:
            text += f"\nNot started within the budget: {', '.join(skipped)}."
        print(f"\n## {args.preset}, {scenario}, seed {args.seed}\n\n{text}\n", flush=True)
        report["scenarios"][scenario]["markdown"] = text
        atomic_write_json(report, out)
    atomic_write_text("\n\n".join(f"## {s}\n\n{r['markdown']}" for s, r in report["scenarios"].items()) + "\n",
                      out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
