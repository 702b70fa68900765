"""The inverter network of model-inversion condensation and of the condensive inversion attack: a feature
vector of a classifier's penultimate layer mapped back to an image."""
from __future__ import annotations

import torch
import torch.nn as nn


class Inverter(nn.Module):
    """Feature vector → image: a linear map to a coarse grid, then two upsampling conv blocks."""

    def __init__(self, feature_dim: int, channels: int, size: int, width: int = 64):
        super().__init__()
        self.coarse = max(size // 4, 1)
        self.width = width
        self.project = nn.Linear(feature_dim, width * self.coarse * self.coarse)
        self.body = nn.Sequential(
            nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Upsample(size=(size, size)), nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(code).view(-1, self.width, self.coarse, self.coarse))
