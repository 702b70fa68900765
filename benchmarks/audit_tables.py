"""Markdown tables of the committed audit scorecards: every method's mean over the evaluation seeds it ran on,
beside the ceiling, for docs/results.md and the README (nothing is typed by hand).

    python benchmarks/audit_tables.py benchmarks/results/audit-audit-random.json [--role evaluation]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

CEILING, NOTHING = "ceiling (retrain vs retrain)", "original (no unlearning)"
COLUMNS = [  # (header, how to read a row, format)
    ("forgetting score", lambda r: r["forgetting_score"], "{:.3f}"),
    ("F", lambda r: r["forgetting_quality"], "{:.3f}"),
    ("U-LiRA AUC", lambda r: r["ulira"]["auc"], "{:.3f}"),
    ("U-LiRA TPR@1%", lambda r: 100 * r["ulira"]["tpr_at_1fpr"], "{:.1f}"),
    ("KLoM forget", lambda r: r["klom"]["forget"], "{:.2f}"),
    ("loss_lr", lambda r: 100 * r["loss_lr"] if "loss_lr" in r else None, "{:.1f}"),
    ("retain", lambda r: 100 * r["retain_acc"], "{:.1f}"),
    ("forget", lambda r: 100 * r["forget_acc"], "{:.1f}"),
    ("val", lambda r: 100 * r["val_acc"] if "val_acc" in r else None, "{:.1f}"),
    ("test", lambda r: 100 * r["test_acc"], "{:.1f}"),
    ("probe", lambda r: 100 * r["probe_forget_acc"] if "probe_forget_acc" in r else None, "{:.1f}"),
    ("relearn", lambda r: 100 * r["relearn_forget_acc"] if "relearn_forget_acc" in r else None, "{:.1f}"),
    ("s / model", lambda r: r["seconds"], "{:.1f}"),
]


def summary(runs: dict) -> dict:
    """Per row name: the seeds it ran on, each column's mean over them, and its share of each seed's ceiling."""
    out = {}
    for seed, entry in sorted(runs.items()):
        ceiling = entry["rows"][CEILING]["forgetting_score"]
        for name, row in entry["rows"].items():
            acc = out.setdefault(name, {"seeds": [], "values": {h: [] for h, _, _ in COLUMNS}, "share": []})
            acc["seeds"].append(int(seed))
            acc["share"].append(row["forgetting_score"] / ceiling)
            for header, read, _ in COLUMNS:
                value = read(row)
                if value is not None:
                    acc["values"][header].append(value)
    return out


def table(runs: dict) -> str:
    rows = summary(runs)
    all_seeds = sorted(int(s) for s in runs)
    head = ["ensemble", "seeds", *[h for h, _, _ in COLUMNS[:1]], "share of ceiling", *[h for h, _, _ in COLUMNS[1:]]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    order = sorted(rows, key=lambda n: (n != CEILING, n == NOTHING, -statistics.mean(rows[n]["values"]["forgetting score"])))
    for name in order:
        acc = rows[name]
        seeds = "all" if acc["seeds"] == all_seeds else ", ".join(map(str, acc["seeds"]))
        cells = []
        for header, _, fmt in COLUMNS:
            values = acc["values"][header]
            cells.append(fmt.format(statistics.mean(values)) if len(values) == len(acc["seeds"]) else "—")
        share = f"{100 * statistics.mean(acc['share']):.0f}%"
        lines.append(f"| {name} | {seeds} | {cells[0]} | {share} | " + " | ".join(cells[1:]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scorecards", help="an audit JSON (benchmarks/results/audit-<preset>-<scenario>.json)")
    parser.add_argument("--role", default="evaluation", choices=["evaluation", "development", "unassigned"])
    args = parser.parse_args(argv)
    runs = {s: e for s, e in json.loads(Path(args.scorecards).read_text())["runs"].items() if e["seed_role"] == args.role}
    if not runs:
        parser.error(f"{args.scorecards} has no {args.role} seeds")
    print(f"Seeds {', '.join(sorted(runs))} ({args.role}); means over the seeds each row ran on; a dash: a "
          "column some of its seeds lack.\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
