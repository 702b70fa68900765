"""Multi-layer perceptron on flattened images: the smallest model, for tests and the ``smoke`` preset."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from . import register_model


class MLP(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, hidden: Sequence[int] = (256, 128)):
        super().__init__()
        layers, width = [nn.Flatten()], in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.features = nn.Sequential(*layers)
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def stages(self) -> list:
        """The forward pass as a list of modules applied in turn: flatten + each hidden layer, then the head."""
        layers = list(self.features)
        blocks = [nn.Sequential(*layers[:3])] + [nn.Sequential(*layers[i : i + 2]) for i in range(3, len(layers), 2)]
        return blocks + [self.classifier]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("mlp")
def mlp(*, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, hidden: Sequence[int] = (256, 128)) -> MLP:
    return MLP(in_channels, num_classes, image_size, hidden=tuple(hidden))
