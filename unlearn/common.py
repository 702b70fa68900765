"""Pieces several unlearning methods share: paired forget batches, distillation, random labels, hard masks,
per-sample gradients and the diagonal Fisher. Each method module keeps only what is its own."""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from dcu.data import ImageSet
from dcu.train import TrainConfig, augment_batch, model_device, on_device


def classes_without_retain(retain: ImageSet, classes: int) -> torch.Tensor:
    """Mask over ``classes``: the classes with no retain sample left, which a retrained model cannot predict
    (a class-wise request removes them)."""
    return torch.bincount(retain.labels, minlength=classes) == 0


def batches(data: ImageSet, batch_size: int, *, seed: int = 0, augment: Optional[TrainConfig] = None,
            device: torch.device | str = "cpu") -> Iterator[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless shuffled ``(images, labels, positions)`` batches of ``data`` on ``device`` (the data move there
    once; the positions stay on the CPU), reshuffled every pass; with ``augment`` (a ``TrainConfig`` with
    ``augment`` on) the original's flip and crop are applied."""
    generator = torch.Generator().manual_seed(seed)
    images, labels = on_device(data.images, torch.device(device)), on_device(data.labels, torch.device(device))
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = images[idx]
            if augment is not None and augment.augment:
                x = augment_batch(x, flip=augment.flip, padding=augment.crop_padding, generator=generator)
            yield x, labels[idx], idx


def joined(first: ImageSet, second: ImageSet) -> Tuple[ImageSet, torch.Tensor]:
    """``first`` and ``second`` as one set, and a mask of the positions that come from ``second``."""
    data = ImageSet(torch.cat([first.images, second.images]), torch.cat([first.labels, second.labels]))
    from_second = torch.zeros(len(data), dtype=torch.bool)
    from_second[len(first):] = True
    return data, from_second


def kl_to(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) at ``temperature``, scaled by T² (Hinton et al., 2015), mean over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    log_target=True, reduction="batchmean") * t * t


def random_other_labels(labels: torch.Tensor, classes: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A uniformly drawn label different from each true one (drawn on the CPU, returned on ``labels``' device)."""
    shift = torch.randint(1, classes, labels.shape, generator=generator).to(labels.device)
    return (labels + shift) % classes


class HardMask:
    """Keeps the entries of each parameter outside its mask exactly where they were.

    Zeroing gradients is not enough: SGD's weight decay and momentum move a weight whose gradient is zero
    (the drift fixed in OPTML-Group/Unlearn-Saliency). This puts the frozen entries back after every step;
    pass it as ``train(..., on_step=mask)``.
    """

    def __init__(self, model: nn.Module, masks: Dict[str, torch.Tensor]):
        params = dict(model.named_parameters())
        self.entries = [(params[name], mask.bool(), params[name].detach().clone()) for name, mask in masks.items()]

    @torch.no_grad()
    def __call__(self, step: int = 0) -> None:
        for param, mask, frozen in self.entries:
            param.copy_(torch.where(mask, param, frozen))

    def fraction_trainable(self) -> float:
        total = sum(m.numel() for _, m, _ in self.entries)
        return sum(int(m.sum()) for _, m, _ in self.entries) / max(total, 1)


def summed_gradient(model: nn.Module, data: ImageSet, batch_size: int = 256, sign: float = 1.0) -> Dict[str, torch.Tensor]:
    """The gradient of the summed cross-entropy over ``data`` (model in eval mode), per parameter name."""
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    device = model_device(model)
    for start in range(0, len(data), batch_size):
        x, y = data.images[start : start + batch_size].to(device), data.labels[start : start + batch_size].to(device)
        (sign * F.cross_entropy(model(x), y, reduction="sum")).backward()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


def per_sample_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64
                         ) -> Iterator[Dict[str, torch.Tensor]]:
    """Per-sample gradients of the cross-entropy (model in eval mode), ``batch_size`` samples at a time, on the
    model's device."""
    model.eval()
    device = model_device(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p, x, y):
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    for start in range(0, len(images), batch_size):
        yield per_sample(params, images[start : start + batch_size].to(device), labels[start : start + batch_size].to(device))


def fisher_diagonal(model: nn.Module, data: ImageSet, *, max_samples: Optional[int] = None, seed: int = 0,
                    batch_size: int = 64) -> Dict[str, torch.Tensor]:
    """The empirical Fisher's diagonal, the mean squared per-sample gradient, over ``data`` (or a seeded
    random ``max_samples`` of it)."""
    if max_samples is not None and len(data) > max_samples:
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_samples]
        images, labels = data.images[pick], data.labels[pick]
    else:
        images, labels = data.images, data.labels
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for grads in per_sample_gradients(model, images, labels, batch_size):
        for n, g in grads.items():
            total[n] += g.pow(2).sum(0)
    return {n: t / max(len(labels), 1) for n, t in total.items()}


def batch_gradient_importance(model: nn.Module, data: ImageSet, *, batch_size: int = 128,
                              max_samples: Optional[int] = None, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Importances as SSD's reference code computes them (if-loops/selective-synaptic-dampening,
    ``ParameterPerturber.calc_importance``): the model in eval mode, the data in order in mini-batches of
    ``batch_size``, and per batch the *squared gradient of the batch's mean loss*, averaged over batches.
    This is not the per-sample Fisher: a gradient that averages out over a large set (the training set, at
    convergence) squares to little, one shared by a small set (the forget set) to much, which is what makes
    the paper's α = 10 select weights."""
    if max_samples is not None and len(data) > max_samples:
        pick = torch.sort(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_samples]).values
        images, labels = data.images[pick], data.labels[pick]
    else:
        images, labels = data.images, data.labels
    was_training = model.training
    model.eval()
    device = model_device(model)
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for start in range(0, len(labels), batch_size):
        x, y = images[start : start + batch_size].to(device), labels[start : start + batch_size].to(device)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                total[n] += p.grad.detach().pow(2)
        batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: t / max(batches, 1) for n, t in total.items()}


def stage_parameters(model: nn.Module, tail_stages: int) -> Dict[str, nn.Parameter]:
    """The parameters of the last ``tail_stages`` blocks of ``model.stages()``, by name."""
    from dcu.models import split_model

    _, tail = split_model(model, tail_stages)
    tail_ids = {id(p) for p in tail.parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) in tail_ids}
