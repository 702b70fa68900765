"""Named protocol presets (DESIGN §5), as data: a number always says which protocol made it."""
from __future__ import annotations

import copy
from typing import Any, Dict

PRESETS: Dict[str, Dict[str, Any]] = {
    "smoke": {
        "dataset": "digits",
        "val_frac": 0.1,
        "model": "mlp",
        "model_args": {},
        "train": {"epochs": 30, "batch_size": 64, "lr": 0.05, "schedule": "onecycle", "weight_decay": 5e-4,
                  "augment": False},
        "condense": {"method": "fdm", "ipc": 10},
        "forget_frac": 0.1,
        "unlearn": {"finetune": {"epochs": 5, "lr": 0.01}, "dcu": {}},
    },
    "cifar10-cpu-sub": {
        "dataset": "cifar10",
        "subsample": {"per_class": 1000, "val_per_class": 100},
        "model": "convnet",
        "model_args": {"width": 64},
        "train": {"epochs": 30, "batch_size": 128, "lr": 0.05, "schedule": "onecycle", "weight_decay": 5e-4,
                  "momentum": 0.9, "augment": True, "flip": True, "crop_padding": 4},
        "condense": {"method": "fdm", "ipc": 50},
        "forget_frac": 0.1,
        "unlearn": {"finetune": {"epochs": 5, "lr": 0.01}, "dcu": {}},
    },
    "cifar10-cpu": {
        "dataset": "cifar10",
        "val_frac": 0.1,
        "model": "convnet",
        "model_args": {"width": 64},
        "train": {"epochs": 30, "batch_size": 128, "lr": 0.05, "schedule": "onecycle", "weight_decay": 5e-4,
                  "momentum": 0.9, "augment": True, "flip": True, "crop_padding": 4},
        "condense": {"method": "fdm", "ipc": 100},
        "forget_frac": 0.1,
        "unlearn": {"finetune": {"epochs": 5, "lr": 0.01}, "dcu": {}},
    },
    "cifar10-resnet18": {
        "dataset": "cifar10",
        "val_frac": 0.1,
        "model": "resnet18",
        "model_args": {},
        "train": {"epochs": 182, "batch_size": 256, "lr": 0.1, "schedule": "cosine", "weight_decay": 5e-4,
                  "momentum": 0.9, "augment": True, "flip": True, "crop_padding": 4},
        "condense": {"method": "fdm", "ipc": 100},
        "forget_count": 4500,
        "unlearn": {"finetune": {"epochs": 10, "lr": 0.01}, "dcu": {}},
    },
}


def get_preset(name: str) -> Dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset '{name}'. Valid values are: {', '.join(sorted(PRESETS))}.")
    return copy.deepcopy(PRESETS[name])
