"""The ``dcu`` command line: train, condense, forget, evaluate, list, demo.

Every command that reads data takes ``--dataset`` and ``--data-root``; ``--quiet`` silences progress bars.
Errors in the input (files, ids, settings) are reported in one line and exit with status 2; nothing is
written then.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from . import __version__
from .presets import setting_value

log = logging.getLogger("dcu")

EPILOG = """examples:
  dcu train --dataset digits --model mlp --epochs 30 --seed 0 --out original.pt
  dcu condense --dataset digits --model original.pt --method fdm --ipc 10 --out condensed.pt
  dcu forget --dataset digits --model original.pt --condensed condensed.pt --ids forget.txt --method dcu --out unlearned.pt
  dcu forget --dataset digits --model original.pt --ids forget.txt --method retrain --out retrained.pt
  dcu evaluate --dataset digits --model unlearned.pt --forget forget.txt --reference retrained.pt --out report.json
  dcu tune --dataset digits --model original.pt --ids forget.txt --method salun --trials 20 --out tune.json
"""


def _settings(items: List[str]) -> Dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE. Got '{item}'.")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = setting_value(value)
    return out


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", required=required, default=None if required else "digits",
                   help="digits, cifar10, cifar100, svhn, mnist, fashionmnist, or folder:PATH (ImageFolder tree)")
    p.add_argument("--data-root", default=None,
                   help="where torchvision datasets are (or are downloaded to); default $DCU_DATA_ROOT or ~/.cache/dcu/data")


def _add_forget_args(p: argparse.ArgumentParser, flag: str = "--ids") -> None:
    g = p.add_argument_group("forget request (one of)")
    g.add_argument(flag, dest="ids", default=None, metavar="FILE",
                   help="text file of training ids, one per line; '#' comments and blank lines allowed")
    g.add_argument("--forget-frac", type=float, default=None, metavar="F", help="forget a random fraction F of the ids")
    g.add_argument("--forget-class", type=int, default=None, metavar="C", help="forget every sample of class C")
    g.add_argument("--forget-seed", type=int, default=0, help="seed for --forget-frac (default 0)")


def _splits_for(args, meta: Optional[Dict[str, Any]] = None, val_frac: Optional[float] = None):
    """The dataset, with the held-out split the model was trained with (from its metadata)."""
    from .data import load

    splits = load(args.dataset, args.data_root, quiet=args.quiet)
    holdout = (meta or {}).get("holdout") or {"frac": val_frac if val_frac is not None else 0.0, "seed": 0}
    return splits.holdout(holdout["frac"], seed=holdout["seed"])


def _load_model(args, path: Optional[str] = None):
    """(model, meta, splits): a checkpoint and the dataset split it was trained with, checked to fit each other."""
    from .checkpoint import check_fits, load_checkpoint

    path = path or args.model
    model, meta = load_checkpoint(path)
    splits = _splits_for(args, meta)
    check_fits(meta, splits, path)
    return model, meta, splits


def _progress_file(args) -> Path:
    """Where a long job checkpoints its progress: --checkpoint, or OUT with suffix .progress.pt. A fresh run
    removes a stale file there; --resume requires one."""
    path = Path(args.checkpoint) if args.checkpoint else Path(args.out).with_suffix(".progress.pt")
    if args.resume and not path.exists():
        raise FileNotFoundError(f"--resume: no progress checkpoint at {path} (pass --checkpoint PATH).")
    if not args.resume and path.exists():
        path.unlink()
    return path


def _auto_augment(splits) -> Dict[str, Any]:
    rgb = splits.input_shape[0] == 3 and splits.input_shape[1] >= 16
    return {"augment": rgb, "flip": rgb and splits.name != "svhn"}


# what each step of a model's lineage keeps of its checkpoint's metadata (``dcu history`` prints it)
LINEAGE_KEYS = ("hash", "kind", "method", "method_config", "parent_hash", "forget_hash", "forget_count", "times",
                "created", "versions", "num_trained_on")

# --- commands -----------------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from .checkpoint import base_meta, save_checkpoint
    from .models import create_model
    from .train import TrainConfig, train

    from .device import finish_distributed, init_distributed, resolve_device

    device = resolve_device(args.device)
    rank = init_distributed(device)
    splits = _splits_for(args, val_frac=args.val_frac)
    c, h, _ = splits.input_shape
    model_args = _settings(args.model_arg)
    torch.manual_seed(args.seed)
    model = create_model(args.model, in_channels=c, num_classes=splits.num_classes, image_size=h, **model_args).to(device)
    aug = _auto_augment(splits)
    if args.augment is not None:
        aug["augment"] = args.augment
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, **aug)
    progress_file = _progress_file(args)
    start = time.perf_counter()
    train(model, splits.train, cfg, desc=f"train {args.model}", progress_file=progress_file)
    seconds = time.perf_counter() - start
    meta = {**base_meta(model, splits, splits.train.ids), "kind": "original", "seed": args.seed,
            "holdout": {"frac": args.val_frac, "seed": 0}, "train_config": asdict(cfg),
            "times": {"online_seconds": seconds}, "forgotten_ids": [], "lineage": []}
    finish_distributed()
    if rank != 0:   # under torchrun only the first process writes
        return 0
    digest = save_checkpoint(args.out, model, meta)
    progress_file.unlink(missing_ok=True)
    from .train import accuracy

    log.info("Trained %s on %d %s images in %.1f s: train acc %.3f, test acc %.3f -> %s (hash %s)", args.model,
             len(splits.train), splits.name, seconds, accuracy(model, splits.train), accuracy(model, splits.test),
             args.out, digest)
    return 0


def cmd_condense(args) -> int:
    from condense import get_condenser

    from .checkpoint import load_checkpoint

    model, meta = None, None
    if args.model:
        model, meta = load_checkpoint(args.model)
    splits = _splits_for(args, meta, val_frac=args.val_frac)
    if meta is not None:
        from .checkpoint import check_fits

        check_fits(meta, splits, args.model)
        if meta.get("forgotten_ids"):
            splits.train = splits.train.without(torch.tensor(meta["forgotten_ids"]))
    from .device import resolve_device

    device = resolve_device(args.device)
    condenser = get_condenser(args.method, ipc=args.ipc, seed=args.seed, **_settings(args.set)).to(device)
    progress_file = _progress_file(args)
    condenser.resumable(progress_file, every=args.checkpoint_every)
    cset = condenser.condense(splits, model, meta["hash"] if meta else "")
    cset.source["holdout"] = (meta or {}).get("holdout", {"frac": args.val_frac, "seed": 0})
    if args.eval_runs:
        from condense.protocol import evaluate_condensed

        cset.state["evaluation"] = result = evaluate_condensed(cset, splits, runs=args.eval_runs,
                                                               protocol=args.protocol, seed=args.seed, device=device)
        log.info("Test accuracy of fresh %s trained on the condensed set (%s, %d runs): %.2f ± %.2f %%",
                 result["model"]["arch"], result["protocol"], result["runs"], 100 * result["mean"], 100 * result["std"])
    cset.save(args.out)
    if progress_file.exists():
        progress_file.unlink()
    log.info("Condensed %d training images into %d with '%s' in %.1f s -> %s", len(splits.train), len(cset),
             args.method, cset.timings["condense_seconds"], args.out)
    if args.plots:
        from .plots import image_grid, loss_curve

        png = Path(args.out).with_suffix(".png")
        image_grid(cset.images, cset.labels, splits.classes, splits.mean, splits.std, png,
                   per_class=min(10, args.ipc), title=f"{args.method}, {args.ipc} per class")
        log.info("Image grid -> %s", png)
        if cset.state.get("loss_history"):
            curve = Path(args.out).with_name(Path(args.out).stem + "-loss.png")
            loss_curve(cset.state["loss_history"], curve, title=f"{args.method}, {args.ipc} per class")
            log.info("Loss curve -> %s", curve)
    return 0


def cmd_forget(args) -> int:
    from unlearn import get_unlearner

    from .checkpoint import save_checkpoint
    from .forget import ForgetRequestError, resolve
    from .io import ids_hash
    from .train import TrainConfig

    model, meta, splits = _load_model(args)
    earlier = torch.tensor(meta.get("forgotten_ids", []), dtype=torch.long)
    # a fraction or a class is drawn from what the model still holds; an explicit id list must not repeat ids
    remaining = replace(splits, train=splits.train.without(earlier)) if len(earlier) and not args.ids else splits
    forget_ids = resolve(remaining, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class, seed=args.forget_seed)
    again = torch.isin(forget_ids, earlier)
    if again.any():
        raise ForgetRequestError(f"Id {int(forget_ids[again][0])} was already forgotten by an earlier request "
                                 f"answered by {args.model}.")
    train_set = splits.train.without(earlier) if len(earlier) else splits.train
    forget, retain = train_set.subset(forget_ids), train_set.without(forget_ids)
    condensed = None
    if args.condensed:
        from condense import load_condensed

        condensed = load_condensed(args.condensed)
        condensed.check_fits(splits, args.condensed)
        if condensed.source.get("holdout") not in (None, meta.get("holdout")):
            raise ValueError(f"{args.condensed} was made with held-out split {condensed.source['holdout']}, but "
                             f"{args.model} with {meta.get('holdout')}.")
        lineage = {meta["hash"]} | {step.get("hash") for step in meta.get("lineage", [])}
        made_with = condensed.source.get("model_hash")
        if made_with and made_with not in lineage:
            raise ValueError(f"{args.condensed} was condensed with model {made_with}, which is neither {args.model} "
                             f"({meta['hash']}) nor one of its ancestors.")
        stale = torch.isin(condensed.members, earlier)
        if stale.any():
            raise ValueError(f"{args.condensed} still holds id {int(condensed.members[stale][0])}, which an earlier "
                             "request forgot; pass the condensed set that request wrote.")
    train_cfg = TrainConfig(**meta["train_config"])
    unlearner = get_unlearner(args.method, train_config=train_cfg, seed=args.seed, **_settings(args.set))
    from .device import resolve_device

    device = resolve_device(args.device)
    if device.type != "cpu" and not unlearner.runs_on_gpu:
        log.info("'%s' runs on the CPU (only retrain, finetune, cf_k and eu_k run on a GPU so far).", args.method)
    elif device.type != "cpu":
        model = model.to(device)
    unlearned = unlearner.unlearn(model, retain, forget, condensed=condensed, val=splits.val)
    parent = {k: meta.get(k) for k in LINEAGE_KEYS}
    new_meta = {**{k: v for k, v in meta.items() if k not in ("hash", "created", "versions")},
                "kind": "unlearned", "parent_hash": meta["hash"], "forget_hash": ids_hash(forget_ids),
                "forget_count": int(len(forget_ids)), "forgotten_ids": sorted(set(earlier.tolist()) | set(forget_ids.tolist())),
                "train_ids_hash": ids_hash(retain.ids), "num_trained_on": len(retain),
                "method": args.method, "method_config": unlearner.config_dict(),
                "times": {"online_seconds": unlearner.stats["seconds"],
                          **{k: v for k, v in unlearner.stats.items() if k.endswith("seconds") and k != "seconds"},
                          **({"offline_seconds": condensed.timings.get("condense_seconds")} if condensed else {})},
                "lineage": list(meta.get("lineage", [])) + [parent]}
    digest = save_checkpoint(args.out, unlearned, new_meta)
    if condensed is not None and args.condensed_out:
        unlearner.refreshed.save(args.condensed_out)
    log.info("Forgot %d samples with '%s' in %.2f s -> %s (hash %s)", len(forget_ids), args.method,
             unlearner.stats["seconds"], args.out, digest)
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import check_fits, load_checkpoint
    from .evaluate import evaluate
    from .forget import resolve
    from .io import atomic_write_json

    from .device import resolve_device

    model, meta, splits = _load_model(args)
    model = model.to(resolve_device(args.device))
    if args.ids or args.forget_frac is not None or args.forget_class is not None:
        forget_ids = resolve(splits, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class, seed=args.forget_seed)
    elif meta.get("forgotten_ids"):
        forget_ids = torch.tensor(meta["forgotten_ids"], dtype=torch.long)
    else:
        raise ValueError("Name the forget request to evaluate: --forget FILE, --forget-frac F or --forget-class C.")
    reference, reference_meta = (None, None)
    if args.reference:
        reference, reference_meta = load_checkpoint(args.reference)
        check_fits(reference_meta, splits, args.reference)
    attacks = [a for a in args.attacks.split(",") if a]
    report = evaluate(model, splits, forget_ids, meta=meta, reference=reference, reference_meta=reference_meta,
                      attacks=attacks, seed=args.seed, shadows=args.shadows,
                      attack_settings={a: _settings(getattr(args, "set", [])) for a in attacks if getattr(args, "set", [])})
    atomic_write_json(report, args.out)
    line = (f"retain {report['retain_acc']:.3f}  forget {report['forget_acc']:.3f}  test {report['test_acc']:.3f}  "
            f"MIA(loss_lr) {report['mia']['loss_lr']['headline']:.3f}" if "loss_lr" in report["mia"] else "")
    log.info("%s -> %s", line, args.out)
    for name, result in report["mia"].items():
        log.info("  %s: %s %.4f, AUC %.3f, TPR@1%%FPR %.3f, TPR@0.1%%FPR %.3f", name, result["headline_name"],
                 result["headline"], result["auc"], result["tpr_at_1fpr"], result["tpr_at_01fpr"])
    if args.plots:
        from .plots import comparison_bars

        rows = {meta.get("method") or "model": _bar_row(report)}
        if reference is not None:
            rows = {"retrain": _bar_row(report["reference"]), **rows}
        png = Path(args.out).with_suffix(".png")
        comparison_bars(rows, ["retain_acc", "forget_acc", "test_acc", "mia"], png, title=f"{splits.name}")
        log.info("Bar chart -> %s", png)
        from .plots import roc_curves

        curves = {name: result["roc"] for name, result in report["mia"].items() if result.get("roc")}
        if reference is not None:
            curves.update({f"{name} (reference)": result["roc"] for name, result in report["reference"]["mia"].items()
                           if result.get("roc")})
        roc_png = Path(args.out).with_name(Path(args.out).stem + "-roc.png")
        roc_curves(curves, roc_png, title=f"membership of the forget set, {splits.name}")
        log.info("ROC curves -> %s", roc_png)
    return 0


def _bar_row(metrics: Dict[str, Any]) -> Dict[str, float]:
    row = {k: metrics[k] for k in ("retain_acc", "forget_acc", "test_acc")}
    if "loss_lr" in metrics["mia"]:
        row["mia"] = metrics["mia"]["loss_lr"]["headline"]
    return row


def cmd_shadows(args) -> int:
    from inversion_attacks.shadow import ShadowStore

    _, meta, splits = _load_model(args)
    try:
        part, parts = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n, e.g. 0/4. Got '{args.shard}'.") from None
    store = ShadowStore.create(args.out, splits, meta, count=args.count, seed=args.seed)
    trained = store.fill(splits, shard=(part, parts))
    log.info("Trained %d shadow model(s) of shard %d/%d; %s now holds %d of %d.", len(trained), part, parts, args.out,
             len(store.done()), args.count)
    return 0


def cmd_attack(args) -> int:
    args.attacks, args.reference = args.attack, None
    return cmd_evaluate(args)


def cmd_invert(args) -> int:
    from inversion_attacks.inversion import (CondensiveConfig, InversionConfig, condensive_inversion,
                                             gradient_inversion, inversion_scores, unlearning_inversion)

    from .checkpoint import check_fits, load_checkpoint
    from .io import atomic_write_json
    from .models import create_model
    from .train import TrainConfig, train

    model, meta, splits = _load_model(args)
    if splits.val is None or len(splits.val) == 0:
        raise ValueError(f"{args.model} has no held-out split: inversion is scored against held-out images.")
    cfg = InversionConfig(per_class=args.per_class, steps=args.steps, seed=args.seed)
    if args.method == "gradient":
        inverted = gradient_inversion(model, splits.input_shape, cfg)
    elif args.method == "condensive":
        inverted = condensive_inversion(model, splits.val, CondensiveConfig(steps=args.steps, seed=args.seed))
    elif args.method == "unlearning_inversion":
        if not args.original:
            raise ValueError("unlearning_inversion needs the model before unlearning: --original original.pt.")
        original, original_meta = load_checkpoint(args.original)
        check_fits(original_meta, splits, args.original)
        inverted = unlearning_inversion(original, model, splits.input_shape, cfg)
    else:
        raise ValueError(f"Unknown inversion method '{args.method}'. Valid values are: condensive, gradient, "
                         "unlearning_inversion.")
    if args.evaluator:
        evaluator, evaluator_meta = load_checkpoint(args.evaluator)
        check_fits(evaluator_meta, splits, args.evaluator)
    else:   # independent of the attacked model: another network, trained on held-out images only
        c, h, _ = splits.input_shape
        torch.manual_seed(args.seed + 1)
        evaluator = create_model("convnet", in_channels=c, num_classes=splits.num_classes, image_size=h, width=32,
                                 depth=2 if h < 16 else 3)
        train(evaluator, splits.val, TrainConfig(epochs=30, batch_size=64, lr=0.05, seed=args.seed + 1,
                                                  **_auto_augment(splits)), desc="evaluator")
    forget = unseen = None
    if meta.get("forgotten_ids"):
        forget = splits.train.subset(torch.tensor(meta["forgotten_ids"]))
        unseen = splits.test
    report = {"method": args.method, "model": {"path": args.model, "hash": meta.get("hash")},
              "evaluator": args.evaluator or "convnet-32 trained on the held-out split",
              "scores": inversion_scores(inverted, evaluator, splits.val, forget=forget, unseen=unseen)}
    atomic_write_json(report, args.out)
    log.info("Inverted %d images with '%s': evaluator accuracy %.3f, nearest SSIM %.3f, PSNR %.1f dB -> %s",
             len(inverted), args.method, report["scores"]["evaluator_accuracy"], report["scores"]["nearest_ssim"],
             report["scores"]["nearest_psnr"], args.out)
    if args.plots:
        from .plots import inversion_pairs

        nearest = []
        for image, label in zip(inverted.images, inverted.labels):
            pool = splits.val.images[splits.val.labels == label]
            nearest.append(pool[(pool - image).pow(2).flatten(1).mean(1).argmin()])
        png = Path(args.out).with_suffix(".png")
        inversion_pairs(inverted.images, torch.stack(nearest), inverted.labels, splits.classes, splits.mean,
                        splits.std, png, title=f"{args.method}: inverted (top), nearest held-out image (bottom)")
        log.info("Inverted images beside their nearest real ones -> %s", png)
    return 0


def cmd_tune(args) -> int:
    from .checkpoint import load_checkpoint
    from .forget import resolve
    from .io import atomic_write_json, ids_hash
    from .train import TrainConfig
    from .tune import tune

    model, meta, splits = _load_model(args)
    forget_ids = resolve(splits, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class, seed=args.forget_seed)
    reference = None
    if args.reference:
        reference, ref_meta = load_checkpoint(args.reference)
        if ref_meta.get("forget_hash") not in (None, ids_hash(forget_ids)):
            raise ValueError(f"{args.reference} was retrained for another forget request "
                             f"({ref_meta.get('forget_hash')}), not this one.")
    condensed = None
    if args.condensed:
        from condense import load_condensed

        condensed = load_condensed(args.condensed)
        condensed.check_fits(splits, args.condensed)
    out = Path(args.out)

    def write(partial):
        atomic_write_json({**partial, "model": {"path": args.model, "hash": meta.get("hash")}, "finished": False}, out)

    resume = None
    if args.resume:
        if not out.exists():
            raise FileNotFoundError(f"--resume: {out} does not exist; there is no stopped search to continue.")
        resume = json.loads(out.read_text())
    result = tune(args.method, model, splits, forget_ids, train_config=TrainConfig(**meta["train_config"]),
                  trials=args.trials, seed=args.seed, fixed=_settings(args.set), reference=reference,
                  condensed=condensed, resume=resume, on_trial=write, forget_bound=args.forget_bound)
    atomic_write_json({**result, "model": {"path": args.model, "hash": meta.get("hash")}, "finished": True}, out)
    log.info("Tuned '%s' over %d trials: %s (objective sum %.4f) -> %s", args.method, args.trials,
             result["best"]["settings"], result["best"]["sum"], out)
    return 0


def history(meta: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The chain of steps from the original to this model, oldest first."""
    return list(meta.get("lineage", [])) + [{k: meta.get(k) for k in LINEAGE_KEYS}]


