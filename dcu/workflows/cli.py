"""The ``dcu`` command line: train, condense, forget, evaluate, list, demo.

Every command that reads data takes ``--dataset`` and ``--data-root``; ``--quiet`` silences progress bars.
Errors in the input (files, ids, settings) are reported in one line and exit with status 2; nothing is
written then.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .. import __version__
from ..io import OutputError, check_outputs, clip, output_lock
from ..presets import parse_shard, setting_value

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
            raise ValueError(f"--set expects KEY=VALUE. Got '{clip(item, 60)}'.")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = setting_value(value)
    return out


def _number(kind: type, low: Optional[float] = None, high: Optional[float] = None, *, open_low: bool = False,
            open_high: bool = False):
    """An argparse type: a ``kind`` number within [low, high] (ends open where asked)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole number' if kind is int else 'number'}, got "
                                             f"'{clip(text, 40)}'") from None
        if kind is float and value != value:
            raise argparse.ArgumentTypeError("expected a number, got NaN")
        below = low is not None and (value <= low if open_low else value < low)
        above = high is not None and (value >= high if open_high else value > high)
        if below or above:
            lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
            hi = "" if high is None else f"{'<' if open_high else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(x for x in (lo, hi) if x)}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


POSITIVE = _number(int, 1)
NON_NEGATIVE = _number(int, 0)
FRACTION = _number(float, 0.0, 1.0, open_high=True)          # [0, 1)
OPEN_FRACTION = _number(float, 0.0, 1.0, open_low=True, open_high=True)


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", required=required, default=None if required else "digits",
                   help="digits, cifar10, cifar100, svhn, mnist, fashionmnist, or folder:PATH (ImageFolder tree)")
    p.add_argument("--data-root", default=None,
                   help="where torchvision datasets are (or are downloaded to); default $DCU_DATA_ROOT or ~/.cache/dcu/data")


def _add_forget_args(p: argparse.ArgumentParser) -> None:
    """The forget request, spelled the same on every command (``--forget`` is kept as another name of ``--ids``)."""
    g = p.add_argument_group("forget request (one of)")
    g.add_argument("--ids", "--forget", dest="ids", default=None, metavar="FILE",
                   help="text file of training ids, one per line; '#' comments and blank lines allowed")
    g.add_argument("--forget-frac", type=OPEN_FRACTION, default=None, metavar="F", help="forget a random fraction F of the ids")
    g.add_argument("--forget-class", default=None, metavar="C",
                   help="forget every sample of class C: its name (e.g. airplane) or its index")
    g.add_argument("--forget-seed", type=int, default=0, help="seed for --forget-frac (default 0)")


def _splits_for(args, meta: Optional[Dict[str, Any]] = None, val_frac: Optional[float] = None):
    """The dataset, with the held-out split the model was trained with (from its metadata)."""
    from ..data import load

    splits = load(args.dataset, args.data_root, quiet=args.quiet)
    holdout = (meta or {}).get("holdout") or {"frac": val_frac if val_frac is not None else 0.0, "seed": 0}
    return splits.holdout(holdout["frac"], seed=holdout["seed"])


def _load_model(args, path: Optional[str] = None, ledger: Optional[str] = None):
    """(model, meta, splits, ledger): a checkpoint, the dataset split it was trained with (checked to fit each
    other), and its request ledger. Ids the ledger withdrew are gone from the held-out split."""
    from ..checkpoint import check_fits, load_checkpoint
    from ..ledger import read_ledger

    path = path or args.model
    model, meta = load_checkpoint(path)
    splits = _splits_for(args, meta)
    check_fits(meta, splits, path)
    requests = read_ledger(meta, path, splits.num_ids, ledger)
    if len(requests.withdrawn) and splits.val is not None:
        splits = replace(splits, val=splits.val.without(requests.withdrawn))
    return model, meta, splits, requests


def _progress_file(args) -> Path:
    """Where a long job checkpoints its progress: --checkpoint, or OUT with suffix .progress.pt.

    Nothing is deleted here: a fresh run refuses a file already at that path (it may be the user's), and
    --resume requires one. The file is removed only after the run has written its output.
    """
    path = Path(args.checkpoint) if args.checkpoint else Path(args.out).with_suffix(".progress.pt")
    if args.resume and not path.is_file():
        raise FileNotFoundError(f"--resume: no progress checkpoint at {path} (pass --checkpoint PATH).")
    if not args.resume and path.exists():
        raise OutputError(f"{path} already exists: pass --resume to continue the run it holds, or name another "
                          "--checkpoint (dcu does not delete a file it did not write in this run).")
    return path


def _model_inputs(args, flag: str = "--model") -> Dict[str, Any]:
    """The files a command reads for its model: the checkpoint and its ledger (given, or the default one)."""
    from ..ledger import ledger_path

    model = getattr(args, flag.lstrip("-").replace("-", "_"))
    default = ledger_path(model) if model else None
    return {flag: model, "--ledger": getattr(args, "ledger", None),
            "the model's ledger": default if default is not None and default.exists() else None}


@contextmanager
def _writing(outputs: Dict[str, Any], inputs: Dict[str, Any]):
    """Check every output against every input before any work, then hold the outputs' locks."""
    check_outputs(outputs, inputs)
    with output_lock(outputs.values()):
        yield


def _auto_augment(splits) -> Dict[str, Any]:
    rgb = splits.input_shape[0] == 3 and splits.input_shape[1] >= 16
    return {"augment": rgb, "flip": rgb and splits.name != "svhn"}


def _with_provenance(report: Dict[str, Any]) -> Dict[str, Any]:
    """A JSON output with what made it: the command, versions and machine (as the benchmarks record)."""
    from .evaluate import provenance

    return {**report, "provenance": provenance()}


