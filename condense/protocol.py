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
"""
from __future__ import annotations

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
}


def evaluate_condensed(data, splits: DatasetSplits, *, runs: int = 5, protocol: str | Dict[str, Any] = "dc-300ep",
                       dsa: Optional[bool] = None, seed: int = 0, test: Optional[ImageSet] = None,
                       device: str | torch.device = "cpu") -> Dict[str, Any]:
    """Test accuracy (mean ± std over ``runs`` fresh networks) of networks trained on ``data`` alone.

    ``data`` is a ``CondensedSet`` or an ``ImageSet``; ``dsa=None`` uses DSA augmentation when the condensed
    set was made with it (its config's ``dsa``). ``protocol`` is a name of ``PROTOCOLS`` or a dict of the
    same fields (reported as ``custom``). The networks train on ``device`` (the set moves there once).
    """
    if isinstance(protocol, dict):
        spec, protocol = {**PROTOCOLS["dc-300ep"], **protocol}, "custom"
    elif protocol in PROTOCOLS:
        spec = PROTOCOLS[protocol]
    else:
        raise ValueError(f"Unknown evaluation protocol '{protocol}'. Valid values are: {', '.join(PROTOCOLS)}.")
    if runs < 1:
        raise ValueError(f"runs must be at least 1. Got {runs}.")
    if hasattr(data, "as_imageset"):
        if dsa is None:
            dsa = bool(data.config.get("dsa", False))
        data = data.as_imageset()
    dsa = bool(dsa)
    test = test if test is not None else splits.test
    channels, size = splits.input_shape[0], splits.input_shape[1]
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=spec["lr"], momentum=spec["momentum"],
                      weight_decay=spec["weight_decay"], schedule=spec["schedule"], augment=False,
                      amp=False)   # float32 on a GPU too, as the papers trained
    augment = DSA() if dsa else None
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
            return F.cross_entropy(model(x), y)

        with quiet():
            train(net, data, TrainConfig(**{**cfg.__dict__, "seed": run_seed}), loss_fn=loss_fn, desc="evaluate")
        accs.append(accuracy(net, test))
    return {"protocol": protocol, "dsa_augment": dsa, "runs": runs, "accuracies": accs,
            "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if runs > 1 else 0.0,
            "images": len(data), "seconds": time.perf_counter() - start,
            "model": {"arch": spec["model"], **spec["model_args"]}}
