"""ConvNet of the dataset-condensation literature (Zhao et al., ICLR 2021; VICO-UoE/DatasetCondensation
``networks.py``): ``depth`` blocks of conv3x3 → norm → ReLU → 2x2 average pool, then a linear classifier.
The reference's ``instancenorm`` is a GroupNorm with one group per channel; pooling stops once the map is 1x1.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import register_model


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"Unknown norm '{kind}'. Valid values are: instancenorm, batchnorm, layernorm, none.")


class ConvNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm"):
        super().__init__()
        layers, channels, size = [], in_channels, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True)]
            if size >= 2:
                layers.append(nn.AvgPool2d(2))
                size //= 2
            channels = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def stages(self) -> list:
        """The forward pass as a list of modules applied in turn: one per conv block, then the head."""
        blocks, current = [], []
        for layer in self.features:
            current.append(layer)
            if isinstance(layer, nn.AvgPool2d) or layer is self.features[-1]:
                blocks.append(nn.Sequential(*current))
                current = []
        return blocks + [nn.Sequential(nn.Flatten(), self.classifier)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def fit_depth(depth: int, image_size: int) -> int:
    """``depth``, less the blocks that would pool the map below 2x2 (a 1x1 map through instance norm is a
    constant): 3 for CIFAR's 32 px and MNIST's 28 px, as in the reference, 2 for 8 px digits."""
    while depth > 1 and image_size // 2 ** depth < 2:
        depth -= 1
    return depth


@register_model("convnet")
def convnet(*, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: int = 128, depth: int = 3,
            norm: str = "instancenorm") -> ConvNet:
    return ConvNet(in_channels, num_classes, image_size, width=width, depth=depth, norm=norm)