# --- commands -----------------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from ..checkpoint import base_meta, save_checkpoint
    from ..device import finish_distributed, init_distributed, resolve_device
    from ..io import ids_hash
    from ..models import create_model
    from ..train import TrainConfig, accuracy, train

    device = resolve_device(args.device)
    splits = _splits_for(args, val_frac=args.val_frac)
    c, h, _ = splits.input_shape
    model_args = {**_settings(args.model_arg), "in_channels": c, "num_classes": splits.num_classes, "image_size": h}
    aug = _auto_augment(splits)
    if args.augment is not None:
        aug["augment"] = args.augment
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, **aug)
    progress_file = _progress_file(args)
    rank = init_distributed(device)
    # under torchrun every process runs this command; only the first checks, locks and writes the outputs
    writing = _writing({"--out": args.out, "--checkpoint": progress_file}, {}) if rank == 0 else nullcontext()
    with writing:
        torch.manual_seed(args.seed)
        model = create_model(args.model, **model_args).to(device)
        identity = {"dataset": splits.name, "arch": args.model, "arch_args": json.loads(json.dumps(model.arch_args)),
                    "train_ids_hash": ids_hash(splits.train.ids)}
        history = train(model, splits.train, cfg, desc=f"train {args.model}", progress_file=progress_file,
                        progress_identity=identity)
        seconds = sum(history["segment_seconds"])
        meta = {**base_meta(model, splits, splits.train.ids), "kind": "original", "seed": args.seed,
                "holdout": {"frac": args.val_frac, "seed": 0}, "train_config": asdict(cfg),
                "times": {"online_seconds": seconds, "segments": len(history["segment_seconds"])},
                "forgotten_count": 0, "lineage": []}
        finish_distributed()
        if rank != 0:   # under torchrun only the first process writes
            return 0
        digest = save_checkpoint(args.out, model, meta)
        progress_file.unlink(missing_ok=True)
    log.info("Trained %s on %d %s images in %.1f s: train acc %.3f, test acc %.3f -> %s (hash %s)", args.model,
             len(splits.train), splits.name, seconds, accuracy(model, splits.train), accuracy(model, splits.test),
             args.out, digest)
    return 0


def cmd_condense(args) -> int:
    from condense import get_condenser

    from ..device import resolve_device
    from ..io import ids_hash

    model, meta = None, None
    if args.model:
        model, meta, splits, requests = _load_model(args, ledger=args.ledger)
        if len(requests.forgotten):
            splits.train = splits.train.without(requests.forgotten)
    else:
        splits = _splits_for(args, val_frac=args.val_frac)
    device = resolve_device(args.device)
    condenser = get_condenser(args.method, ipc=args.ipc, seed=args.seed, **_settings(args.set)).to(device)
    progress_file = _progress_file(args)
    plots = [Path(args.out).with_suffix(f".{args.plot_format}"),
             Path(args.out).with_name(Path(args.out).stem + f"-loss.{args.plot_format}")]
    outputs = {"--out": args.out, "--checkpoint": progress_file, **({"the grid": plots[0], "the loss curve": plots[1]}
                                                                    if args.plots else {})}
    with _writing(outputs, _model_inputs(args) if args.model else {}):
        condenser.resumable(progress_file, every=args.checkpoint_every,
                            identity={"dataset": splits.name, "train_ids_hash": ids_hash(splits.train.ids),
                                      "model_hash": meta["hash"] if meta else ""})
        cset = condenser.condense(splits, model, meta["hash"] if meta else "")
        cset.source["holdout"] = (meta or {}).get("holdout", {"frac": args.val_frac, "seed": 0})
        if args.eval_runs:
            from condense.protocol import evaluate_condensed

            cset.state["evaluation"] = result = evaluate_condensed(cset, splits, runs=args.eval_runs,
                                                                   protocol=args.protocol, seed=args.seed, device=device)
            log.info("Test accuracy of fresh %s trained on the condensed set (%s, %d runs): %.2f ± %.2f %%",
                     result["model"]["arch"], result["protocol"], result["runs"], 100 * result["mean"],
                     100 * result["std"])
        cset.save(args.out)
        progress_file.unlink(missing_ok=True)
        log.info("Condensed %d training images into %d with '%s' in %.1f s -> %s", len(splits.train), len(cset),
                 args.method, cset.timings["condense_seconds"], args.out)
        if args.plots:
            from ..plots import image_grid, loss_curve

            image_grid(cset.images, cset.labels, splits.classes, splits.mean, splits.std, plots[0],
                       per_class=min(10, args.ipc), title=f"{args.method}, {args.ipc} per class")
            log.info("Image grid -> %s", plots[0])
            if cset.state.get("loss_history"):
                loss_curve(cset.state["loss_history"], plots[1], title=f"{args.method}, {args.ipc} per class")
                log.info("Loss curve -> %s", plots[1])
    return 0


def cmd_forget(args) -> int:
    from unlearn import get_unlearner

    from ..device import resolve_device
    from ..forget import ForgetRequestError, resolve_request
    from ..io import commit_together
    from ..ledger import ledger_path
    from .request import answer_request, check_condensed

    model, meta, splits, requests = _load_model(args, ledger=args.ledger)
    earlier = requests.forgotten
    remaining = replace(splits, train=splits.train.without(earlier)) if len(earlier) else splits
    if args.ids:
        from ..forget import parse_ids_file

        named = parse_ids_file(args.ids, splits.num_ids)
        again = torch.isin(named, torch.cat([earlier, requests.withdrawn]))
        if again.any():
            raise ForgetRequestError(f"{args.ids}: id {int(named[again][0])} was already removed by an earlier "
                                     f"request answered by {args.model}.")
    request = resolve_request(remaining, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class,
                              seed=args.forget_seed)
    condensed = None
    if args.condensed:
        from condense import load_condensed

        condensed = load_condensed(args.condensed)
        condensed.check_fits(splits, args.condensed)
        check_condensed(condensed, meta, requests.forgotten, name=args.condensed)
    settings = _settings(args.set)
    get_unlearner(args.method, **settings)     # unknown settings are refused before any output is touched
    ledger_out = Path(args.ledger_out) if args.ledger_out else ledger_path(args.out)
    inputs = {**_model_inputs(args), "--condensed": args.condensed, "--ids": args.ids}
    outputs = {"--out": args.out, "--condensed-out": args.condensed_out, "the ledger (--ledger-out)": ledger_out}
    with _writing(outputs, inputs):
        device = resolve_device(args.device)
        model = model.to(device)
        answer = answer_request(model, meta, splits, request.forget, method=args.method, settings=settings,
                                seed=args.seed, ledger=requests, withdrawn=request.withdrawn, condensed=condensed)
        writes = [(Path(args.out), lambda fh: torch.save(answer.payload, fh)),
                  (ledger_out, lambda fh: fh.write(answer.ledger.to_json().encode()))]
        if answer.refreshed is not None and args.condensed_out:
            writes.append((Path(args.condensed_out), lambda fh: torch.save(answer.refreshed.payload(), fh)))
        commit_together(writes)
    if len(request.withdrawn):
        log.info("%d of the ids were held out and never trained on; they are removed from the held-out split for "
                 "this and every later request (recorded in %s).", len(request.withdrawn), ledger_out)
    if condensed is not None and not args.condensed_out and len(request.forget):
        log.warning("Warning: %s still summarises the forgotten ids; pass --condensed-out to write the refreshed "
                    "set, and keep that one instead.", args.condensed)
    log.info("Forgot %d samples with '%s' in %.2f s -> %s (hash %s); request ledger -> %s", len(request.forget),
             args.method, answer.times["online_seconds"], args.out, answer.hash, ledger_out)
    return 0


