"""How a condensed set is scored: train fresh networks on it alone and test them on the real test set.

Named protocols, so a number always says how it was made:

* ``dc-300ep`` — the DC and DSA papers' protocol (VICO-UoE/DatasetCondensation ``evaluate_synset`` as
  ``main.py`` calls it): ConvNet-128 (depth 3, fewer for images under 16 px),
  SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, 300 epochs, lr ×0.1 at half; with DSA
  augmentation (independent parameters per image) when the method condensed with DSA — the reference
  evaluates DM and DSA sets that way.
* ``dc-1000ep`` — the same with 1,000 epochs: what the reference's ``main_DM.py`` trains (``--epoch_eval_train``
  1000), so the protocol behind the DM paper's numbers.
* ``dc-cpu`` — the same with 150 epochs, for quick CPU runs; reported under its own name.
* ``dc-cpu-w64`` — ``dc-cpu`` on ConvNet-64 (the CPU presets' model), about a quarter of its time: for
  comparing sets with each other on this CPU (bucketed against unbucketed, refreshed against full), never with
  the papers' numbers.
* ``ncfm-4000ep`` — the NCFM reference's evaluation (gszfwsb/NCFM ``condenser/evaluate.py`` with
  ``config/ipc10/cifar10.yaml``, itself IDC's): ConvNet-128, AdamW lr 1e-3, weight decay 0.01, batch 256,
  4,000 epochs, lr x0.5 after each fifth, DSA with independent parameters per image on every set, and CutMix
  (probability 0.5, area ratio uniform) with hard labels. The reference reports the best test accuracy seen
  during training; this reports the last, as every protocol here does (the test set chooses nothing).
* ``ncfm-1000ep`` — the same with 1,000 epochs, for this CPU; reported under its own name.
* ``ncfm-2000ep`` — the reference's IPC 50 evaluation (``config/ipc50/cifar10.yaml``): as ``ncfm-4000ep`` with
  batch 128, weight decay 5e-4 and 2,000 epochs; ``ncfm-250ep`` is it at 250 epochs, for this CPU.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F

from dcu.data import DatasetSplits, ImageSet
from dcu.models import create_model
from dcu.models.convnet import fit_depth
from dcu.progress import progress, quiet
from dcu.seeds import derive
from dcu.train import TrainConfig, accuracy, train

from .dsa import DSA

PROTOCOLS: Dict[str, Dict[str, Any]] = {
    "dc-300ep": {"epochs": 300, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 256,
                 "schedule": "step", "model": "convnet", "model_args": {"width": 128, "depth": 3}},
    "dc-1000ep": {"epochs": 1000, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 256,
                  "schedule": "step", "model": "convnet", "model_args": {"width": 128, "depth": 3}},
    "dc-cpu": {"epochs": 150, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 256,
               "schedule": "step", "model": "convnet", "model_args": {"width": 128, "depth": 3}},
    "dc-cpu-w64": {"epochs": 150, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 256,
                   "schedule": "step", "model": "convnet", "model_args": {"width": 64, "depth": 3}},
    "ncfm-4000ep": {"epochs": 4000, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "batch_size": 256,
                    "schedule": "fifths", "dsa": True, "cutmix": 0.5, "model": "convnet",
                    "model_args": {"width": 128, "depth": 3}},
    "ncfm-1000ep": {"epochs": 1000, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "batch_size": 256,
                    "schedule": "fifths", "dsa": True, "cutmix": 0.5, "model": "convnet",
                    "model_args": {"width": 128, "depth": 3}},
    "ncfm-2000ep": {"epochs": 2000, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4, "batch_size": 128,
                    "schedule": "fifths", "dsa": True, "cutmix": 0.5, "model": "convnet",
                    "model_args": {"width": 128, "depth": 3}},
    "ncfm-250ep": {"epochs": 250, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4, "batch_size": 128,
                   "schedule": "fifths", "dsa": True, "cutmix": 0.5, "model": "convnet",
                   "model_args": {"width": 128, "depth": 3}},
}


def cutmix(x: torch.Tensor, generator: torch.Generator):
    """CutMix (Yun et al., ICCV 2019) as IDC's and NCFM's evaluations apply it: a box of area ``1 - lam``
    (``lam`` uniform, i.e. Beta(1, 1)) from a shuffled copy of the batch pasted into ``x``. Returns the mixed
    batch, the shuffle and the share of each image that is still its own (for the loss's weights)."""
    n, _, h, w = x.shape
    lam, cy, cx = torch.rand(3, generator=generator).tolist()
    cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
    y0, y1 = max(int(cy * h) - cut_h // 2, 0), min(int(cy * h) + cut_h // 2, h)
    x0, x1 = max(int(cx * w) - cut_w // 2, 0), min(int(cx * w) + cut_w // 2, w)
    shuffle = torch.randperm(n, generator=generator).to(x.device)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[shuffle, :, y0:y1, x0:x1]
    return mixed, shuffle, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def evaluate_condensed(data, splits: DatasetSplits, *, runs: int = 5, protocol: str | Dict[str, Any] = "dc-300ep",
                       dsa: Optional[bool] = None, seed: int = 0, test: Optional[ImageSet] = None,
                       device: str | torch.device = "cpu") -> Dict[str, Any]:
    """Test accuracy (mean ± std over ``runs`` fresh networks) of networks trained on ``data`` alone.

    ``data`` is a ``CondensedSet`` or an ``ImageSet``; ``dsa=None`` uses DSA augmentation when the condensed
    set was made with it (its config's ``dsa``) unless the protocol always uses it. ``protocol`` is a name of
    ``PROTOCOLS`` or a dict of the same fields (reported as ``custom``). ``test`` is the split scored (default
    ``splits.test``; held-out training images to choose settings by). The networks train on ``device`` (the
    set moves there once).
    """
    if isinstance(protocol, dict):
        spec, protocol = {**PROTOCOLS["dc-300ep"], **protocol}, "custom"
    elif protocol in PROTOCOLS:
        spec = PROTOCOLS[protocol]
    else:
        raise ValueError(f"Unknown evaluation protocol '{protocol}'. Valid values are: {', '.join(PROTOCOLS)}.")
    if runs < 1:
        raise ValueError(f"runs must be at least 1. Got {runs}.")
    if dsa is None:
        dsa = spec.get("dsa")
    if hasattr(data, "as_imageset"):
        if dsa is None:
            dsa = bool(data.config.get("dsa", False))
        data = data.as_imageset()
    dsa = bool(dsa)
    test = test if test is not None else splits.test
    channels, size = splits.input_shape[0], splits.input_shape[1]
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], optimizer=spec.get("optimizer", "sgd"),
                      lr=spec["lr"], momentum=spec.get("momentum", 0.9),
                      weight_decay=spec["weight_decay"], schedule=spec["schedule"], augment=False,
                      amp=False)   # float32 on a GPU too, as the papers trained
    augment = DSA() if dsa else None
    mix = spec.get("cutmix", 0.0)
    accs, start = [], time.perf_counter()
    for run in progress(range(runs), desc=f"evaluate ({protocol})", unit="net"):
        run_seed = derive(seed, "evaluation run", run)
        torch.manual_seed(run_seed)
        model_args = dict(spec["model_args"])
        if spec["model"] == "convnet":
            model_args["depth"] = fit_depth(model_args.get("depth", 3), size)
        net = create_model(spec["model"], in_channels=channels, num_classes=splits.num_classes, image_size=size,
                           **model_args).to(device)
        generator = torch.Generator().manual_seed(run_seed)

        def loss_fn(model, x, y, idx, generator=generator):
            if augment is not None:
                x = augment.random(x, generator)
            if mix > 0 and float(torch.rand((), generator=generator)) < mix:   # no draw otherwise: old runs replay
                x, shuffle, own = cutmix(x, generator)
                logits = model(x)
                return own * F.cross_entropy(logits, y) + (1.0 - own) * F.cross_entropy(logits, y[shuffle])
            return F.cross_entropy(model(x), y)

        with quiet():
            train(net, data, TrainConfig(**{**cfg.__dict__, "seed": run_seed}), loss_fn=loss_fn, desc="evaluate")
        accs.append(accuracy(net, test))
    return {"protocol": protocol, "dsa_augment": dsa, "cutmix": mix, "runs": runs, "accuracies": accs,
            "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if runs > 1 else 0.0,
            "images": len(data), "seconds": time.perf_counter() - start,
            "model": {"arch": spec["model"], **spec["model_args"]}}
