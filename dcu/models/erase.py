"""Linear concept erasure of the penultimate features (LEACE: Belrose et al., "LEACE: Perfect linear concept
erasure in closed form", NeurIPS 2023).

:func:`fit_eraser` estimates, from features and a concept (e.g. "is of the forgotten class"), the affine map
``r(x) = x - W⁺ P W (x - μ)`` (``W`` the whitening of the features' covariance, ``P`` the orthogonal projection
onto the whitened cross-covariance with the concept) after which no linear classifier reads the concept
better than a constant, on the data it was fitted on, at the least change to the features in the
Mahalanobis sense. ``strength`` < 1 moves that share of the way. :class:`Erased` puts erasers between a
model's features and its classifier, so ``forward_features`` (what a linear probe reads) and the logits both
see the erased features; checkpoints record them as ``arch_args["erase_ranks"]``, so they load by name.
Only the linear trace at that one layer is removed: earlier layers, and non-linear readers, may still see
the concept.
"""
from __future__ import annotations

from typing import Iterable, List

import torch
import torch.nn as nn


class ConceptEraser(nn.Module):
    """``x - ((x - mean) @ read.T) @ write``: an affine map that removes ``rank`` directions of the features.
    Zero buffers (a freshly built one) leave the features as they are."""

    def __init__(self, features: int, rank: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("read", torch.zeros(rank, features))
        self.register_buffer("write", torch.zeros(rank, features))

    @property
    def rank(self) -> int:
        return int(self.read.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - ((x - self.mean) @ self.read.T) @ self.write


def fit_eraser(features: torch.Tensor, concept: torch.Tensor, strength: float = 1.0,
               eps: float = 1e-5) -> ConceptEraser:
    """The LEACE eraser of ``concept`` (``(N,)`` or ``(N, M)``, e.g. one column per forgotten class) from
    ``features`` ``(N, D)``; ``strength`` scales the removal (1: all of it on these data). Directions of the
    covariance below ``eps`` x its largest are treated as absent (fewer images than feature dimensions)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1]. Got {strength}.")
    x = features.detach().double().flatten(1)
    z = concept.detach().double().reshape(len(x), -1)
    if len(x) < 2:
        raise ValueError("fit_eraser needs at least two feature vectors.")
    mean = x.mean(0)
    xc, zc = x - mean, z - z.mean(0)
    values, vectors = torch.linalg.eigh(xc.T @ xc / len(x))
    kept = values > values.max().clamp(min=1e-30) * eps
    vectors, root = vectors[:, kept], values[kept].sqrt()
    whiten, unwhiten = (vectors / root) @ vectors.T, (vectors * root) @ vectors.T
    cross = whiten @ (xc.T @ zc / len(x))                               # whitened cross-covariance, (D, M)
    u, s, _ = torch.linalg.svd(cross, full_matrices=False)
    basis = u[:, s > s.max().clamp(min=1e-30) * 1e-8]                    # orthonormal, one column per direction
    eraser = ConceptEraser(x.shape[1], max(basis.shape[1], 1))
    if basis.shape[1]:
        eraser.mean.copy_(mean.float())
        eraser.read.copy_((whiten @ basis).T.float())
        eraser.write.copy_((strength * unwhiten @ basis).T.float())
    return eraser.to(features.device)


class Erased(nn.Module):
    """``model`` with erasers applied, in order, to its penultimate features, under dcu's model protocol."""

    def __init__(self, model: nn.Module, ranks: Iterable[int]):
        super().__init__()
        self.model = model
        self.erasers = nn.ModuleList(ConceptEraser(model.feature_dim, int(r)) for r in ranks)
        self.feature_dim = model.feature_dim
        self.arch = model.arch
        self.arch_args = {**model.arch_args, "erase_ranks": [e.rank for e in self.erasers]}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model.forward_features(x)
        for eraser in self.erasers:
            x = eraser(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features)

    def get_classifier(self) -> nn.Linear:
        return self.model.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def stages(self) -> List[nn.Module]:
        stages, classifier = self.model.stages(), self.get_classifier()
        head = stages[-1]
        before = list(head)[:-1] if isinstance(head, nn.Sequential) else []
        if (list(head)[-1] if isinstance(head, nn.Sequential) else head) is not classifier:
            raise TypeError(f"{self.arch}'s last stage does not end in its classifier; the eraser has nowhere to go.")
        return stages[:-1] + [nn.Sequential(*before, *self.erasers, classifier)]


def with_eraser(model: nn.Module, eraser: ConceptEraser) -> Erased:
    """``model`` with ``eraser`` applied after any it already has (a later request adds to an earlier one)."""
    inner, kept = (model.model, list(model.erasers)) if isinstance(model, Erased) else (model, [])
    out = Erased(inner, [e.rank for e in kept] + [eraser.rank])
    for target, source in zip(out.erasers, kept + [eraser]):
        target.load_state_dict(source.state_dict())
    param = next(inner.parameters(), None)
    return out.to(param.device) if param is not None else out