def _load_reference(args, path: str, splits, meta: Dict[str, Any], forget_ids: torch.Tensor):
    """The retrained model a report compares with, checked to answer this very request: the same dataset,
    held-out split and forgotten ids (read from its ledger)."""
    from ..checkpoint import check_fits, load_checkpoint
    from ..ledger import read_ledger

    reference, ref_meta = load_checkpoint(path)
    check_fits(ref_meta, splits, path)
    if ref_meta.get("holdout") != meta.get("holdout"):
        raise ValueError(f"--reference {path} was trained with held-out split {ref_meta.get('holdout')}, but the model "
                         f"with {meta.get('holdout')}; retrain from the same original.")
    forgot = read_ledger(ref_meta, path, splits.num_ids).forgotten
    if not torch.equal(forgot, torch.sort(torch.as_tensor(forget_ids)).values):
        raise ValueError(f"--reference {path} was retrained without {len(forgot)} ids that are not this request's "
                         f"{len(forget_ids)}; pass the model retrained for this request (dcu forget --method retrain).")
    return reference, ref_meta


def cmd_evaluate(args) -> int:
    from ..device import resolve_device
    from ..forget import resolve
    from .evaluate import evaluate

    model, meta, splits, requests = _load_model(args, ledger=args.ledger)
    if args.ids or args.forget_frac is not None or args.forget_class is not None:
        forget_ids = resolve(splits, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class, seed=args.forget_seed)
    elif len(requests.forgotten):
        forget_ids = requests.forgotten
    else:
        raise ValueError("Name the forget request to evaluate: --forget FILE, --forget-frac F or --forget-class C.")
    reference, reference_meta = (None, None)
    if args.reference:
        reference, reference_meta = _load_reference(args, args.reference, splits, meta, forget_ids)
    if args.shadows:
        _check_store(args.shadows, splits)
    attacks = [a for a in args.attacks.split(",") if a]
    out = Path(args.out)
    plots = {"the bar chart": out.with_suffix(f".{args.plot_format}"),
             "the ROC plot": out.with_name(out.stem + f"-roc.{args.plot_format}")}
    with _writing({"--out": args.out, **(plots if args.plots else {})},
                  {**_model_inputs(args), "--reference": args.reference, "--forget": args.ids,
                   "--shadows": args.shadows, **({"the reference's ledger": _model_inputs(args, "--reference")
                                                  ["the model's ledger"]} if args.reference else {})}):
        model = model.to(resolve_device(args.device))
        report = evaluate(model, splits, forget_ids, meta=meta, reference=reference, reference_meta=reference_meta,
                          attacks=attacks, seed=args.seed, shadows=args.shadows,
                          attack_settings={a: _settings(getattr(args, "set", [])) for a in attacks
                                           if getattr(args, "set", [])})
        _write_report(args, report, splits, meta, reference, plots)
    return 0


def _check_store(path: str, splits) -> None:
    """Refuse a shadow store made for another dataset before any attack reads it."""
    from inversion_attacks.shadow import ShadowStore

    store = ShadowStore(path)
    if store.manifest.get("dataset") != splits.name or store.manifest.get("num_ids") != splits.num_ids:
        raise ValueError(f"--shadows {path} was made for {store.manifest.get('dataset')} with "
                         f"{store.manifest.get('num_ids')} ids, not {splits.name} with {splits.num_ids}.")


def _write_report(args, report: Dict[str, Any], splits, meta: Dict[str, Any], reference, plots: Dict[str, Path]) -> None:
    from ..io import atomic_write_json

    atomic_write_json(_with_provenance(report), args.out)
    line = (f"retain {report['retain_acc']:.3f}  forget {report['forget_acc']:.3f}  test {report['test_acc']:.3f}  "
            f"MIA(loss_lr) {report['mia']['loss_lr']['headline']:.3f}" if "loss_lr" in report["mia"] else "")
    log.info("%s -> %s", line, args.out)
    for name, result in report["mia"].items():
        log.info("  %s: %s %.4f, AUC %.3f, TPR@1%%FPR %.3f, TPR@0.1%%FPR %.3f", name, result["headline_name"],
                 result["headline"], result["auc"], result["tpr_at_1fpr"], result["tpr_at_01fpr"])
    if args.plots:
        from ..plots import comparison_bars, dataset_label

        rows = {meta.get("method") or "model": _bar_row(report)}
        if reference is not None:
            rows = {"retrain": _bar_row(report["reference"]), **rows}
        png = plots["the bar chart"]
        comparison_bars(rows, ["retain_acc", "forget_acc", "test_acc", "mia"], png, title=dataset_label(splits.name))
        log.info("Bar chart -> %s", png)
        from ..plots import roc_curves

        curves = {name: result["roc"] for name, result in report["mia"].items() if result.get("roc")}
        if reference is not None:
            curves.update({f"{name} (reference)": result["roc"] for name, result in report["reference"]["mia"].items()
                           if result.get("roc")})
        roc_png = plots["the ROC plot"]
        roc_curves(curves, roc_png, title=f"membership of the forget set, {dataset_label(splits.name)}")
        log.info("ROC curves -> %s", roc_png)


def _bar_row(metrics: Dict[str, Any]) -> Dict[str, float]:
    row = {k: metrics[k] for k in ("retain_acc", "forget_acc", "test_acc")}
    if "loss_lr" in metrics["mia"]:
        row["mia"] = metrics["mia"]["loss_lr"]["headline"]
    return row


def cmd_shadows(args) -> int:
    from inversion_attacks.shadow import ShadowStore

    part, parts = parse_shard(args.shard)
    _, meta, splits, _ = _load_model(args)
    check_outputs({"--out": Path(args.out) / "manifest.json"}, {"--model": args.model})
    store = ShadowStore.create(args.out, splits, meta, count=args.count, seed=args.seed, keep=args.keep)
    trained = store.fill(splits, shard=(part, parts))
    log.info("Trained %d shadow model(s) of shard %d/%d; %s now holds %d of %d.", len(trained), part, parts, args.out,
             len(store.done()), args.count)
    return 0


