"""The per-example audit on a preset: ensembles of retrained, unlearned and original models, scored by the
challenge's forgetting score, U-LiRA and KLoM beside the retrain-vs-retrain ceiling (docs/method.md, section 4).

    python benchmarks/audit.py --preset audit --data-root ~/data/cifar10 --seed 100 --models 16 \\
        --methods finetune,dcu,salun,neggrad_plus,scrub

The ensembles go to ``--store`` (default runs/ensembles-<preset>-<scenario>-seed<seed>); a stopped run
resumes where it was, and ``--shard i/n`` lets n processes (``--threads 1`` each) fill one store. Once the
store is complete the scorecard is written to ``benchmarks/results/audit-<preset>-<scenario>.json`` (one
entry per seed, marked development or evaluation by the preset), with its table and figure beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json, atomic_write_text
from dcu.presets import get_preset, method_of, method_settings, parse_shard, seed_role
from dcu.progress import set_quiet
from dcu.workflows.audit import (
    EnsembleStore,
    fill,
    memorised_request,
    scorecard,
    shared_condensed,
    subpopulation_request,
)
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import condenser_settings, forget_requests, preset_original

RESULTS = Path(__file__).resolve().parent / "results"


def table(card) -> str:
    head = ("| ensemble | models | forgetting score | F | U-LiRA AUC | U-LiRA TPR@1% | KLoM forget / retain / val "
            "(95th pct) | loss_lr | retain acc | forget acc | val acc | test acc | probe on forget | relearn forget | seed spread | "
            "ε capped | seconds |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pct = lambda row, key: f"{100 * row[key]:.2f}" if key in row else "—"  # noqa: E731
    for name, row in card["rows"].items():
        kl = " / ".join(f"{row['klom'][s]:.2f}" for s in ("forget", "retain", "val") if s in row["klom"])
        lines.append(f"| {name} | {row['models']} | {row['forgetting_score']:.4f} | {row['forgetting_quality']:.4f} | "
                     f"{row['ulira']['auc']:.4f} | {100 * row['ulira']['tpr_at_1fpr']:.2f} | {kl} | {pct(row, 'loss_lr')} | "
                     f"{pct(row, 'retain_acc')} | {pct(row, 'forget_acc')} | {pct(row, 'val_acc')} | {pct(row, 'test_acc')} | "
                     f"{pct(row, 'probe_forget_acc')} | {pct(row, 'relearn_forget_acc')} | {row['seed_spread']:.3f} | "
                     f"{row['epsilon_capped']} | {row['seconds']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from unlearn import get_unlearner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="audit")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=100, help="the original's training seed and the request's seed")
    parser.add_argument("--scenario", default="random", choices=["random", "class", "memorised", "subpopulation"],
                        help="random 10%%, one class, the most memorised ids (needs --shadows), or one class's "
                             "feature-space neighbours of an anchor")
    parser.add_argument("--count", type=int, default=250, help="forget-set size of memorised / subpopulation")
    parser.add_argument("--shadows", default=None, help="a shadow store of the preset (dcu shadows), for memorised")
    parser.add_argument("--methods", default="finetune,dcu",
                        help="comma-separated; METHOD@LABEL is a variant with its own --set METHOD@LABEL.KEY=VALUE")
    parser.add_argument("--models", type=int, default=16, help="models per ensemble (retrain: twice as many)")
    parser.add_argument("--originals", type=int, default=0, help="originals from other training seeds")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="a method setting, or the condenser's (ncfm.iterations=100)")
    parser.add_argument("--condense", default=None, metavar="METHOD",
                        help="the condenser of this run's rows (default: the preset's), at the preset's IPC unless "
                             "--set METHOD.ipc=N; its set is kept in the store as condensed-METHOD.pt")
    parser.add_argument("--shard", default="0/1", help="build only models k with k %% n == i")
    parser.add_argument("--store", default=None)
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/audit-<preset>-<scenario>.json)")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the rows of --seed's stored entry from its store's logits (new scores, no "
                             "training), keeping its command and settings")
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)
    part, parts = parse_shard(args.shard)
    out = Path(args.out) if args.out else RESULTS / f"audit-{args.preset}-{args.scenario}.json"
    if args.rescore:
        return rescore(out, args.seed, args.data_root)

    overrides, preset = method_settings(args.set), get_preset(args.preset)
    try:
        condense = condenser_settings(preset, overrides, args.condense) or dict(preset["condense"])
    except ValueError as err:
        parser.error(str(err))
    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    if args.scenario == "memorised":
        from inversion_attacks.shadow import ShadowStore

        if not args.shadows:
            parser.error("--scenario memorised needs --shadows DIR (a store made with dcu shadows)")
        forget_ids = memorised_request(ShadowStore(args.shadows), splits, args.count)
    elif args.scenario == "subpopulation":
        forget_ids = subpopulation_request(original, splits, args.count, seed=args.seed)
    else:
        forget_ids = torch.sort(torch.cat(forget_requests(splits, args.scenario, args.seed,
                                                          frac=preset.get("forget_frac", 0.1)))).values
    store_path = Path(args.store or f"runs/ensembles-{args.preset}-{args.scenario}-seed{args.seed}")
    store = EnsembleStore.create(store_path, splits, meta, forget_ids, seed=args.seed)
    methods = [m for m in args.methods.split(",") if m and m != "retrain"]
    settings = {m: {**preset.get("unlearn", {}).get(m, {}), **overrides.get(m, {})} for m in methods}
    condensed, on_condensed = None, [m for m in methods if get_unlearner(method_of(m)).requires_condensed]
    if on_condensed:
        method = condense.pop("method")
        name = "condensed.pt" if method == preset["condense"]["method"] else f"condensed-{method}.pt"
        condensed = shared_condensed(store_path / name, splits, original, meta, method=method, seed=args.seed,
                                     **condense)
    fill(store, splits, original, meta, methods=methods, models=args.models, retrains=2 * args.models,
         originals=args.originals, condensed=condensed, settings=settings, shard=(part, parts))
    if len(store.seeds("retrain", "retrain")) < 2 * args.models or any(
            len(store.seeds("unlearn", m)) < args.models for m in methods):
        print(f"shard {args.shard} done; {store_path} waits for the other shards", flush=True)
        return 0
    earlier = json.loads(out.read_text())["runs"].get(str(args.seed)) if out.exists() else None
    if earlier is not None and Path(earlier["store"]) == store_path:   # rows added before stay in the entry
        kept = [m for m in earlier["settings"] if m not in methods and store.seeds("unlearn", m)]
        methods, settings = kept + methods, {**{m: earlier["settings"][m] for m in kept}, **settings}
    card = scorecard(store, splits, methods=methods)
    role = seed_role(preset, args.seed)
    made = ({"method": condensed.method, "images": len(condensed), "settings": condensed.config,
             "offline_seconds": condensed.timings["condense_seconds"]} if condensed is not None
            else (earlier or {}).get("condensed"))   # a run that added methods without one keeps the set dcu's rows used
    # which set each row trained on, where runs that added rows used other condensers
    row_sets = {m: (earlier or {}).get("condensed") for m in methods if get_unlearner(method_of(m)).requires_condensed}
    row_sets.update({**(earlier or {}).get("condensed_sets", {}), **{m: made for m in on_condensed}})
    entry = {**provenance(), "preset": args.preset, "config": preset, "scenario": args.scenario, "seed": args.seed,
             "seed_role": role, "settings": settings, "original_train_seconds": meta["times"]["online_seconds"],
             "condensed": made, "condensed_sets": row_sets, **card}
    write_entry(out, entry)
    return 0


def write_entry(out: Path, entry) -> None:
    """One seed's entry into the scorecard file (re-read just before writing: shards of other seeds may have
    written theirs meanwhile), with its table and figure beside it."""
    from dcu.plots import audit_figure

    runs = json.loads(out.read_text())["runs"] if out.exists() else {}
    runs[str(entry["seed"])] = entry
    atomic_write_json({"benchmark": "audit", "runs": runs}, out)
    text = f"## {entry['preset']}, {entry['scenario']}, seed {entry['seed']} ({entry['seed_role']})\n\n{table(entry)}"
    atomic_write_text(text + "\n", out.with_name(out.stem + f"-seed{entry['seed']}.md"))
    audit_figure(entry, out.with_name(out.stem + f"-seed{entry['seed']}.png"),
                 title=f"{entry['preset']}, {entry['scenario']}, seed {entry['seed']}: {entry['forget']} forget "
                       f"examples, {entry['models_per_ensemble']} models per ensemble")
    print(text, flush=True)


def rescore(out: Path, seed: int, data_root) -> int:
    from dcu.workflows.pipeline import prepare_splits

    entry = json.loads(out.read_text())["runs"][str(seed)]
    splits = prepare_splits(entry["config"], data_root)
    references = {"ceiling (retrain vs retrain)", "original (no unlearning)", "originals, other training seeds"}
    methods = [name for name in entry["rows"] if name not in references]
    entry.update(scorecard(EnsembleStore(entry["store"]), splits, methods=methods))
    write_entry(out, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
