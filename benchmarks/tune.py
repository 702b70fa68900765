"""Tune unlearning methods on a preset with dcu's multi-objective search (``dcu.workflows.tune``: Optuna, objectives =
gaps to the retrained model on held-out *training* images, never the test set), and ship the chosen settings.

    python benchmarks/tune.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --methods ssd,scrub \\
        --trials 20 --write-defaults

One original (cached in ``--work-dir``) and one retrained reference serve every method of the run; the
request is the preset's random one for ``--seed`` (``--scenario class``: the whole class the benchmark forgets;
its choice puts forgetting first, ``--forget-bound``, see ``dcu.workflows.tune.choose``).
Each method's search is written after every trial to ``benchmarks/results/tune-<preset>-<method>[-class].json``
and continues from there when rerun. With ``--write-defaults`` the chosen settings replace the method's entry
in ``dcu/tuned/<preset>.json`` (the settings ``get_preset`` hands to every run of that preset and scenario),
with the search named as their source; a ``class`` search fills the entry's ``scenarios.class``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json
from dcu.presets import TUNED, check_development_seed, get_preset, tuned_file
from dcu.progress import set_quiet
from dcu.train import TrainConfig
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import forget_requests, preset_original

RESULTS = Path(__file__).resolve().parent / "results"


def write_defaults(preset: str, method: str, result: dict, source: Path, tuned_dir: Path = TUNED,
                   scenario: str = "random") -> None:
    """Put the search's chosen settings into ``tuned_dir/<preset>.json`` as ``method``'s entry (or as the
    entry's settings for ``scenario``, the random-request settings kept)."""
    path = tuned_dir / tuned_file(preset).name
    data = json.loads(path.read_text()) if path.exists() else {"preset": preset, "methods": {}}
    best = result["best"]
    entry = {
        "settings": best["settings"],
        "source": f"dcu tune: {source.name}, {len(result['trials'])} trials, seed {result['seed']}, trial "
                  f"{best['number']} ({best.get('rule', 'smallest sum of objectives on the Pareto front')}), "
                  f"objective sum {best['sum']:.4f} (" + ", ".join(f"{k} {v:.4f}" for k, v in best["objectives"].items())
                  + ")",
    }
    earlier = data["methods"].get(method, {})
    if scenario == "random":
        data["methods"][method] = {**entry, **{k: v for k, v in earlier.items() if k == "scenarios"}}
    else:   # a method never tuned on the random request keeps its own defaults there
        earlier = earlier or {"settings": {}, "source": "the method's own defaults"}
        earlier.setdefault("scenarios", {})[scenario] = entry
        data["methods"][method] = earlier
    atomic_write_json(data, path)


def main(argv=None) -> int:
    from dcu.workflows.tune import choose, tune
    from unlearn import get_unlearner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-cpu-sub")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--methods", required=True, help="comma-separated unlearning methods")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", default="random", choices=["random", "class"])
    parser.add_argument("--work-dir", default="runs/benchmarks")
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--forget-bound", type=float, default=None,
                        help="choose among trials with at most this forget gap (default: 0.02 for --scenario class, "
                             "none for random)")
    parser.add_argument("--grid", default=None, metavar="FILE",
                        help="JSON {method: {setting: [values]}}: try every combination instead of searching "
                             "(a hand sweep, scored like a search; written to tune-...-grid.json)")
    parser.add_argument("--write-defaults", action="store_true",
                        help="ship each chosen setting in dcu/tuned/<preset>.json")
    parser.add_argument("--tuned-dir", default=str(TUNED), help=argparse.SUPPRESS)   # tests write elsewhere
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(args.quiet)

    bound = args.forget_bound if args.forget_bound is not None else (0.02 if args.scenario == "class" else None)
    try:
        check_development_seed(get_preset(args.preset), args.seed, "tuning")
    except ValueError as exc:
        parser.error(str(exc))
    preset, splits, original, meta = preset_original(args.preset, args.data_root, args.seed, args.work_dir)
    forget_ids = torch.sort(torch.cat(forget_requests(splits, args.scenario, args.seed,
                                                      frac=preset.get("forget_frac", 0.1)))).values
    train_cfg = TrainConfig(**meta["train_config"])
    reference = None
    grids = json.loads(Path(args.grid).read_text()) if args.grid else {}
    for method in args.methods.split(","):
        if args.grid and method not in grids:
            parser.error(f"{args.grid} has no grid for '{method}'")
        suffix = ("" if args.scenario == "random" else f"-{args.scenario}") + ("-grid" if args.grid else "")
        out = Path(args.out_dir) / f"tune-{args.preset}-{method}{suffix}.json"
        resume = json.loads(out.read_text()) if out.exists() else None
        if resume is not None and resume.get("finished") and (args.grid or len(resume["trials"]) >= args.trials):
            result = resume
            if result["best"].get("forget_bound") != bound or "rule" not in result["best"]:
                result["best"] = choose(result, bound)   # a stored search, chosen by this run's rule
                atomic_write_json(result, out)
        else:
            if reference is None and (resume is None or "reference" not in resume):
                forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
                start = time.perf_counter()
                reference = get_unlearner("retrain", train_config=train_cfg, seed=args.seed).unlearn(original, retain,
                                                                                                       forget).model
                print(f"reference retrained in {time.perf_counter() - start:.0f} s", flush=True)
            header = {"benchmark": "tune", "preset": args.preset, **provenance(),
                      "scenario": args.scenario, "forget_count": len(forget_ids)}

            def write(partial, finished=False, header=header, out=out):
                atomic_write_json({**partial, **header, "finished": finished}, out)

            result = tune(method, original, splits, forget_ids, train_config=train_cfg, trials=args.trials,
                          seed=args.seed, reference=reference, resume=resume if resume and resume.get("trials") else None,
                          on_trial=write, forget_bound=bound, grid=grids.get(method))
            write(result, finished=True)
        best = result["best"]
        print(f"{method}: {best['settings']} (objective sum {best['sum']:.4f})", flush=True)
        if args.write_defaults:
            write_defaults(args.preset, method, result, out, Path(args.tuned_dir), args.scenario)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