def cmd_reference(args) -> int:
    from inversion_attacks.shadow import ShadowStore

    from .reference import reference_behaviour, write_reference

    check_outputs({"--out": args.out}, {"--model": args.model, "--shadows": args.shadows})
    model, meta, splits, _ = _load_model(args)
    store = ShadowStore.open_for(args.shadows, splits, meta)
    count = store.manifest["count"]
    if len(store.done()) < count:
        raise ValueError(f"{args.shadows} holds {len(store.done())} of its {count} shadow models; finish it "
                         f"with `dcu shadows` (same --count and --out) first.")
    reference = reference_behaviour(store, splits, model)
    write_reference(reference, args.out)
    log.info("Wrote %s: per-id OUT behaviour from %d shadows (each id OUT in at least %d), offset %.3f. Use it with "
             "`dcu forget --method dcu --set reference=%s`.", args.out, reference["shadows"], reference["min_out"],
             reference["offset"], args.out)
    return 0


def cmd_attack(args) -> int:
    args.attacks, args.reference = args.attack, None
    return cmd_evaluate(args)


def cmd_invert(args) -> int:
    from inversion_attacks.inversion import (
        CondensiveConfig,
        InversionConfig,
        condensive_inversion,
        gradient_inversion,
        inversion_scores,
        unlearning_inversion,
    )

    from ..checkpoint import check_fits, load_checkpoint
    from ..io import atomic_write_json
    from ..models import create_model
    from ..seeds import derive
    from ..train import TrainConfig, train

    model, meta, splits, requests = _load_model(args, ledger=args.ledger)
    if splits.val is None or len(splits.val) == 0:
        raise ValueError(f"{args.model} has no held-out split: inversion is scored against held-out images.")
    out = Path(args.out)
    check_outputs({"--out": out, **({"the picture": out.with_suffix(f".{args.plot_format}")} if args.plots else {})},
                  {**_model_inputs(args), "--original": args.original, "--evaluator": args.evaluator})
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
        evaluator_seed = derive(args.seed, "inversion evaluator")
        torch.manual_seed(evaluator_seed)
        evaluator = create_model("convnet", in_channels=c, num_classes=splits.num_classes, image_size=h, width=32,
                                 depth=2 if h < 16 else 3)
        train(evaluator, splits.val, TrainConfig(epochs=30, batch_size=64, lr=0.05, seed=evaluator_seed,
                                                  **_auto_augment(splits)), desc="evaluator")
    forget = unseen = None
    if len(requests.forgotten):
        forget = splits.train.subset(requests.forgotten)
        unseen = splits.test
    report = {"method": args.method, "model": {"path": args.model, "hash": meta.get("hash")},
              "evaluator": args.evaluator or "convnet-32 trained on the held-out split",
              "scores": inversion_scores(inverted, evaluator, splits.val, forget=forget, unseen=unseen)}
    atomic_write_json(_with_provenance(report), args.out)
    log.info("Inverted %d images with '%s': evaluator accuracy %.3f, nearest SSIM %.3f, PSNR %.1f dB -> %s",
             len(inverted), args.method, report["scores"]["evaluator_accuracy"], report["scores"]["nearest_ssim"],
             report["scores"]["nearest_psnr"], args.out)
    if args.plots:
        from ..plots import inversion_pairs

        nearest = []
        for image, label in zip(inverted.images, inverted.labels):
            pool = splits.val.images[splits.val.labels == label]
            nearest.append(pool[(pool - image).pow(2).flatten(1).mean(1).argmin()])
        png = Path(args.out).with_suffix(f".{args.plot_format}")
        inversion_pairs(inverted.images, torch.stack(nearest), inverted.labels, splits.classes, splits.mean,
                        splits.std, png, title=f"{args.method}: inverted (top), nearest held-out image (bottom)")
        log.info("Inverted images beside their nearest real ones -> %s", png)
    return 0


def cmd_tune(args) -> int:
    from ..forget import resolve
    from ..io import atomic_write_json
    from ..train import TrainConfig
    from .tune import tune

    model, meta, splits, _ = _load_model(args, ledger=args.ledger)
    forget_ids = resolve(splits, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class, seed=args.forget_seed)
    reference = None
    if args.reference:
        reference, _ = _load_reference(args, args.reference, splits, meta, forget_ids)
    condensed = None
    if args.condensed:
        from condense import load_condensed

        condensed = load_condensed(args.condensed)
        condensed.check_fits(splits, args.condensed)
    check_outputs({"--out": args.out}, {**_model_inputs(args), "--reference": args.reference,
                                        "--condensed": args.condensed, "--ids": args.ids})
    out = Path(args.out)

    def write(partial):
        atomic_write_json(_with_provenance({**partial, "model": {"path": args.model, "hash": meta.get("hash")}, "finished": False}), out)

    resume = None
    if args.resume:
        if not out.exists():
            raise FileNotFoundError(f"--resume: {out} does not exist; there is no stopped search to continue.")
        resume = json.loads(out.read_text())
    result = tune(args.method, model, splits, forget_ids, train_config=TrainConfig(**meta["train_config"]),
                  trials=args.trials, seed=args.seed, fixed=_settings(args.set), reference=reference,
                  condensed=condensed, resume=resume, on_trial=write, forget_bound=args.forget_bound)
    atomic_write_json(_with_provenance({**result, "model": {"path": args.model, "hash": meta.get("hash")}, "finished": True}), out)
    log.info("Tuned '%s' over %d trials: %s (objective sum %.4f) -> %s", args.method, args.trials,
             result["best"]["settings"], result["best"]["sum"], out)
    return 0


