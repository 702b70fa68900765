"""Model checkpoints: a state dict plus the metadata that says what the model is and where it came from.

Written atomically, read with ``torch.load(weights_only=True)`` only. Metadata (DESIGN §3): architecture and
its arguments, dataset, classes, input shape, normalisation, the hash of the id set trained on, and for an
unlearned model its parent's hash, the forget ids' hash and count, the method and its hyperparameters.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from .io import ArtifactError, atomic_save, safe_load, state_hash
from .models import create_model, model_config

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


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: Dict[str, Any]) -> str:
    """Save atomically; returns the weights' hash (also stored as ``meta['hash']``)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {"versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta, **model_config(model)}
    meta = _plain(meta)
    meta["hash"] = state_hash(state)
    atomic_save({"format": FORMAT, "format_version": FORMAT_VERSION, "meta": meta, "state_dict": state}, path)
    return meta["hash"]


def load_checkpoint(path: str | os.PathLike, splits=None) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load a dcu checkpoint (``weights_only=True``) and rebuild its model; with ``splits``, check it fits."""
    payload = safe_load(path, what="dcu checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ArtifactError(
            f"{path} is not a dcu checkpoint (no '{FORMAT}' header); make one with `dcu train` or `dcu forget`."
        )
    meta, state = payload["meta"], payload["state_dict"]
    model = create_model(meta["arch"], **meta["arch_args"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ArtifactError(f"{path}: its weights do not fit a {meta['arch']} {meta['arch_args']} ({err}).") from err
    if state_hash(state) != meta.get("hash"):
        raise ArtifactError(f"{path}: the weights do not match the hash recorded in the file; it was altered or damaged.")
    model.eval()
    if splits is not None:
        check_fits(meta, splits, path)
    return model, meta


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


def file_hash(path: str | os.PathLike) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