def cmd_history(args) -> int:
    from .checkpoint import load_checkpoint

    _, meta = load_checkpoint(args.model)
    steps = history(meta)
    if args.json:
        print(json.dumps(steps, indent=2))
        return 0
    print(f"{args.model}: {len(steps) - 1} forget request(s) since the original")
    for i, step in enumerate(steps):
        times = step.get("times") or {}
        seconds = times.get("online_seconds")
        what = "original" if i == 0 else f"request {i}: forgot {step.get('forget_count')} ids " \
                                          f"(ids hash {step.get('forget_hash')}) with '{step.get('method')}'"
        line = f"  {i}. {step.get('hash')}  {what}"
        if seconds is not None:
            line += f", {seconds:.2f} s"
        if step.get("created"):
            line += f", {step['created']}"
        print(line)
        if i > 0 and step.get("method_config"):
            print(f"       settings: {json.dumps(step['method_config'], sort_keys=True)}")
    return 0


def cmd_list(args) -> int:
    import condense
    import inversion_attacks
    import unlearn

    from .data import list_datasets
    from .models import list_models
    from .presets import PRESETS

    kinds = {"datasets": list_datasets(), "models": list_models(), "condensation": condense.list_condensers(),
             "unlearning": unlearn.list_unlearners(), "attacks": inversion_attacks.list_attacks(),
             "presets": sorted(PRESETS)}
    for kind, names in kinds.items():
        if args.kind in (None, kind):
            print(f"{kind}: {', '.join(names)}")
    return 0