def history(meta: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The chain of steps from the original to this model, oldest first."""
    from .request import LINEAGE_KEYS

    return list(meta.get("lineage", [])) + [{k: meta.get(k) for k in LINEAGE_KEYS}]


def cmd_history(args) -> int:
    from ..checkpoint import load_checkpoint

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

    from ..data import list_datasets
    from ..models import list_models
    from ..presets import PRESETS

    kinds = {"datasets": list_datasets(), "models": list_models(), "condensation": condense.list_condensers(),
             "unlearning": unlearn.list_unlearners(), "attacks": inversion_attacks.list_attacks(),
             "presets": sorted(PRESETS)}
    for kind, names in kinds.items():
        if args.kind in (None, kind):
            print(f"{kind}: {', '.join(names)}")
    return 0


def describe(name: str) -> Dict[str, Any]:
    """What ``dcu info NAME`` shows: the method's kind, its docstring, settings (type, default) and search space."""
    import dataclasses
    import inspect
    import typing

    import condense
    import inversion_attacks
    import unlearn

    from ..models import MODELS

    for kind, registry in (("unlearning method", unlearn.UNLEARNERS), ("condensation method", condense.CONDENSERS),
                           ("attack", inversion_attacks.ATTACKS), ("model", MODELS)):
        if name not in registry:
            continue
        obj = registry.get(name)
        info: Dict[str, Any] = {"name": name, "kind": kind, "module": getattr(obj, "__module__", ""),
                                "doc": inspect.getdoc(inspect.getmodule(obj)) or inspect.getdoc(obj) or ""}
        config = getattr(obj, "Config", None)
        if config is not None and dataclasses.is_dataclass(config):
            hints = typing.get_type_hints(config)
            info["settings"] = {f.name: {"type": getattr(hints[f.name], "__name__", str(hints[f.name])),
                                         "default": f.default if f.default is not dataclasses.MISSING
                                         else f.default_factory()}
                                for f in dataclasses.fields(config) if "Callable" not in str(hints[f.name])}
        else:
            info["settings"] = {p.name: {"type": type(p.default).__name__, "default": p.default}
                                for p in inspect.signature(obj).parameters.values() if p.kind is p.KEYWORD_ONLY}
        if kind == "unlearning method":
            info.update(search_space=obj.search_space, requires_condensed=obj.requires_condensed,
                        uses_retain=obj.uses_retain)
        if kind == "condensation method":
            info["needs_model"] = bool(getattr(obj, "needs_model", False))
        return info
    raise ValueError(f"'{name}' is no unlearning method, condensation method, attack or model; `dcu list` names them.")


def cmd_info(args) -> int:
    info = describe(args.name)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['name']} ({info['kind']}, {info['module']})\n\n{info['doc']}\n\nsettings (--set KEY=VALUE):")
    for key, s in info["settings"].items():
        print(f"  {key:<22} {s['type']:<8} default {s['default']!r}")
    if info.get("search_space"):
        print("\nsearch space (dcu tune):")
        for key, space in info["search_space"].items():
            print(f"  {key:<22} {space}")
    if "requires_condensed" in info:
        print(f"\ncondensed set: {'required' if info['requires_condensed'] else 'optional, in place of the retain set' if info['uses_retain'] else 'unused (looks at the forget set alone)'}")
    return 0


def cmd_demo(args) -> int:
    from ..io import atomic_write_json
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
        atomic_write_json(_with_provenance(result), args.out)
    return 0


LEDGER_HELP = "the model's request ledger (default MODEL.ledger.json beside --model)"


def _unlearned_checkpoint(args, path: str, original_meta: Dict[str, Any], splits):
    """(path, model, meta, forgotten ids or None) of a user's unlearned checkpoint, checked to come from the
    audited original: same architecture and, where the checkpoint records it, that original as its parent."""
    from ..checkpoint import load_checkpoint
    from ..ledger import read_ledger

    model, meta = load_checkpoint(path)
    def network(m):   # a class request may add concept erasers (arch_args["erase_ranks"]) to the same network
        return m.get("arch"), {k: v for k, v in (m.get("arch_args") or {}).items() if k != "erase_ranks"}

    if network(meta) != network(original_meta):
        raise ValueError(f"{path} is a {meta.get('arch')} {meta.get('arch_args')}, but --model {args.model} is a "
                         f"{original_meta.get('arch')} {original_meta.get('arch_args')}.")
    if meta.get("parent_hash") is None:
        log.warning("Warning: %s records no parent model; it is audited as if unlearned from %s.", path, args.model)
        return path, model, meta, None
    if meta["parent_hash"] != original_meta.get("hash"):
        raise ValueError(f"{path} was unlearned from model {clip(meta['parent_hash'], 20)}, not from --model "
                         f"{args.model} ({clip(original_meta.get('hash'), 20)}); audit it against its own original.")
    return path, model, meta, torch.sort(read_ledger(meta, path, splits.num_ids).forgotten).values


