"""Model checkpoints: a state dict plus the metadata that says what the model is and where it came from.

Written atomically, read with ``torch.load(weights_only=True)`` only. Metadata (docs/method.md, section 3): architecture and
its arguments, dataset, classes, input shape, normalisation, the hash of the id set trained on, and for an
unlearned model its parent's hash, the forget ids' hash and count, the method and its hyperparameters.
"""
from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from .io import ArtifactError, atomic_save, clip, safe_load, state_hash
from .models import create_model, create_on_meta, model_config

FORMAT = "dcu-checkpoint"
FORMAT_VERSION = 1


def versions() -> Dict[str, str]:
    import numpy
    import torchvision

    from . import __version__

    return {"dcu": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": str(numpy.__version__), "python": platform.python_version()}


def _plain(obj: Any) -> Any:
    """Metadata as plain JSON types, so ``weights_only`` loading can read it back."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def base_meta(model: nn.Module, splits, train_ids: torch.Tensor) -> Dict[str, Any]:
    """The metadata every checkpoint of a model trained on ``train_ids`` of ``splits`` carries."""
    from .io import ids_hash

    return {
        **model_config(model),
        "dataset": splits.name,
        "num_classes": splits.num_classes,
        "classes": list(splits.classes),
        "input_shape": list(splits.input_shape),
        "mean": list(splits.mean),
        "std": list(splits.std),
        "num_train": splits.num_ids,
        "train_ids_hash": ids_hash(train_ids),
        "num_trained_on": int(len(train_ids)),
    }


def checkpoint_payload(model: nn.Module, meta: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """What a checkpoint file holds (header, metadata, weights on the CPU), and the weights' hash."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {"versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta, **model_config(model)}
    from .models import MODELS

    if model.arch in MODELS:     # where the builder lives, so a loader can name the module to import
        meta["arch_module"] = MODELS.get(model.arch).__module__
    meta = _plain(meta)
    meta["hash"] = state_hash(state)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": meta, "state_dict": state}, meta["hash"]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: Dict[str, Any]) -> str:
    """Save atomically; returns the weights' hash (also stored as ``meta['hash']``)."""
    payload, digest = checkpoint_payload(model, meta)
    atomic_save(payload, path)
    return digest


def load_checkpoint(path: str | os.PathLike, splits=None) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load a dcu checkpoint (``weights_only=True``) and rebuild its model; with ``splits``, check it fits.

    The metadata is checked field by field, and the architecture it names is built on the ``meta`` device
    and compared with the weights in the file before anything real is allocated: a small file cannot make
    dcu build a huge model, and a wrong field is refused by name (:class:`ArtifactError`).
    """
    payload = safe_load(path, what="dcu checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ArtifactError(
            f"{path} is not a dcu checkpoint (no '{FORMAT}' header); make one with `dcu train` or `dcu forget`."
        )
    meta, state = payload.get("meta"), payload.get("state_dict")
    validate_meta(meta, path)
    check_state(state, meta, path)
    model = create_model(meta["arch"], **meta["arch_args"])
    model.load_state_dict(state)
    if state_hash(state) != meta.get("hash"):
        raise ArtifactError(f"{path}: the weights do not match the hash recorded in the file; it was altered or damaged.")
    model.eval()
    if splits is not None:
        check_fits(meta, splits, path)
    return model, meta


def _bad(path, field: str, why: str) -> ArtifactError:
    return ArtifactError(f"{path}: metadata field '{field}' {why}.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def validate_meta(meta: Any, path: Any = "checkpoint") -> None:
    """Refuse metadata with a missing, wrongly typed or out-of-range field, naming the field."""
    from .train import TrainConfig

    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: the checkpoint has no metadata dictionary.")
    for key, check, why in (
        ("arch", lambda v: isinstance(v, str) and len(v) < 64, "must be a model name"),
        ("arch_args", lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), "must be a dictionary"),
        ("num_classes", lambda v: _is_int(v) and 1 <= v <= 100_000, "must be a class count in 1..100000"),
        ("input_shape", lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(x) and 1 <= x <= 4096 for x in v),
         "must be [channels, height, width] with each in 1..4096"),
        ("classes", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "must be a list of names"),
        ("mean", lambda v: isinstance(v, list) and all(_is_num(x) for x in v), "must be a list of numbers"),
        ("std", lambda v: isinstance(v, list) and all(_is_num(x) and x > 0 for x in v), "must be positive numbers"),
        ("dataset", lambda v: isinstance(v, str), "must be a dataset name"),
        ("hash", lambda v: isinstance(v, str), "must be the weights' hash"),
    ):
        if key not in meta:
            raise _bad(path, key, "is missing")
        if not check(meta[key]):
            raise _bad(path, key, f"{why} (got {clip(repr(meta[key]), 60)})")
    from .models import MODELS

    if meta["arch"] not in MODELS:
        module = meta.get("arch_module")
        where = f" (registered by module '{clip(str(module), 60)}')" if module else ""
        raise ArtifactError(f"{path} holds a '{meta['arch']}' model{where}, which is not registered in this process: "
                            "import the module that registers it first (in Python, or `dcu ... --import MODULE`).")
    if len(meta["classes"]) != meta["num_classes"]:
        raise _bad(path, "classes", f"names {len(meta['classes'])} classes but num_classes is {meta['num_classes']}")
    channels = meta["input_shape"][0]
    if len(meta["mean"]) != channels or len(meta["std"]) != channels:
        raise _bad(path, "mean", f"and std must have one value per channel ({channels})")
    for key in ("num_train", "num_trained_on", "forgotten_count", "seed"):
        if key in meta and meta[key] is not None and not (_is_int(meta[key]) and meta[key] >= 0):
            raise _bad(path, key, f"must be a whole number >= 0 (got {clip(repr(meta[key]), 60)})")
    holdout = meta.get("holdout")
    if holdout is not None:
        if not (isinstance(holdout, dict) and set(holdout) == {"frac", "seed"} and _is_num(holdout["frac"])
                and 0 <= holdout["frac"] < 1 and _is_int(holdout["seed"])):
            raise _bad(path, "holdout", f"must be {{'frac': 0 <= F < 1, 'seed': S}} (got {clip(repr(holdout), 60)})")
    train_config = meta.get("train_config")
    if train_config is not None:
        if not isinstance(train_config, dict):
            raise _bad(path, "train_config", "must be a dictionary")
        from .registry import check_settings

        try:
            check_settings(TrainConfig, train_config, what="train_config key")
        except ValueError as err:
            raise ArtifactError(f"{path}: {err}") from None
    if "forgotten_ids" in meta:   # older checkpoints carried the ids themselves
        ids = meta["forgotten_ids"]
        if not (isinstance(ids, list) and all(_is_int(i) for i in ids)):
            raise _bad(path, "forgotten_ids", "must be a list of whole numbers")
        bad = [i for i in ids if not 0 <= i < meta.get("num_train", 0)]
        if bad:
            raise _bad(path, "forgotten_ids", f"holds id {bad[0]}, outside 0..{meta.get('num_train', 0) - 1}")
    lineage = meta.get("lineage", [])
    if not isinstance(lineage, list) or len(lineage) > 100_000:
        raise _bad(path, "lineage", "must be a list of earlier steps")
    for i, step in enumerate(lineage):
        if not isinstance(step, dict):
            raise _bad(path, f"lineage[{i}]", "must be a dictionary")
        for key in ("hash", "kind", "method", "parent_hash", "forget_hash", "created"):
            if step.get(key) is not None and not isinstance(step[key], str):
                raise _bad(path, f"lineage[{i}].{key}", "must be text")
        if step.get("forget_count") is not None and not (_is_int(step["forget_count"]) and step["forget_count"] >= 0):
            raise _bad(path, f"lineage[{i}].forget_count", "must be a whole number >= 0")
        if step.get("times") is not None and not (isinstance(step["times"], dict)
                                                  and all(_is_num(v) for v in step["times"].values())):
            raise _bad(path, f"lineage[{i}].times", "must map names to seconds")
        if step.get("method_config") is not None and not isinstance(step["method_config"], dict):
            raise _bad(path, f"lineage[{i}].method_config", "must be a dictionary")


def check_state(state: Any, meta: Dict[str, Any], path: Any = "checkpoint") -> None:
    """Refuse weights that do not fit the architecture the metadata names, before building it for real:
    the model is built on the ``meta`` device (no memory), its parameter names and shapes compared with
    the file's tensors, and one input of ``input_shape`` passed through it to check the class count."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ArtifactError(f"{path}: 'state_dict' must map parameter names to tensors.")
    c, h, w = meta["input_shape"]
    args = meta["arch_args"]
    for key, value in (("in_channels", c), ("num_classes", meta["num_classes"]), ("image_size", h)):
        if key in args and args[key] != value:
            raise _bad(path, f"arch_args.{key}", f"is {clip(repr(args[key]), 40)} but the metadata says {value}")
    try:
        skeleton = create_on_meta(meta["arch"], **args)
    except (ValueError, TypeError) as err:
        raise ArtifactError(f"{path}: cannot build the model it describes: {clip(str(err), 200)}") from None
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks weight '{missing[0]}'" if missing else f"has unexpected weight '{clip(extra[0], 60)}'"
        raise ArtifactError(f"{path}: the weights do not fit a {meta['arch']} {clip(repr(args), 80)}: the file {what}.")
    for key, tensor in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(tensor.shape) or got.dtype != tensor.dtype:
            raise ArtifactError(f"{path}: weight '{key}' is {got.dtype} {tuple(got.shape)}, but a {meta['arch']} "
                                f"{clip(repr(args), 80)} has {tensor.dtype} {tuple(tensor.shape)}.")
    try:
        with torch.no_grad():
            out = skeleton(torch.empty(1, c, h, w, device="meta"))
    except Exception as err:
        raise ArtifactError(f"{path}: a {meta['arch']} {clip(repr(args), 80)} cannot take inputs of shape "
                            f"{(c, h, w)} ({type(err).__name__}).") from None
    if tuple(out.shape) != (1, meta["num_classes"]):
        raise ArtifactError(f"{path}: the model gives {tuple(out.shape)[1:]} outputs per image but the metadata "
                            f"says {meta['num_classes']} classes.")


def check_fits(meta: Dict[str, Any], splits, path: Optional[str | os.PathLike] = None) -> None:
    """Refuse a checkpoint that was made for another dataset, class count or input shape."""
    where = f"{path}: " if path else ""
    if meta["num_classes"] != splits.num_classes:
        raise ArtifactError(
            f"{where}the model has {meta['num_classes']} classes but dataset {splits.name} has {splits.num_classes}."
        )
    if list(meta["input_shape"]) != list(splits.input_shape):
        raise ArtifactError(
            f"{where}the model takes inputs of shape {tuple(meta['input_shape'])} but dataset {splits.name} gives "
            f"{tuple(splits.input_shape)}."
        )
    if meta.get("num_train") not in (None, splits.num_ids):
        raise ArtifactError(
            f"{where}the model was trained on a split of {meta['num_train']} training samples, but {splits.name} "
            f"here has {splits.num_ids}: the sample ids would not mean the same images."
        )
    if meta.get("dataset") != splits.name:
        raise ArtifactError(f"{where}the model was made for dataset '{meta.get('dataset')}', not '{splits.name}'.")
