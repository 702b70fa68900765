"""Differentiable Siamese Augmentation (Zhao & Bilen, "Dataset Condensation with Differentiable Siamese
Augmentation", ICML 2021; reference ``DiffAugment`` in VICO-UoE/DatasetCondensation ``utils.py``).

Each step picks one family of ``strategy`` (``color_crop_cutout_flip_scale_rotate`` by default) and draws its
parameters once: ``params = dsa.sample(generator)``, then ``dsa(real, params)`` and ``dsa(syn, params)``, so
both batches see the same transformation (siamese) and gradients flow to the synthetic pixels. As in the reference, one parameter set serves the whole batch, and the ops work on
normalised tensors (the colour ops shift and scale normalised values; crop pads and cutout fills with 0).

kornia's augmentations were not used: they draw per-sample parameters in pixel space after
de-normalisation, which is not the reference's behaviour; these few ops are plain, differentiable torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass
class DSAParams:
    """The reference's ``ParamDiffAug`` ranges."""

    scale: float = 1.2
    rotate: float = 15.0        # degrees
    crop: float = 0.125         # translation, as a fraction of the size
    cutout: float = 0.5         # side of the cut square, as a fraction of the size
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


class DSA:
    """Siamese augmentation: ``x_aug = dsa(x, family, params)`` with parameters shared between calls."""

    def __init__(self, strategy: str = "color_crop_cutout_flip_scale_rotate", params: Optional[DSAParams] = None):
        self.families = [f for f in strategy.split("_") if f]
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"Unknown DSA family {unknown or strategy!r}. Valid values are: {', '.join(FAMILIES)}.")
        self.p = params or DSAParams()

    def sample(self, generator: torch.Generator, n: int = 1, family: Optional[str] = None) -> Dict[str, object]:
        """A family (drawn unless given) and parameters for ``n`` images; ``n=1`` serves a whole batch and is
        what the siamese use needs (the same transformation for the real and the synthetic batch)."""
        if family is None:
            family = self.families[int(torch.randint(len(self.families), (1,), generator=generator))]
        u = lambda *shape: torch.rand(n, *shape, generator=generator)  # noqa: E731
        p = self.p
        if family == "color":
            return {"family": family, "brightness": (u(1, 1, 1) - 0.5) * p.brightness,
                    "saturation": u(1, 1, 1) * p.saturation, "contrast": u(1, 1, 1) + p.contrast}
        if family == "crop":
            return {"family": family, "shift": (u(2) * 2 - 1) * p.crop}
        if family == "cutout":
            return {"family": family, "centre": u(2)}
        if family == "flip":
            return {"family": family, "flip": u() < 0.5}
        if family == "scale":
            return {"family": family, "scale": u(2) * (p.scale - 1.0 / p.scale) + 1.0 / p.scale}
        return {"family": family, "angle": (u() - 0.5) * 2 * p.rotate * math.pi / 180}

    def __call__(self, x: torch.Tensor, params: Dict[str, object]) -> torch.Tensor:
        family = params["family"]
        params = {k: (v if k == "family" else v.to(x.device, non_blocking=True)) for k, v in params.items()}
        n, _, h, w = x.shape
        if family == "color":
            x = x + params["brightness"]
            mean = x.mean(1, keepdim=True)
            x = (x - mean) * params["saturation"] + mean
            mean = x.mean((1, 2, 3), keepdim=True)
            return (x - mean) * params["contrast"] + mean
        if family == "flip":
            return torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(3), x)
        if family == "cutout":
            size_y, size_x = h * self.p.cutout, w * self.p.cutout
            cy, cx = params["centre"][:, :1] * h, params["centre"][:, 1:] * w        # (m, 1)
            rows = ((torch.arange(h, device=x.device) - cy).abs() < size_y / 2)      # (m, h)
            cols = ((torch.arange(w, device=x.device) - cx).abs() < size_x / 2)      # (m, w)
            keep = ~(rows.unsqueeze(2) & cols.unsqueeze(1))                          # (m, h, w)
            return x * keep.unsqueeze(1).to(x.dtype)
        m = len(next(v for k, v in params.items() if k != "family"))
        theta = torch.zeros(m, 2, 3, device=x.device, dtype=x.dtype)
        if family == "crop":
            theta[:, 0, 0] = theta[:, 1, 1] = 1.0
            theta[:, :, 2] = params["shift"] * 2                     # a fraction of the size, in [-1, 1] units
        elif family == "scale":
            theta[:, 0, 0], theta[:, 1, 1] = params["scale"][:, 0], params["scale"][:, 1]
        else:
            a = params["angle"]
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
        return _warp(x, theta.expand(n, 2, 3) if m == 1 else theta)

    @staticmethod
    def take(params: Dict[str, object], index: torch.Tensor) -> Dict[str, object]:
        """Per-image parameters picked from per-group ones (``index``: each image's group), e.g. one draw per
        class applied to a batch holding several classes."""
        return {k: (v if k == "family" else v[index]) for k, v in params.items()}

    def random(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Independent parameters per image (the reference's non-siamese mode, for training on a set)."""
        return self(x, self.sample(generator, len(x)))


def for_images(strategy: str, channels: int) -> DSA:
    """``DSA(strategy)``, without flips for single-channel (digit-like) data, as the reference does for MNIST."""
    if channels == 1:
        strategy = "_".join(f for f in strategy.split("_") if f != "flip")
    return DSA(strategy)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True, padding_mode="zeros")
