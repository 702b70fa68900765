"""GPU benchmark, one run of under 10 minutes when a GPU is lent (also runs on the CPU with --tiny):

    python benchmarks/gpu.py --device cuda                 # on the GPU machine
    python benchmarks/gpu.py --device cpu --tiny           # a smoke run anywhere

1. training throughput (images/s) of ConvNet-128 and ResNet-18 on 32x32 inputs through dcu's training loop
   (bf16 autocast and channels_last on a GPU), after a warm-up;
2. ``dm`` iterations/s at IPC 10 (ConvNet-128, 256 real images per class, DSA);
3. ``dcu`` against ``retrain`` on the ``cifar10-resnet18`` protocol's model and data shapes: an original
   ResNet-18 trained for ``--epochs``, then retraining and dcu (fdm condensation offline) on a random 10%
   request; CIFAR-10 from ``--data-root`` when it is there, otherwise random images and labels of CIFAR's
   shape (timings only; the JSON says which). ``--methods all`` runs every unlearning method there too, at
   its defaults, each on the model's device; a method not started within ``--budget-minutes`` (counted from
   the script's start) is listed under ``skipped``.
Writes ``benchmarks/results/gpu-<device>.json`` after each part.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

from dcu.data import DatasetSplits, ImageSet
from dcu.device import add_threads_argument, resolve_device, set_threads
from dcu.io import atomic_write_json
from dcu.models import create_model
from dcu.progress import set_quiet
from dcu.train import TrainConfig, accuracy, train
from dcu.workflows.evaluate import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_set(n: int, size: int = 32, classes: int = 10, seed: int = 0) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randn(n, 3, size, size, generator=gen), torch.randint(0, classes, (n,), generator=gen))


def throughput(arch: str, device, images: int, batch: int, epochs: int, **arch_args) -> dict:
    data = random_set(images)
    model = create_model(arch, in_channels=3, num_classes=10, image_size=32, **arch_args).to(device)
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=0.05, augment=True, seed=0)
    train(model, ImageSet(data.images[: 2 * batch], data.labels[: 2 * batch]), cfg)   # warm-up
    sync(device)
    start = time.perf_counter()
    train(model, data, TrainConfig(**{**cfg.__dict__, "epochs": epochs}))
    sync(device)
    seconds = time.perf_counter() - start
    return {"arch": arch, "arch_args": arch_args, "images_per_second": images * epochs / seconds, "seconds": seconds,
            "batch_size": batch, "images": images, "epochs": epochs}


def dm_speed(device, iterations: int, batch_real: int, width: int) -> dict:
    from condense import get_condenser

    data = random_set(10 * max(batch_real, 20), seed=1)
    data = ImageSet(data.images, torch.arange(10).repeat_interleave(len(data) // 10))
    splits = DatasetSplits(name="random", train=data, test=data, val=None, classes=[str(i) for i in range(10)],
                           mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    condenser = get_condenser("dm", ipc=10, iterations=2, batch_real=batch_real, net_width=width).to(device)
    condenser.condense(splits)                                                    # warm-up
    condenser = get_condenser("dm", ipc=10, iterations=iterations, batch_real=batch_real, net_width=width).to(device)
    sync(device)
    cset = condenser.condense(splits)
    seconds = cset.timings["condense_seconds"]
    return {"ipc": 10, "batch_real": batch_real, "net_width": width, "dsa": True, "iterations": iterations,
            "iterations_per_second": iterations / seconds, "seconds": seconds}


def dcu_vs_retrain(device, data_root, epochs: int, tiny: bool, methods=("retrain", "dcu"), deadline=None,
                   on_method=None) -> dict:
    from condense import get_condenser
    from dcu.data import load
    from dcu.forget import random_ids
    from unlearn import get_unlearner

    source = "cifar10"
    try:
        if tiny:
            raise FileNotFoundError
        splits = load("cifar10", data_root).holdout(0.1, seed=0)
    except (FileNotFoundError, ValueError):
        n = 500 if tiny else 50000
        full = random_set(n, seed=2)
        test = random_set(n // 5, seed=3)
        splits = DatasetSplits(name="random", train=full, test=test, val=None, classes=[str(i) for i in range(10)],
                               mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).holdout(0.1, seed=0)
        source = "random images of CIFAR-10's shape (timings only)"
    arch, arch_args = ("convnet", {"width": 32}) if tiny else ("resnet18", {})
    cfg = TrainConfig(epochs=epochs, batch_size=256, lr=0.1, schedule="cosine", weight_decay=5e-4, augment=True, seed=0)
    torch.manual_seed(0)
    original = create_model(arch, in_channels=3, num_classes=10, image_size=32, **arch_args).to(device)
    start = time.perf_counter()
    train(original, splits.train, cfg, desc="original")
    sync(device)
    original_seconds = time.perf_counter() - start
    forget_ids = random_ids(splits.train.ids, 0.1, 0)
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    start = time.perf_counter()
    cset = get_condenser("fdm", ipc=10 if tiny else 100, **({"steps": 10} if tiny else {})).to(device).condense(splits, original, "")
    sync(device)
    offline = time.perf_counter() - start
    out = {"data": source, "arch": arch, "epochs": epochs, "train_images": len(splits.train), "forget": len(forget),
           "original_seconds": original_seconds, "condense_offline_seconds": offline, "methods": {}, "skipped": []}
    for name in methods:
        if deadline is not None and time.perf_counter() > deadline:
            out["skipped"].append(name)
            continue
        unlearner = get_unlearner(name, train_config=cfg)
        result = unlearner.unlearn(original, retain, forget, condensed=cset if unlearner.requires_condensed else None,
                                   val=splits.val)
        model = result.model
        sync(device)
        out["methods"][name] = {"seconds": result.seconds, "forget_acc": accuracy(model, forget),
                                "retain_acc": accuracy(model, retain), "test_acc": accuracy(model, splits.test),
                                "device": str(next(model.parameters()).device)}
        if on_method is not None:
            on_method(out)
    if "retrain" in out["methods"]:
        for row in out["methods"].values():
            row["rte"] = out["methods"]["retrain"]["seconds"] / row["seconds"]
        if "dcu" in out["methods"]:
            out["rte"] = out["methods"]["dcu"]["rte"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="small sizes: a smoke run on any machine")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the original and of retraining")
    parser.add_argument("--methods", default="retrain,dcu",
                        help="unlearning methods of part 3, comma-separated, or 'all' (retrain and dcu first)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no method of part 3 after this many minutes from the script's start")
    parser.add_argument("--parts", default="throughput,dm,dcu_vs_retrain", help="which parts to run, comma-separated")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    from unlearn import list_unlearners

    names = list_unlearners()
    methods = ["retrain", "dcu"] + [m for m in names if m not in ("retrain", "dcu")] if args.methods == "all" \
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in names]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(names)}, or all")
    deadline = time.perf_counter() + 60 * args.budget_minutes if args.budget_minutes else None
    set_threads(args.threads)
    set_quiet(args.quiet)
    device = resolve_device(args.device)
    out = Path(args.out) if args.out else RESULTS / f"gpu-{device.type}{'-tiny' if args.tiny else ''}.json"
    result = {"benchmark": "gpu", "device": str(device), **provenance(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "tiny": args.tiny, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    images, batch, epochs = (64, 32, 1) if args.tiny else (20000, 256, 2)
    parts = {
        "throughput": lambda: [throughput("convnet", device, images, batch, epochs, width=128),
                               throughput("resnet18", device, images, batch, epochs)],
        "dm": lambda: dm_speed(device, iterations=3 if args.tiny else 200, batch_real=32 if args.tiny else 256,
                               width=32 if args.tiny else 128),
        "dcu_vs_retrain": lambda: dcu_vs_retrain(device, args.data_root, 1 if args.tiny else args.epochs, args.tiny,
                                                 methods, deadline,
                                                 lambda part: atomic_write_json({**result, "dcu_vs_retrain": part}, out)),
    }
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not chosen or any(p not in parts for p in chosen):
        parser.error(f"--parts takes some of {', '.join(parts)}. Got '{args.parts}'.")
    failed = 0
    for name, part in ((p, parts[p]) for p in chosen):   # one failing part (a lent GPU's minutes are few) must not lose the others
        try:
            result[name] = part()
            print(f"{name}: {summary(name, result[name])}", flush=True)
        except Exception as err:  # noqa: BLE001 - recorded in the JSON and the exit status
            failed += 1
            result.setdefault("errors", {})[name] = "".join(traceback.format_exception(err))
            print(f"{name} failed:\n{result['errors'][name]}", file=sys.stderr, flush=True)
        atomic_write_json(result, out)
    return 1 if failed else 0


def summary(name: str, value) -> str:
    if name == "throughput":
        return ", ".join(f"{t['arch']} {t['images_per_second']:.0f} images/s" for t in value)
    if name == "dm":
        return f"{value['iterations_per_second']:.2f} it/s"
    rows = ", ".join(f"{name} {row['seconds']:.2f} s" + (f" (RTE {row['rte']:.1f})" if "rte" in row else "")
                     for name, row in value["methods"].items())
    skipped = f"; not started within the budget: {', '.join(value['skipped'])}" if value["skipped"] else ""
    return f"{rows} ({value['data']}){skipped}"


if __name__ == "__main__":
    raise SystemExit(main())
