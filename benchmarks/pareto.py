"""The Pareto front of forgetting against speed on the audit's evaluation seeds (issue: dcu per example).

    python benchmarks/pareto.py                      # reads benchmarks/results/audit-audit-random.json
    python benchmarks/pareto.py --audit benchmarks/results/audit-audit-random.json \
        --audit benchmarks/results/audit-audit-random-tuned.json   # and the rows of a second run
    python benchmarks/pareto.py ... --audit benchmarks/results/audit-audit-random-phi.json \
        --reference-json audit-audit-random-phi.json=-s32-rebuild   # its stores were rebuilt

A method that ran with other settings in a later file is a point of its own, "METHOD, tuned" when those are
the preset's shipped settings (dcu/tuned/<preset>.json), else "METHOD, <file>"; a row seen before with the
same settings on the same seed is not counted twice.

For every ensemble on every evaluation seed: the forgetting score and U-LiRA AUC against RTE. RTE is the
retrain ensemble's mean seconds per model over the method's mean seconds per model, both from the same seed's
store. A method's offline cost (dcu's condensed set; a reference store's shadows) is reported beside it and
amortised over 1, 5 and 20 requests (a reference store's from benchmarks/results/reference-<preset>-seed<S>.json).
Writes audit-pareto.json and audit-pareto.png beside the input.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from dcu.io import atomic_write_json
from dcu.presets import method_of, tuned_settings

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE_ROWS = ("ceiling (retrain vs retrain)", "original (no unlearning)")


def front(points):
    """The points no other point beats on both axes (higher score, higher RTE)."""
    return sorted((p for p in points if not any(q["score"] >= p["score"] and q["rte"] >= p["rte"] and q != p
                                               and (q["score"] > p["score"] or q["rte"] > p["rte"]) for q in points)),
                  key=lambda p: p["rte"])


def reference_store_seconds(preset: str, seed, reference: str, suffix: str = "", skip=(), results: Path = RESULTS) -> float:
    """The training time of the shadow store behind a reference file, from the reference_targets.py JSON that
    wrote it: the seconds per shadow of the run that wrote it (its shard's time over the shadows it trained) times
    the store's shadows, so a store that was grown from a smaller one, resumed or filled by several shards is
    charged every shadow at one process's pace. A rebuilt store overwrites its reference file,
    so two JSONs may name it: ``suffix`` prefers the JSONs whose names end in it, ``skip`` drops those ending in
    any of its suffixes; else the first by name."""
    candidates = sorted(results.glob(f"reference-{preset}-seed{seed}*{suffix}.json"))
    candidates += [p for p in sorted(results.glob(f"reference-{preset}-seed{seed}*.json")) if p not in candidates]
    for made in candidates:
        if any(made.stem.endswith(other) for other in skip if other != suffix):
            continue
        entry = json.loads(made.read_text())
        if entry.get("reference_file", f"runs/reference-{preset}-seed{seed}.pt") == reference:
            if not entry.get("shadows_trained_now"):
                raise ValueError(f"{made} holds no training time (the run that wrote it trained no shadow: they were "
                                 "linked in or trained earlier); pass that store's cost with --offline METHOD=SECONDS.")
            return entry["shadow_seconds_this_run"] * entry["shadows"] / entry["shadows_trained_now"]
    raise FileNotFoundError(f"No {results}/reference-{preset}-seed{seed}*{suffix}.json wrote {reference}.")


def labelled_rows(paths):
    """(label, seed, run, row name, row, path) for every evaluation-seed row of the audit files, in order. A method
    that an earlier file ran with other settings gets a label of its own (see the module docstring)."""
    seen = {}   # method name -> (the file, the settings) its plain label stands for
    taken = set()
    for path in paths:
        for seed, run in json.loads(Path(path).read_text())["runs"].items():
            if run.get("seed_role") != "evaluation":
                continue
            shipped = tuned_settings(run["preset"])
            for name, row in run["rows"].items():
                settings = run["settings"].get(name, {})
                label = name
                # within one file a method's settings may name per-seed files (a reference store): one method
                first_path, first_settings = seen.setdefault(name, (path, settings))
                if first_path != path and first_settings != settings:
                    label = f"{name}, tuned" if shipped.get(name) == settings else f"{name}, {Path(path).stem}"
                if (label, seed) not in taken:
                    taken.add((label, seed))
                    yield label, seed, run, name, row, path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audit", action="append", default=[],
                        help="an audit JSON; repeat for more (default benchmarks/results/audit-audit-random.json)")
    parser.add_argument("--offline", action="append", default=[], metavar="METHOD=SECONDS",
                        help="an offline cost per original (e.g. dcu@ref=776 for a reference store's shadows)")
    parser.add_argument("--reference-json", action="append", default=[], metavar="AUDIT=SUFFIX",
                        help="the reference stores of audit file AUDIT (its name) are described by the "
                             "reference-<preset>-seed<S>*SUFFIX.json files; other audits skip those")
    args = parser.parse_args(argv)
    audits = args.audit or [str(RESULTS / "audit-audit-random.json")]
    extra_offline = {k: float(v) for k, v in (item.split("=", 1) for item in args.offline)}
    suffixes = dict(item.split("=", 1) for item in args.reference_json)
    per_method = {}
    for label, seed, run, name, row, path in labelled_rows(audits):
        if name in REFERENCE_ROWS or not row.get("seconds"):
            continue
        retrain = run["rows"]["ceiling (retrain vs retrain)"]["seconds"]
        condensed = run.get("condensed_sets", {}).get(name, run.get("condensed"))
        condense = (condensed or {}).get("offline_seconds") or 0.0
        base = method_of(name)
        offline = (condense if base == "dcu" else 0.0) + extra_offline.get(label, 0.0)
        if run["settings"].get(name, {}).get("reference"):   # the reference store's shadows, made for this seed
            offline += reference_store_seconds(run["preset"], seed, run["settings"][name]["reference"],
                                               suffixes.get(Path(path).name, ""), suffixes.values())
        per_method.setdefault(label, []).append(
            {"seed": int(seed), "score": row["forgetting_score"], "ulira": row["ulira"]["auc"],
             "rte": retrain / row["seconds"], "seconds": row["seconds"], "retrain_seconds": retrain,
             "offline_seconds": offline,
             "rte_amortised": {str(n): retrain / (row["seconds"] + offline / n) for n in (1, 5, 20)},
             "forget_acc": row["forget_acc"], "test_acc": row["test_acc"],
             "ceiling": run["rows"]["ceiling (retrain vs retrain)"]["forgetting_score"]})
    points = [{"method": m, "seeds": [r["seed"] for r in rs],
               "score": statistics.mean(r["score"] for r in rs), "ulira": statistics.mean(r["ulira"] for r in rs),
               "rte": statistics.mean(r["rte"] for r in rs),
               "rte_amortised": {n: statistics.mean(r["rte_amortised"][n] for r in rs) for n in ("1", "5", "20")},
               "offline_seconds": statistics.mean(r["offline_seconds"] for r in rs),
               "share_of_ceiling": statistics.mean(r["score"] / r["ceiling"] for r in rs), "runs": rs}
              for m, rs in sorted(per_method.items())]
    on_front = {p["method"] for p in front(points)}
    for p in points:
        p["pareto"] = p["method"] in on_front
    out = Path(audits[0]).with_name("audit-pareto.json")
    atomic_write_json({"benchmark": "pareto", "audit": [Path(a).name for a in audits],
                       "note": "online seconds were measured while other jobs shared the machine (see docs/results.md)",
                       "points": points}, out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dcu.plots import _save

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, ylabel in ((axes[0], "score", "forgetting score (higher is better)"),
                            (axes[1], "ulira", "U-LiRA AUC (0.5 is retraining)")):
        for p in points:
            own = p["method"].startswith("dcu")
            ax.scatter(p["rte"], p[key], s=36 if own else 22, marker="o" if own else "s",
                       color="tab:red" if own else "tab:blue", zorder=3)
            ax.annotate(p["method"], (p["rte"], p[key]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        if key == "score":
            line = front(points)
            ax.plot([p["rte"] for p in line], [p["score"] for p in line], color="grey", linewidth=0.8, zorder=2)
            ceilings = [r["ceiling"] for p in points for r in p["runs"]]
            ax.axhline(statistics.mean(ceilings), color="black", linestyle=":", linewidth=0.8)
            ax.text(min(p["rte"] for p in points), statistics.mean(ceilings),
                    " retrain vs retrain", fontsize=7, va="bottom")
        else:
            ax.axhline(0.5, color="black", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("RTE (retraining time / online time per request)")
        ax.set_ylabel(ylabel)
    seeds = sorted({r["seed"] for p in points for r in p["runs"]})
    fig.suptitle(f"audit preset, random 10%, evaluation seeds {', '.join(map(str, seeds))}: dcu (red) and baselines (blue)",
                 fontsize=9)
    _save(fig, out.with_suffix(".png"))
    for p in sorted(points, key=lambda p: -p["score"]):
        print(f"{p['method']:16s} score {p['score']:.3f} ({100 * p['share_of_ceiling']:.0f}% of ceiling) "
              f"U-LiRA {p['ulira']:.3f} RTE {p['rte']:.1f} {'front' if p['pareto'] else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