def cmd_audit(args) -> int:
    """Build what is missing of the ensembles for this shard, then (once the store is complete) score them."""
    from unlearn import get_unlearner

    from ..forget import ForgetRequestError, resolve
    from ..io import atomic_write_json
    from ..presets import method_settings
    from .audit import EnsembleStore, add_checkpoints, fill, scorecard, shared_condensed
    from .evaluate import provenance

    model, meta, splits, requests = _load_model(args, ledger=args.ledger)
    if len(requests.forgotten):
        raise ValueError(f"{args.model} already answered forget requests; audit from the original it came from.")
    part, parts = parse_shard(args.shard)
    yours = [_unlearned_checkpoint(args, path, meta, splits) for path in args.unlearned or []]
    if yours and args.ids is None and args.forget_frac is None and args.forget_class is None:
        forget_ids = yours[0][3]   # the request the checkpoints answered, from their ledger
    else:
        forget_ids = resolve(splits, ids_file=args.ids, frac=args.forget_frac, cls=args.forget_class,
                             seed=args.forget_seed)
    for path, _, _, answered in yours:
        if answered is not None and not torch.equal(answered, forget_ids):
            raise ForgetRequestError(f"{path} forgot {len(answered)} ids, not the {len(forget_ids)} of this audit's "
                                     "request; audit it with the request it answered (its ledger holds the ids).")
    methods = [m for m in (args.methods or ("" if yours else "dcu,finetune")).split(",") if m and m != "retrain"]
    if yours and (args.label in methods or not re.fullmatch(r"[A-Za-z0-9_.@-]+", args.label)):
        raise ValueError(f"--label '{clip(args.label, 40)}' must be a plain name (letters, digits, _ . @ -) that is "
                         "not also in --methods.")
    models = max(args.models, len(yours))   # the retrain halves must be as large as the user's ensemble
    out = Path(args.out)
    store_dir = Path(args.store) if args.store else out.with_name(out.stem + "-ensembles")
    figure = out.with_suffix(f".{args.plot_format}")
    condensed = None
    if args.condensed:
        from condense import load_condensed

        condensed = load_condensed(args.condensed)
        condensed.check_fits(splits, args.condensed)
    with _writing({"--out": out, "the store's manifest": store_dir / "manifest.json",
                   **({"the figure": figure} if args.plots else {})},
                  {**_model_inputs(args), "--condensed": args.condensed, "--ids": args.ids,
                   **{f"--unlearned {path}": path for path in args.unlearned or []}}):
        store = EnsembleStore.create(store_dir, splits, meta, forget_ids, seed=args.seed)
        if condensed is None and any(get_unlearner(m).requires_condensed for m in methods):
            condensed = shared_condensed(store_dir / "condensed.pt", splits, model, meta, ipc=args.ipc, seed=args.seed)
        fill(store, splits, model, meta, methods=methods, models=models, retrains=2 * models,
             originals=args.originals, condensed=condensed, settings=method_settings(args.set), shard=(part, parts))
        add_checkpoints(store, splits, args.label, [(path, m, mt) for path, m, mt, _ in yours], shard=(part, parts))
        needed = {"retrain": 2 * models, **{m: models for m in methods}, **({args.label: len(yours)} if yours else {})}
        missing = [m for m, count in needed.items()
                   if len(store.seeds("retrain" if m == "retrain" else "unlearn", m)) < count]
        if missing:
            log.info("Shard %d/%d done; the store %s still lacks models of %s (other shards).", part, parts, store_dir,
                     ", ".join(missing))
            return 0
        card = {**provenance(), **scorecard(store, splits, methods=methods + ([args.label] if yours else [])),
                "settings": method_settings(args.set), "forget_request": {"count": len(forget_ids)},
                **({"yours": {"label": args.label, "checkpoints": [str(path) for path, *_ in yours]}} if yours else {})}
        atomic_write_json(_with_provenance(card), out)
        if args.plots:
            from ..plots import audit_figure, dataset_label

            audit_figure(card, figure, title=f"{dataset_label(splits.name)}: {len(forget_ids)} forget examples, "
                                             f"{card['models_per_ensemble']} models per ensemble")
    for name, row in card["rows"].items():
        log.info("%-32s forgetting score %.3f (F %.3f)  U-LiRA AUC %.3f  KLoM forget %.2f  retain %.3f  test %.3f",
                 name, row["forgetting_score"], row["forgetting_quality"], row["ulira"]["auc"], row["klom"]["forget"],
                 row["retain_acc"], row["test_acc"])
    log.info("Scorecard -> %s", out)
    return 0


def cmd_stores(args) -> int:
    """Which stores dcu keeps still hold the ids a ledger removed: condensed sets that summarise them, shadow
    stores whose models trained on them (a model trained on a sample is a copy of it for an attacker)."""
    from condense import load_condensed
    from inversion_attacks.shadow import ShadowStore

    from ..ledger import load_ledger

    ledger = load_ledger(args.ledger)
    deleted = torch.cat([ledger.forgotten, ledger.withdrawn]).unique()
    report: Dict[str, Any] = {"ledger": args.ledger, "deleted_ids": len(deleted), "condensed": {}, "shadows": {}}
    for path in args.condensed:
        cset = load_condensed(path)
        report["condensed"][path] = {"holds": int(torch.isin(cset.members, deleted).sum())}
    for path in args.shadows:
        store = ShadowStore(path)
        trained = store.trained_on(deleted)
        entry = {"models_trained_on_deleted_ids": sorted(trained), "of": len(store.done())}
        if args.prune and trained:
            entry["pruned"] = store.prune(deleted)
        report["shadows"][path] = entry
    print(json.dumps(report, indent=2))
    return 0


def cmd_export(args) -> int:
    """Plain weights for sharing: safetensors with the architecture and normalisation, and nothing of the
    requests the model answered (no ids, counts, digests or lineage)."""
    from safetensors.torch import save as safetensors_bytes

    from ..checkpoint import load_checkpoint
    from ..io import _atomic

    model, meta = load_checkpoint(args.model)
    check_outputs({"--out": args.out}, _model_inputs(args, "model"))
    keep = ("arch", "arch_args", "num_classes", "classes", "input_shape", "mean", "std", "dataset")
    header = {k: json.dumps(meta[k]) for k in keep if k in meta}
    header["format"] = "dcu-export"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    data = safetensors_bytes(state, metadata=header)
    _atomic(args.out, lambda fh: fh.write(data))
    log.info("Exported %s (%s) -> %s, with no request data", args.model, meta["arch"], args.out)
    return 0


def cmd_import(args) -> int:
    """A plain state dict trained outside dcu, made a dcu checkpoint with the metadata the user gives: the
    architecture, the dataset and held-out split it was trained with, and the schedule retraining should use."""
    from ..checkpoint import base_meta, save_checkpoint
    from ..io import ArtifactError, safe_load
    from ..models import create_model
    from ..train import TrainConfig

    splits = _splits_for(args, val_frac=args.val_frac)
    c, h, _ = splits.input_shape
    model = create_model(args.model, **{**_settings(args.model_arg), "in_channels": c,
                                        "num_classes": splits.num_classes, "image_size": h})
    if str(args.weights).endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            state = load_file(args.weights)
        except Exception as err:   # a damaged or foreign file: one line, not a traceback
            raise ArtifactError(f"{args.weights} is not a readable safetensors file ({clip(str(err))}).") from None
    else:
        state = safe_load(args.weights, what="state dict")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ArtifactError(f"{args.weights} is not a state dict (a mapping of parameter names to tensors).")
    if all(k.startswith("module.") for k in state):       # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks weight '{missing[0]}'" if missing else f"has weight '{clip(extra[0], 60)}' that it does not have"
        raise ArtifactError(f"{args.weights} does not fit a {args.model} {model.arch_args}: it {what}; check --model "
                            "and --model-arg.")
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise ArtifactError(f"{args.weights}: weight '{key}' is {tuple(state[key].shape)}, a {args.model} "
                                f"{model.arch_args} has {tuple(value.shape)}; check --model-arg.")
    model.load_state_dict(state)
    aug = _auto_augment(splits)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, **aug)
    meta = {**base_meta(model, splits, splits.train.ids), "kind": "imported", "seed": args.seed,
            "holdout": {"frac": args.val_frac, "seed": 0}, "train_config": asdict(cfg), "times": {},
            "forgotten_count": 0, "lineage": [], "imported_from": Path(args.weights).name}
    with _writing({"--out": args.out}, {"weights": args.weights}):
        digest = save_checkpoint(args.out, model, meta)
    from ..train import accuracy

    log.info("Imported %s as a %s trained on %s (%d training images, %d held out): test acc %.3f -> %s (hash %s)",
             args.weights, args.model, splits.name, len(splits.train), len(splits.val) if splits.val is not None else 0,
             accuracy(model, splits.test), args.out, digest)
    return 0


