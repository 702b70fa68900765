"""Named protocol presets (docs/method.md, section 5), as data: a number always says which protocol made it."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

TUNED = Path(__file__).resolve().parent / "tuned"

# ConvNet-64 with instance norm, 30 epochs of SGD with one-cycle lr 0.05, flip + 4-pixel crop
_CIFAR_CPU_TRAIN = {"epochs": 30, "batch_size": 128, "lr": 0.05, "schedule": "onecycle", "weight_decay": 5e-4,
                    "momentum": 0.9, "augment": True, "flip": True, "crop_padding": 4}
# Every preset names its seeds: development seeds for any choice of settings (by hand or by search),
# evaluation seeds for the tables, run once at the end.
SEEDS = {"development": [0, 1, 2], "evaluation": [100, 101, 102]}
_CIFAR_CPU = {"dataset": "cifar10", "model": "convnet", "model_args": {"width": 64}, "train": _CIFAR_CPU_TRAIN,
              "forget_frac": 0.1, "seeds": SEEDS, "unlearn": {"finetune": {"epochs": 5, "lr": 0.01}, "dcu": {}}}

_RESNET18 = {"dataset": "cifar10", "val_frac": 0.1, "model": "resnet18", "model_args": {},
             "train": {"epochs": 182, "batch_size": 256, "lr": 0.1, "schedule": "multistep", "weight_decay": 5e-4,
                       "momentum": 0.9, "augment": True, "flip": True, "crop_padding": 4},
             "condense": {"method": "fdm", "ipc": 100}, "seeds": SEEDS,
             # the papers' own unlearning settings: dcu/tuned/cifar10-resnet18.json, shared by both ResNet-18 presets
             "tuned_as": "cifar10-resnet18", "unlearn": {"dcu": {}}}

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
        "seeds": SEEDS,
        "unlearn": {"finetune": {"epochs": 5, "lr": 0.01}, "dcu": {}},
    },
    # 10,000-image balanced subset of CIFAR-10 train, 500 held-out train images per class as validation (a
    # 100-per-class split was 2-3 points easier than the test set, and calibrating on it biased dcu; see README)
    "cifar10-cpu-sub": {**_CIFAR_CPU, "subsample": {"per_class": 1000, "val_per_class": 500},
                        "condense": {"method": "fdm", "ipc": 50}},
    # all of CIFAR-10 train less a 10% held-out validation split
    "cifar10-cpu": {**_CIFAR_CPU, "val_frac": 0.1, "condense": {"method": "fdm", "ipc": 100}},
    # the many-model audit (docs/method.md, section 4): a training fast enough that 128 of them fit in about an hour of this
    # 2-core CPU. 5,000 CIFAR-10 training images (500 per class), 100 per class held out, ConvNet-32 with
    # instance norm, 24 epochs of one-cycle SGD at lr 0.1, batch 256, flip + crop. Development seeds 0-2 (any
    # choice of settings); evaluation seeds 100-102 (the tables; run once, at the end).
    "audit": {
        "dataset": "cifar10", "model": "convnet", "model_args": {"width": 32},
        "subsample": {"per_class": 500, "val_per_class": 100},
        "train": {"epochs": 24, "batch_size": 256, "lr": 0.1, "schedule": "onecycle", "weight_decay": 5e-4,
                  "momentum": 0.9, "augment": True, "flip": True, "crop_padding": 4},
        "condense": {"method": "fdm", "ipc": 50},
        "forget_frac": 0.1,
        "seeds": SEEDS,
        "unlearn": {"finetune": {"epochs": 5, "lr": 0.01}, "dcu": {}},
    },
    # the field's standard table (SalUn, Fan et al. ICLR 2024; l1-sparse, Jia et al. NeurIPS 2023): CIFAR ResNet-18,
    # their original's schedule (OPTML-Group/Unlearn-Saliency main_train.py: SGD lr 0.1, x0.1 at epochs 91 and 136)
    "cifar10-resnet18": _RESNET18,
    # the same protocol with an original that fits a lent GPU's 15 minutes beside the whole method list: 30 epochs
    # of one-cycle SGD (peak lr 0.1) instead of 182 of step decay, about 70 s per training at ResNet-18's measured
    # 20,000 images/s on an H100 (benchmarks/results/gpu-cuda.json). Not yet run: its accuracy is unmeasured.
    "cifar10-resnet18-short": {**_RESNET18, "train": {**_RESNET18["train"], "epochs": 30, "schedule": "onecycle"}},
}


def seed_role(preset: Dict[str, Any], seed: int) -> str:
    """"development", "evaluation" or "unassigned": what a seed of this preset may be used for."""
    seeds = preset.get("seeds", {})
    return ("evaluation" if seed in seeds.get("evaluation", []) else
            "development" if seed in seeds.get("development", []) else "unassigned")


def check_development_seed(preset: Dict[str, Any], seed: int, what: str) -> None:
    """Refuse an evaluation seed where settings are chosen: the tables' seeds must be unseen until the end."""
    if seed_role(preset, seed) == "evaluation":
        raise ValueError(f"Seed {seed} is an evaluation seed of this preset; {what} chooses settings, so run it on a "
                         f"development seed ({', '.join(map(str, preset['seeds']['development']))}).")


