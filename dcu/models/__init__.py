"""Model zoo: a registry and one factory, ``create_model(name, **kwargs)``.

Every model takes ``in_channels``, ``num_classes`` and ``image_size`` and offers ``forward_features``
(the penultimate embedding, flat), ``forward_head``, ``feature_dim`` and ``stages()`` (the forward pass as
a list of blocks, so a method can train the last few on cached activations).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch.nn as nn

from ..registry import Registry

MODELS = Registry("model")
register_model = MODELS.register


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` values are dropped so a CLI default never overrides the model's own."""
    builder = MODELS.get(name)
    model = builder(**{k: v for k, v in kwargs.items() if v is not None})
    model.arch = name
    model.arch_args = {k: v for k, v in kwargs.items() if v is not None}
    return model


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


from . import convnet, mlp, resnet, vgg  # noqa: E402,F401  (registration)
