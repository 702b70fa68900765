"""VGG-11 with batch norm (Simonyan & Zisserman, ICLR 2015), CIFAR-sized: max-pools are skipped once the map
is 1x1 and a global average pool feeds one linear classifier, so small inputs (8x8 digits) work too.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_model

VGG11_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, layers=VGG11_LAYERS, width_mult: float = 1.0):
        super().__init__()
        modules, channels, size = [], in_channels, image_size
        for item in layers:
            if item == "M":
                if size >= 2:
                    modules.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = max(8, int(item * width_mult))
            modules += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*modules)
        self.feature_dim = channels
        self.classifier = nn.Linear(channels, num_classes)

    def stages(self) -> list:
        """The forward pass as a list of modules applied in turn: one per conv block (with its pool), then the head."""
        blocks, current = [], []
        layers = list(self.features)
        for i, layer in enumerate(layers):
            current.append(layer)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.MaxPool2d) or (isinstance(layer, nn.ReLU) and not isinstance(nxt, nn.MaxPool2d)):
                blocks.append(nn.Sequential(*current))
                current = []
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), self.classifier)
        return blocks + [head]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("vgg11")
def vgg11(*, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width_mult: float = 1.0) -> VGG:
    return VGG(in_channels, num_classes, image_size, width_mult=width_mult)
