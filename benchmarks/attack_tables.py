"""Markdown table of the shadow-model attacks over seeds: every model's mean ± standard deviation over the seeds
of one role, and its LiRA AUC against the retrained model of the same seed (nothing is typed by hand).

    python benchmarks/attack_tables.py benchmarks/results/attacks-cifar10-cpu-sub-seed*.json [--role evaluation]

``--model retrain --model dcu`` keeps those rows only, in that order (names may hold commas).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from dcu.presets import get_preset, seed_role

COLUMNS = [  # (header, how to read a row, scale)
    ("forget acc", lambda r: r["forget_acc"], 100),
    ("test acc", lambda r: r["test_acc"], 100),
    ("LiRA AUC", lambda r: r["attacks"]["lira"]["auc"], 1),
    ("LiRA TPR@1%", lambda r: r["attacks"]["lira"]["tpr_at_1fpr"], 100),
    ("RMIA AUC", lambda r: r["attacks"]["rmia"]["auc"], 1),
    ("RMIA TPR@1%", lambda r: r["attacks"]["rmia"]["tpr_at_1fpr"], 100),
    ("loss_lr AUC", lambda r: r["attacks"]["loss_lr"]["auc"], 1),
]


def cell(values: list, scale: float) -> str:
    digits = 1 if scale == 100 else 3
    mean = f"{scale * statistics.mean(values):.{digits}f}"
    return mean if len(values) < 2 else f"{mean} ± {scale * statistics.stdev(values):.{digits}f}"


def table(results: list, models: list | None = None) -> str:
    """One row per model (``models``: those only, in that order), over the seeds it ran on; "LiRA − retrain":
    the mean of the per-seed differences."""
    rows: dict = {name: None for name in models or []}
    for result in sorted(results, key=lambda r: r["seed"]):
        retrain = result["models"].get("retrain")
        for name, row in result["models"].items():
            if models and name not in models:
                continue
            acc = rows[name] = rows.get(name) or {"seeds": [], "gap": [], **{h: [] for h, _, _ in COLUMNS}}
            acc["seeds"].append(result["seed"])
            for header, read, _ in COLUMNS:
                acc[header].append(read(row))
            if retrain is not None:
                acc["gap"].append(row["attacks"]["lira"]["auc"] - retrain["attacks"]["lira"]["auc"])
    all_seeds = sorted(r["seed"] for r in results)
    head = ["model", "seeds", *[h for h, _, _ in COLUMNS], "LiRA − retrain"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for name, acc in rows.items():
        if acc is None:
            continue
        seeds = "all" if acc["seeds"] == all_seeds else ", ".join(map(str, acc["seeds"]))
        cells = [cell(acc[h], scale) for h, _, scale in COLUMNS]
        gap = f"{statistics.mean(acc['gap']):+.3f}" if len(acc["gap"]) == len(acc["seeds"]) else "—"
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="attack JSONs of one preset (benchmarks/attacks.py), one per seed")
    parser.add_argument("--role", default="evaluation", choices=["evaluation", "development", "unassigned"])
    parser.add_argument("--model", action="append", default=None, help="a row to keep (repeatable, kept in that order; "
                                                                        "default: all)")
    args = parser.parse_args(argv)
    results = [json.loads(Path(p).read_text()) for p in args.results]
    presets = {r["preset"] for r in results}
    if len(presets) != 1:
        parser.error(f"the files hold several presets ({', '.join(sorted(presets))}); give one preset's files")
    preset = get_preset(presets.pop())
    chosen = [r for r in results if r.get("seed_role", seed_role(preset, r["seed"])) == args.role]
    if not chosen:
        parser.error(f"none of the files is of a {args.role} seed")
    seeds = [r["seed"] for r in chosen]
    if len(set(seeds)) != len(seeds):
        parser.error(f"two files hold the same seed ({', '.join(map(str, sorted(seeds)))})")
    print(f"Seeds {', '.join(map(str, sorted(seeds)))} ({args.role}); mean ± standard deviation over the seeds each "
          "model ran on; TPRs in %.\n")
    print(table(chosen, args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