def tuned_file(name: str) -> Path:
    """``dcu/tuned/<preset>.json``, or the file of the preset it shares its settings with (``tuned_as``)."""
    return TUNED / f"{PRESETS.get(name, {}).get('tuned_as', name)}.json"


def tuned_settings(name: str, scenario: str = "random") -> Dict[str, Dict[str, Any]]:
    """Per-method settings shipped for a preset (``dcu/tuned/<preset>.json``), each with where it came from.

    An entry's ``scenarios`` may hold other settings for one scenario (``"class"``: a whole class forgotten);
    they replace the entry's own for that scenario.
    """
    path = tuned_file(name)
    if not path.exists():
        return {}
    out = {}
    for method, entry in json.loads(path.read_text())["methods"].items():
        other = entry.get("scenarios", {}).get(scenario)
        out[method] = other["settings"] if other is not None else entry["settings"]
    return out


def get_preset(name: str, scenario: str = "random") -> Dict[str, Any]:
    """The preset as data, with its shipped per-method settings for ``scenario`` under ``unlearn`` (the preset's
    own win)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset '{name}'. Valid values are: {', '.join(sorted(PRESETS))}.")
    preset = copy.deepcopy(PRESETS[name])
    preset["unlearn"] = {**tuned_settings(name, scenario), **preset.get("unlearn", {})}
    return preset


def parse_shard(text: str) -> Tuple[int, int]:
    """``--shard i/n`` -> ``(i, n)`` with 0 <= i < n: this process builds the models k with k % n == i."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n, e.g. 0/4. Got '{text[:40]}'.") from None
    if not 0 <= part < parts:
        raise ValueError(f"--shard expects i/n with 0 <= i < n. Got '{text}'.")
    return part, parts


def method_of(row: str) -> str:
    """The method a result row runs: ``"dcu@ref25o05"`` -> ``"dcu"`` (a label after ``@`` names its settings)."""
    return row.split("@")[0]


def method_settings(items: List[str]) -> Dict[str, Dict[str, Any]]:
    """``["dm.batch_real=64", "dcu.mirror=true"]`` -> ``{"dm": {"batch_real": 64}, "dcu": {"mirror": True}}``;
    values are read as JSON, else kept as text (the benchmarks' ``--set METHOD.KEY=VALUE``)."""
    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.strip().partition(".")
        if not sep or not dot or not method or not name:
            raise ValueError(f"--set expects METHOD.KEY=VALUE, e.g. dm.batch_real=64. Got '{item}'.")
        out.setdefault(method, {})[name.replace("-", "_")] = setting_value(value)
    return out


def setting_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, booleans, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