# --- parser -------------------------------------------------------------------------------------------------

def _add_plot_args(p: argparse.ArgumentParser, what: str = "also write the figures") -> None:
    p.add_argument("--plots", action="store_true", help=what)
    p.add_argument("--plot-format", choices=["png", "pdf", "svg"], default="png", help="the figures' format")


def _add_schedule_args(p: argparse.ArgumentParser, title: str) -> None:
    group = p.add_argument_group(title)
    group.add_argument("--epochs", type=POSITIVE, default=30)
    group.add_argument("--batch-size", type=POSITIVE, default=128)
    group.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    group.add_argument("--lr", type=_number(float, 0.0, open_low=True), default=0.05, help="peak learning rate")
    group.add_argument("--weight-decay", type=_number(float, 0.0), default=5e-4)
    group.add_argument("--schedule", choices=["onecycle", "cosine", "step", "constant"], default="onecycle")


class _HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == [] or default is argparse.SUPPRESS
                or "default" in text or action.option_strings == []
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    """An argument error is one line naming the fault (and exit status 2), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dcu", description="Machine unlearning driven by dataset condensation.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dcu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpWithDefaults)
        p.add_argument("--quiet", action="store_true", help="no progress bars and no log lines but warnings")
        p.add_argument("--threads", type=POSITIVE, default=None,
                       help="CPU threads for torch (default: $OMP_NUM_THREADS, else the cores this process may use)")
        p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import MODULE first (it registers your own models, datasets or methods; repeatable)")
        return p

    p = command("train", "Train the original model on a dataset's training split (minus a held-out validation split).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="architecture: convnet, mlp, resnet18, vgg11 (dcu list models)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="e.g. width=64 (repeatable)")
    _add_schedule_args(p, "the training schedule")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="flip + 4-pixel crop (default: on for RGB images of 16 px and more)")
    p.add_argument("--val-frac", type=FRACTION, default=0.1,
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
    p.add_argument("--ipc", type=POSITIVE, default=10, help="images per class")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting, e.g. iterations=500")
    p.add_argument("--val-frac", type=FRACTION, default=0.1, help="held-out fraction when no --model gives it")
    p.add_argument("--seed", type=int, default=0)
    _add_plot_args(p, "also write a grid of the synthetic images and the loss curve")
    p.add_argument("--eval-runs", type=NON_NEGATIVE, default=0, metavar="N",
                   help="train N fresh networks on the condensed set and report test accuracy mean ± std")
    p.add_argument("--protocol", default="dc-300ep", help="evaluation protocol: dc-300ep (DC/DSA papers'), dc-1000ep (DM paper's), "
                                                        "dc-cpu, dc-cpu-w64, ncfm-4000ep / ncfm-2000ep (NCFM's at IPC 10 / 50), "
                                                        "ncfm-1000ep or ncfm-250ep")
    p.add_argument("--checkpoint", default=None, help="progress checkpoint (default OUT with suffix .progress.pt)")
    p.add_argument("--checkpoint-every", type=POSITIVE, default=50, metavar="N", help="iterations between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the progress checkpoint")
    p.add_argument("--device", default="auto", help="where dc, dsa, dm and the evaluation run: auto, cpu, cuda or cuda:N")
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_condense)

    p = command("forget", "Answer a forget request: write an unlearned model.")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the model to unlearn from (an original or an unlearned model)")
    p.add_argument("--condensed", default=None, help="condensed retain set (required by dcu)")
    p.add_argument("--condensed-out", default=None, help="write the refreshed condensed set here (for the next request)")
    p.add_argument("--ledger-out", default=None, help="where to write the request ledger (default OUT.ledger.json)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--method", default="dcu", help="unlearning method: dcu, retrain, finetune, salun, scrub, ... (dcu list unlearning)")
    _add_forget_args(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting, e.g. epochs=6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.add_argument("--out", required=True, help="the unlearned checkpoint to write (its ledger goes beside it)")
    p.set_defaults(func=cmd_forget)

    p = command("evaluate", "Evaluate a model against a forget request: accuracies, MIA, gaps to a reference.")
    _add_data_args(p)
    p.add_argument("--model", required=True)
    _add_forget_args(p)
    p.add_argument("--reference", default=None, help="the retrained model, for gaps and RTE")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--attacks", default="loss_lr", help="comma-separated attack names (dcu list attacks)")
    p.add_argument("--shadows", default=None, help="shadow-model store, for lira and rmia (dcu shadows)")
    p.add_argument("--seed", type=int, default=0)
    _add_plot_args(p, "also write a bar chart and the ROC curves beside the report")
    p.add_argument("--out", required=True, help="report.json")
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = command("shadows", "Train shadow models for the likelihood-ratio attacks (resumable; --shard i/n splits the work).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the target's original: its architecture and schedule are copied")
    p.add_argument("--count", type=_number(int, 2), default=16, help="shadow models in the store (each trains on a random --keep share of the pool)")
    p.add_argument("--keep", type=_number(float, 0, 1, open_low=True, open_high=True), default=0.5,
                   help="share of the pool each shadow trains on (default 0.5, LiRA's; more for a dcu reference)")
    p.add_argument("--shard", default="0/1", help="train only shadows k with k %% n == i (default 0/1: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the store's folder")
    p.set_defaults(func=cmd_shadows)

    p = command("reference", "Per-example reference targets for dcu from a full shadow store (offline, once per "
                             "original): `dcu forget --method dcu --set reference=FILE`.")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the original the store's shadows were made for")
    p.add_argument("--shadows", required=True, help="a shadow store made by `dcu shadows` (all its models trained)")
    p.add_argument("--out", required=True, help="the reference file to write")
    p.set_defaults(func=cmd_reference)

    p = command("attack", "Run one membership-inference attack on a model's forget set (JSON out, --plots for ROC).")
    _add_data_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--attack", required=True, help="loss_lr, svc_efficacy, entropy, lira, rmia, ulira (dcu list attacks)")
    p.add_argument("--shadows", default=None, help="shadow-model store (for lira, rmia, ulira)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an attack setting, e.g. online=false, or for ulira method=dcu and settings={\"epochs\": 10}")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    _add_forget_args(p)
    p.add_argument("--seed", type=int, default=0)
    _add_plot_args(p, "also write the log-log ROC curve")
    p.add_argument("--out", required=True, help="report.json")
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.set_defaults(func=cmd_attack)

    p = command("invert", "Model inversion with numeric scores (and --plots: inversions beside their nearest real images).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the model to invert (for unlearning_inversion: the unlearned one)")
    p.add_argument("--method", default="gradient", help="gradient, condensive or unlearning_inversion")
    p.add_argument("--original", default=None, help="the model before unlearning (unlearning_inversion)")
    p.add_argument("--evaluator", default=None, help="an independent classifier checkpoint (default: one trained "
                                                     "on the held-out split)")
    p.add_argument("--per-class", type=POSITIVE, default=4)
    p.add_argument("--steps", type=POSITIVE, default=300)
    p.add_argument("--seed", type=int, default=0)
    _add_plot_args(p)
    p.add_argument("--out", required=True, help="report.json")
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.set_defaults(func=cmd_invert)

    p = command("tune", "Search an unlearning method's settings (Optuna, multi-objective gaps to the retrained model).")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the trained original (its held-out split is the validation data)")
    p.add_argument("--method", required=True, help="the unlearning method to tune (dcu list unlearning)")
    _add_forget_args(p)
    p.add_argument("--trials", type=POSITIVE, default=20)
    p.add_argument("--reference", default=None, help="the model retrained for this request (retrained here if omitted)")
    p.add_argument("--condensed", default=None, help="condensed retain set, for methods that use one")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting held fixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="tune.json (rewritten after every trial)")
    p.add_argument("--resume", action="store_true", help="continue the stopped search recorded in --out")
    p.add_argument("--forget-bound", type=_number(float, 0.0), default=None,
                   help="choose the trial closest to retrain on retain + validation among those whose forget gap is "
                        "at most this (e.g. 0.02 for a whole class); default: the smallest sum of objectives")
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.set_defaults(func=cmd_tune)

    p = command("audit", "The per-example audit: ensembles of retrained and unlearned models scored per example "
                         "(the challenge's forgetting score, U-LiRA, KLoM) beside the retrain-vs-retrain ceiling.")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the original model the methods unlearn from")
    _add_forget_args(p)
    p.add_argument("--methods", default=None, help="comma-separated unlearning methods to audit (default: dcu,finetune; "
                                                   "none with --unlearned)")
    p.add_argument("--unlearned", nargs="+", metavar="FILE", default=None,
                   help="your own unlearned checkpoints of --model, one per seed of your method: audited as one more "
                        "row (their ledger gives the request when none is given)")
    p.add_argument("--label", default="yours", help="the row name of --unlearned")
    p.add_argument("--models", type=_number(int, 2), default=8, help="models per ensemble (retrain gets twice as many: "
                                                                    "two halves give the ceiling)")
    p.add_argument("--originals", type=NON_NEGATIVE, default=0,
                   help="also train this many originals from other seeds (the memorisation signal)")
    p.add_argument("--condensed", default=None, help="condensed retain set, for methods that use one (default: "
                                                     "fdm with --ipc, made once and kept in the store)")
    p.add_argument("--ipc", type=POSITIVE, default=10, help="images per class of that fdm set (default 10)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="a method setting")
    p.add_argument("--store", default=None, help="the ensemble store folder (default OUT-ensembles beside --out)")
    p.add_argument("--shard", default="0/1", help="build only models k with k %% n == i (default 0/1: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the retain and test samples the store queries")
    _add_plot_args(p, "also write the figure (ε histogram, U-LiRA ROC, KLoM)")
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    p.add_argument("--out", required=True, help="scorecard.json")
    p.set_defaults(func=cmd_audit)

    p = command("stores", "Report which condensed sets and shadow stores still hold ids a request ledger removed.")
    p.add_argument("--ledger", required=True, help="the request ledger of the latest unlearned model")
    p.add_argument("--condensed", action="append", default=[], metavar="FILE", help="a condensed set (repeatable)")
    p.add_argument("--shadows", action="append", default=[], metavar="DIR", help="a shadow store (repeatable)")
    p.add_argument("--prune", action="store_true",
                   help="delete the shadow models trained on those ids; `dcu shadows` then retrains them without")
    p.set_defaults(func=cmd_stores)

    p = command("import", "Make a dcu checkpoint of weights trained elsewhere (a state dict or safetensors file), "
                          "with the architecture, dataset and held-out split you name.")
    p.add_argument("weights", help="a .pt state dict (or {'state_dict': ...}) or a .safetensors file")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="the architecture the weights belong to (dcu list models)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="e.g. width=64 (repeatable)")
    p.add_argument("--val-frac", type=FRACTION, default=0.1,
                   help="the part of the training split the model never trained on (dcu's held-out split); 0 if it "
                        "trained on all of it")
    _add_schedule_args(p, "the schedule `retrain` and the methods that train use for this model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the dcu checkpoint to write")
    p.set_defaults(func=cmd_import)

    p = command("export", "Write a model's weights as safetensors for sharing, with no request data.")
    p.add_argument("model")
    p.add_argument("--out", required=True, help="weights.safetensors")
    p.set_defaults(func=cmd_export)

    p = command("info", "What a method, attack or model is: its paper, settings with types and defaults, search space.")
    p.add_argument("name", help="e.g. dcu, salun, fdm, lira, convnet (dcu list names them all)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=cmd_info)

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
    for command_parser in sub.choices.values():     # an option without help text still shows its default
        for action in command_parser._actions:
            if not action.help and action.option_strings and action.default is not None \
                    and action.default is not False and action.default != []:
                action.help = "(default: %(default)s)"
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from ..io import ArtifactError
    from ..progress import set_quiet

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:   # --help, --version, or a bad argument (already reported in one line)
        return int(stop.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    set_quiet(args.quiet)
    from ..device import set_threads

    set_threads(args.threads)
    import importlib

    for module in getattr(args, "imports", []):
        try:
            importlib.import_module(module)
        except ImportError as err:
            print(f"dcu {args.command}: error: --import {module}: {clip(str(err), 200)}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, ArtifactError, FloatingPointError, OutputError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"dcu {args.command}: error: {clip(str(message), 400)}", file=sys.stderr)
        return 2
    except OSError as err:   # a disk or permission failure while writing: one line, nothing half-written
        reason = "no space left on the device" if err.errno == 28 else (err.strerror or str(err))
        print(f"dcu {args.command}: error: {reason}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
