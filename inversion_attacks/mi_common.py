"""Image priors and similarity measures for model inversion (plain differentiable torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (the TV prior of Mahendran & Vedaldi, 2015)."""
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., :, 1:] - images[..., :, :-1]).abs().mean()


def ssim(a: torch.Tensor, b: torch.Tensor, value_range: float = 1.0, window: int = 7) -> torch.Tensor:
    """Mean structural similarity (Wang et al., 2004) of two batches, uniform window, per channel."""
    window = min(window, a.shape[-1], a.shape[-2])
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    pool = lambda x: F.avg_pool2d(x, window, stride=1)  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    var_a = pool(a * a) - mu_a ** 2
    var_b = pool(b * b) - mu_b ** 2
    cov = pool(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return value.mean()