def cmd_demo(args) -> int:
    from .io import atomic_write_json
    from .pipeline import compare, table

    start = time.perf_counter()
    result = compare(args.preset, seed=args.seed, methods=args.methods.split(","), data_root=args.data_root)
    print(f"\n{args.preset} (dataset {result['dataset']}, forget {result['split_sizes']['forget']} of "
          f"{result['split_sizes']['train']} training samples, seed {args.seed}):\n")
    print(table(result))
    print(f"\nTime in seconds is the online cost (the original: its training); RTE = retrain time / method time. "
          f"The fdm condensed set ({result.get('condense', {}).get('images', 0)} images) cost "
          f"{result.get('condense', {}).get('offline_seconds', 0):.2f} s offline. Whole job: {time.perf_counter() - start:.1f} s.")
    if args.out:
        atomic_write_json(result, args.out)
    return 0


# --- parser -------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcu", description="Machine unlearning driven by dataset condensation.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dcu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        return p

    p = command("train", "Train the original model on a dataset's training split (minus a held-out validation split).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="architecture: convnet, mlp, resnet18, vgg11 (dcu list models)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="e.g. width=64 (repeatable)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=["onecycle", "cosine", "step", "constant"], default="onecycle")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="flip + 4-pixel crop (default: on for RGB images of 16 px and more)")
    p.add_argument("--val-frac", type=float, default=0.1,
                   help="fraction of the training split held out as validation, never trained on (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint to write, e.g. original.pt")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--checkpoint", default=None, help="progress checkpoint, saved every epoch (default OUT.progress.pt)")
    p.add_argument("--resume", action="store_true", help="continue a stopped run from its progress checkpoint")
    p.set_defaults(func=cmd_train)

    p = command("condense", "Condense the training split into a small synthetic set (offline, once).")
    _add_data_args(p)
    p.add_argument("--model", default=None, help="the trained original (required by fdm)")
    p.add_argument("--method", default="fdm", help="random, herding, kcenter, dc, dsa, dm, fdm, mi (dcu list condensation)")
    p.add_argument("--ipc", type=int, default=10, help="images per class")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting, e.g. iterations=500")
    p.add_argument("--val-frac", type=float, default=0.1, help="held-out fraction when no --model gives it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", action="store_true", help="also write a PNG grid of the synthetic images and the loss curve")
    p.add_argument("--eval-runs", type=int, default=0, metavar="N",
                   help="train N fresh networks on the condensed set and report test accuracy mean ± std")
    p.add_argument("--protocol", default="dc-300ep", help="evaluation protocol: dc-300ep (DC/DSA papers'), dc-1000ep (DM paper's) "
                                                        "or dc-cpu")
    p.add_argument("--checkpoint", default=None, help="progress checkpoint (default OUT with suffix .progress.pt)")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="N", help="iterations between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the progress checkpoint")
    p.add_argument("--device", default="auto", help="where dc, dsa, dm and the evaluation run: auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_condense)

    p = command("forget", "Answer a forget request: write an unlearned model.")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the model to unlearn from (an original or an unlearned model)")
    p.add_argument("--condensed", default=None, help="condensed retain set (required by dcu)")
    p.add_argument("--condensed-out", default=None, help="write the refreshed condensed set here (for the next request)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--method", default="dcu", help="unlearning method: dcu, retrain, finetune, salun, scrub, ... (dcu list unlearning)")
    _add_forget_args(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting, e.g. epochs=6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_forget)

    p = command("evaluate", "Evaluate a model against a forget request: accuracies, MIA, gaps to a reference.")
    _add_data_args(p)
    p.add_argument("--model", required=True)
    _add_forget_args(p, flag="--forget")
    p.add_argument("--reference", default=None, help="the retrained model, for gaps and RTE")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--attacks", default="loss_lr", help="comma-separated attack names (dcu list attacks)")
    p.add_argument("--shadows", default=None, help="shadow-model store, for lira and rmia (dcu shadows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", action="store_true", help="also write a PNG bar chart beside the report")
    p.add_argument("--out", required=True, help="report.json")
    p.set_defaults(func=cmd_evaluate)

    p = command("shadows", "Train shadow models for the likelihood-ratio attacks (resumable; --shard i/n splits the work).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the target's original: its architecture and schedule are copied")
    p.add_argument("--count", type=int, default=16, help="shadow models in the store (each trains on a random half)")
    p.add_argument("--shard", default="0/1", help="train only shadows k with k %% n == i (default 0/1: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the store's folder")
    p.set_defaults(func=cmd_shadows)

    p = command("attack", "Run one membership-inference attack on a model's forget set (JSON out, --plots for ROC).")
    _add_data_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--attack", required=True, help="loss_lr, svc_efficacy, entropy, lira, rmia, ulira (dcu list attacks)")
    p.add_argument("--shadows", default=None, help="shadow-model store (for lira, rmia, ulira)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an attack setting, e.g. online=false, or for ulira method=dcu and settings={\"epochs\": 10}")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    _add_forget_args(p, flag="--forget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", action="store_true", help="also write the log-log ROC curve")
    p.add_argument("--out", required=True, help="report.json")
    p.set_defaults(func=cmd_attack)

    p = command("invert", "Model inversion with numeric scores (and --plots: inversions beside their nearest real images).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the model to invert (for unlearning_inversion: the unlearned one)")
    p.add_argument("--method", default="gradient", help="gradient, condensive or unlearning_inversion")
    p.add_argument("--original", default=None, help="the model before unlearning (unlearning_inversion)")
    p.add_argument("--evaluator", default=None, help="an independent classifier checkpoint (default: one trained "
                                                     "on the held-out split)")
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", action="store_true")
    p.add_argument("--out", required=True, help="report.json")
    p.set_defaults(func=cmd_invert)

    p = command("tune", "Search an unlearning method's settings (Optuna, multi-objective gaps to the retrained model).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the trained original (its held-out split is the validation data)")
    p.add_argument("--method", required=True, help="the unlearning method to tune (dcu list unlearning)")
    _add_forget_args(p)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--reference", default=None, help="the model retrained for this request (retrained here if omitted)")
    p.add_argument("--condensed", default=None, help="condensed retain set, for methods that use one")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting held fixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="tune.json (rewritten after every trial)")
    p.add_argument("--resume", action="store_true", help="continue the stopped search recorded in --out")
    p.add_argument("--forget-bound", type=float, default=None,
                   help="choose the trial closest to retrain on retain + validation among those whose forget gap is "
                        "at most this (e.g. 0.02 for a whole class); default: the smallest sum of objectives")
    p.set_defaults(func=cmd_tune)

    p = command("history", "Print the chain of forget requests from the original to a model.")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print the chain as JSON")
    p.set_defaults(func=cmd_history)

    p = command("list", "List the registered datasets, models, methods, attacks and presets.")
    p.add_argument("kind", nargs="?", choices=["datasets", "models", "condensation", "unlearning", "attacks", "presets"])
    p.set_defaults(func=cmd_list)

    p = command("demo", "The main job on a preset: train, condense, forget, and compare retrain / finetune / dcu.")
    p.add_argument("--preset", default="smoke")
    p.add_argument("--data-root", default=None)
    p.add_argument("--methods", default="retrain,finetune,dcu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the result as JSON")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from .io import ArtifactError
    from .progress import set_quiet

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    set_quiet(args.quiet)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, ArtifactError, FloatingPointError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"dcu {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
