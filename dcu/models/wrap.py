"""Bring your own model: :func:`wrap` gives any classifier of a common shape the protocol dcu's methods use.

The protocol (what every model in ``dcu.models`` offers, and what ``wrap`` adds):

- ``forward_features(x)``: the penultimate embedding, flat ``(N, feature_dim)``;
- ``forward_head(features)``: the classifier on it, so ``forward(x) == forward_head(forward_features(x))``;
- ``get_classifier()``: the final ``nn.Linear``; ``feature_dim``: its input width;
- ``stages()``: the forward pass as a list of blocks applied in turn (methods that train only the last
  blocks, like dcu, split it there);
- ``arch`` and ``arch_args``: the registered name and keyword arguments that rebuild the model (a model
  that is not registered can be used in Python but its checkpoints need the registration to load).

Three shapes are understood: an ``nn.Sequential`` ending in an ``nn.Linear`` (each child is a stage);
a torchvision classifier whose head is ``fc`` or ``classifier`` (ResNet, VGG, MobileNet, EfficientNet,
DenseNet, ...: the body and the head are the two stages); a timm-style model with ``forward_features``,
``forward_head(..., pre_logits=True)`` and ``get_classifier()``. Anything else is refused with what is
missing.
"""
from __future__ import annotations

import copy
from typing import List, Optional

import torch
import torch.nn as nn

PROTOCOL = ("forward_features", "forward_head", "get_classifier", "stages", "feature_dim")


class _Features(nn.Module):
    """A stage computing a timm-style model's pooled features (the model is registered, so its parameters
    count as this stage's)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward_head(self.module.forward_features(x), pre_logits=True).flatten(1)


class WrappedModel(nn.Module):
    """A user's classifier with dcu's model protocol. ``kind`` says how it was read: ``sequential``,
    ``torchvision`` (its head moved to ``self.head``, an identity left in its place) or ``timm``."""

    def __init__(self, module: nn.Module, kind: str, head: Optional[nn.Linear] = None):
        super().__init__()
        self.module, self.kind = module, kind
        if head is not None:
            self.head = head
        self.feature_dim = self.get_classifier().in_features
        self.arch = f"wrapped:{type(module).__name__}"
        self.arch_args = {"num_classes": self.get_classifier().out_features}

    def get_classifier(self) -> nn.Linear:
        if self.kind == "sequential":
            return self.module[-1]
        if self.kind == "timm":
            return self.module.get_classifier()
        return self.head

    def body(self) -> List[nn.Module]:
        if self.kind == "sequential":
            return list(self.module)[:-1]
        return [_Features(self.module)] if self.kind == "timm" else [self.module]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.body():
            x = block(x)
        return x.flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def stages(self) -> list:
        return self.body() + [nn.Sequential(nn.Flatten(1), self.get_classifier())]


def wrap(module: nn.Module) -> nn.Module:
    """``module`` with dcu's model protocol (see the module docstring); a dcu model is returned as it is.

    A torchvision model's head is moved into the wrapper (the module passed in is changed: its ``fc`` or
    last ``classifier`` layer becomes the wrapper's ``head``)."""
    if all(hasattr(module, name) for name in PROTOCOL):
        return module
    if isinstance(module, nn.Sequential):
        children = list(module)
        if not children or not isinstance(children[-1], nn.Linear):
            last = type(children[-1]).__name__ if children else "nothing"
            raise TypeError(f"dcu.models.wrap: this nn.Sequential ends in {last}, not an nn.Linear classifier; end "
                            "it with nn.Flatten() and nn.Linear(features, classes).")
        return WrappedModel(module, "sequential")
    if hasattr(module, "forward_features") and hasattr(module, "get_classifier"):   # timm's protocol
        head = module.get_classifier()
        if not isinstance(head, nn.Linear) or not hasattr(module, "forward_head"):
            raise TypeError(f"dcu.models.wrap: {type(module).__name__}'s get_classifier() is {type(head).__name__}, "
                            "not an nn.Linear, or it has no forward_head(x, pre_logits=True).")
        return WrappedModel(module, "timm")
    for name in ("fc", "classifier", "head"):      # torchvision's classifiers
        part = getattr(module, name, None)
        head = _last_linear(part) if isinstance(part, nn.Module) else None
        if head is None:
            continue
        setattr(module, name, part[:-1] if isinstance(part, nn.Sequential) else nn.Identity())
        return WrappedModel(module, "torchvision", head)
    raise TypeError(f"dcu.models.wrap cannot find the classifier of {type(module).__name__}: give it an "
                    "nn.Sequential ending in nn.Linear, a torchvision classifier (head 'fc' or 'classifier'), or a "
                    "model with forward_features, forward_head(x, pre_logits=True) and get_classifier() (timm).")


def _last_linear(module: nn.Module) -> Optional[nn.Linear]:
    if isinstance(module, nn.Linear):
        return module
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Linear):
        return module[-1]
    return None


def fresh_model(model: nn.Module) -> nn.Module:
    """A new, untrained model of ``model``'s architecture (under the current torch seed): rebuilt from its
    registration when it has one, else a copy whose every layer is re-initialised."""
    from . import MODELS, create_model

    if getattr(model, "arch", None) in MODELS:
        return create_model(model.arch, **model.arch_args)
    fresh = copy.deepcopy(model)
    for layer in fresh.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    return fresh
