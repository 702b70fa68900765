"""Model zoo: a registry and one factory, ``create_model(name, **kwargs)``.

Every model takes ``in_channels``, ``num_classes`` and ``image_size`` and offers ``forward_features``
(the penultimate embedding, flat), ``forward_head``, ``get_classifier()``, ``feature_dim`` and ``stages()``
(the forward pass as a list of blocks, so a method can train the last few on cached activations). A model
of your own gets the same protocol from :func:`wrap` (``dcu/models/wrap.py`` describes it); register a
builder with ``@register_model("name")`` so its checkpoints load by name.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn

from ..registry import Registry

MODELS = Registry("model")
register_model = MODELS.register


MAX_SIZE = 1 << 16   # no width, depth or image size of a model here comes near this


def check_model_args(name: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """``kwargs`` for model ``name`` with ``None`` dropped, each checked against the builder's keyword
    arguments: a known name, the type of its default, sizes in 1..65536 and factors finite and positive."""
    builder = MODELS.get(name)
    params = {p.name: p for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY}
    out = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key not in params:
            raise ValueError(f"Unknown argument '{key}' for model '{name}'. Valid: {sorted(params)}.")
        default = params[key].default
        out[key] = _checked_arg(name, key, value, default)
    return out


def _checked_arg(name: str, key: str, value: Any, default: Any) -> Any:
    where = f"model '{name}' argument {key}"
    if isinstance(default, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or not isinstance(default, bool):
            raise ValueError(f"{where} must be {type(default).__name__}. Got {value!r}.")
        return value
    if isinstance(default, int):
        if not isinstance(value, int):
            raise ValueError(f"{where} must be a whole number. Got {value!r}.")
        if not 1 <= value <= MAX_SIZE:
            raise ValueError(f"{where} must be in 1..{MAX_SIZE}. Got {value}.")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= MAX_SIZE:
            raise ValueError(f"{where} must be a positive number. Got {value!r}.")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError(f"{where} must be a short text. Got {value!r}.")
        return value
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 64:
            raise ValueError(f"{where} must be a list of 1..64 sizes. Got {value!r}.")
        return type(default)(_checked_arg(name, key, v, default[0]) for v in value)
    return value


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` values are dropped so a CLI default never overrides the model's own.

    Arguments are checked first (:func:`check_model_args`): ``width=0`` or ``width='abc'`` is refused with
    the argument named, not a traceback from deep inside the model.
    """
    kwargs = dict(kwargs)
    erase_ranks = kwargs.pop("erase_ranks", None)   # concept erasers on the features (dcu.models.erase)
    args = check_model_args(name, kwargs)
    model = wrap(MODELS.get(name)(**args))    # a builder may return a plain module; wrap checks the protocol
    model.arch = name
    model.arch_args = args
    if erase_ranks:
        if not isinstance(erase_ranks, list) or not all(isinstance(r, int) and not isinstance(r, bool)
                                                        and 1 <= r <= MAX_SIZE for r in erase_ranks):
            raise ValueError(f"model '{name}' argument erase_ranks must be a list of whole numbers in 1..{MAX_SIZE}. "
                             f"Got {erase_ranks!r}.")
        model = Erased(model, erase_ranks)
    return model


def create_on_meta(name: str, **kwargs: Any) -> nn.Module:
    """The model built on the ``meta`` device: shapes without memory, to check a file before building it."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def split_model(model: nn.Module, tail_stages: int) -> Tuple[nn.Module, nn.Module]:
    """``(trunk, tail)`` with ``tail(trunk(x)) == model(x)``; both share the model's parameters.

    ``tail_stages`` counts from the end of ``model.stages()``: 1 is the classifier head alone.
    """
    stages = model.stages()
    if not 1 <= tail_stages <= len(stages):
        raise ValueError(f"tail_stages must be in 1..{len(stages)} for {model.arch}. Got {tail_stages}.")
    return nn.Sequential(*stages[:-tail_stages]), nn.Sequential(*stages[-tail_stages:])


def list_models() -> List[str]:
    return MODELS.names()


def model_config(model: nn.Module) -> Dict[str, Any]:
    return {"arch": model.arch, "arch_args": dict(model.arch_args)}


def num_classes(model: nn.Module) -> int:
    """How many classes ``model`` predicts: its classifier's output width (the one way to count them)."""
    return int(model.get_classifier().out_features)


from . import convnet, mlp, resnet, vgg  # noqa: E402,F401  (registration)
from .erase import Erased  # noqa: E402
from .wrap import PROTOCOL, WrappedModel, fresh_model, wrap  # noqa: E402

__all__ = ["MODELS", "PROTOCOL", "WrappedModel", "check_model_args", "create_model", "create_on_meta", "fresh_model",
           "list_models", "model_config", "num_classes", "register_model", "split_model", "wrap"]
