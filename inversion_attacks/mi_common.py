"""Image priors and similarity measures for model inversion (differentiable torch; SSIM from kornia)."""
from __future__ import annotations

import torch


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (the TV prior of Mahendran & Vedaldi, 2015)."""
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., :, 1:] - images[..., :, :-1]).abs().mean()


def ssim(a: torch.Tensor, b: torch.Tensor, value_range: float = 1.0, window: int = 11) -> torch.Tensor:
    """Mean structural similarity (Wang et al., 2004) of two batches: kornia's, with its Gaussian window
    (11 pixels, or the largest odd size the images hold), over pixel values spanning ``value_range``."""
    from kornia.metrics import ssim as kornia_ssim

    window = min(window, a.shape[-1] - (1 - a.shape[-1] % 2), a.shape[-2] - (1 - a.shape[-2] % 2))
    lowest = torch.minimum(a.amin(), b.amin())    # kornia's constants assume pixels in [0, max_val]
    return kornia_ssim(a - lowest, b - lowest, window, max_val=value_range).mean()
