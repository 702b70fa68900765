"""The one training loop: training, retraining, fine-tuning and condensed-set evaluation all call ``train``.

Data are tensors in memory (an :class:`~dcu.data.ImageSet`), batches are drawn from a seeded generator and
augmented on the batch, so a run is deterministic on the CPU for a fixed seed.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import ImageSet
from .progress import progress

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"          # sgd | adam
    lr: float = 0.05                # the peak lr for onecycle
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"      # onecycle | cosine | step (x0.1 at half, the DC protocol) | constant
    augment: bool = False           # random horizontal flip + crop after padding
    flip: bool = True               # with augment; off for digits and other orientation-bound data
    crop_padding: int = 4
    seed: int = 0
    max_steps: Optional[int] = None  # stop early after this many steps (e.g. a time budget in steps)


def augment_batch(x: torch.Tensor, *, flip: bool, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop of a zero-padded batch, one draw per image."""
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy.view(-1, 1) + torch.arange(h)).view(n, 1, h, 1)
        cols = (dx.view(-1, 1) + torch.arange(w)).view(n, 1, 1, w)
        batch = torch.arange(n).view(n, 1, 1, 1)
        chans = torch.arange(x.shape[1]).view(1, -1, 1, 1)
        x = padded[batch, chans, rows, cols]
    return x


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"Unknown optimizer '{cfg.optimizer}'. Valid values are: sgd, adam.")


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    total_steps = max(1, total_steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[total_steps // 2], gamma=0.1)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"Unknown schedule '{cfg.schedule}'. Valid values are: onecycle, cosine, step, constant.")


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def train(
    model: nn.Module,
    data: ImageSet,
    cfg: TrainConfig,
    *,
    loss_fn: LossFn = cross_entropy,
    desc: str = "train",
    on_epoch: Optional[Callable[[int], None]] = None,
    on_step: Optional[Callable[[int], None]] = None,
    progress_file: Optional[str | os.PathLike] = None,
) -> Dict[str, List[float]]:
    """Train ``model`` in place on ``data``; returns the mean loss per epoch.

    ``loss_fn(model, x, y, idx)`` gives the loss of an (augmented) batch, ``idx`` its positions in ``data``;
    methods that add terms (distillation, a forget-set signal) pass their own and keep this loop.
    ``on_epoch(epoch)`` runs before each epoch (e.g. to re-derive targets from the model as it is),
    ``on_step(step)`` after each optimizer step (e.g. to put back weights a hard mask freezes).
    With ``progress_file`` the full state (weights, optimiser, schedule, random generator) is saved
    atomically after every epoch and, when the file exists, training continues from it: a run killed at
    any point and resumed ends with exactly the weights of an uninterrupted run.
    """
    if len(data) == 0:
        raise ValueError("Cannot train on an empty set of samples.")
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    schedule = make_schedule(optimizer, cfg, total)
    history: Dict[str, List[float]] = {"loss": []}
    model.train()
    step, first_epoch = 0, 0
    if progress_file is not None and Path(progress_file).exists():
        saved = _load_progress(progress_file, cfg)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        step, first_epoch, history = saved["step"], saved["epoch"], saved["history"]
    bar = progress(range(first_epoch, cfg.epochs), desc=desc, unit="epoch", initial=first_epoch, total=cfg.epochs)
    for epoch in bar:
        if on_epoch is not None:
            on_epoch(epoch)
        order = torch.randperm(len(data), generator=generator)
        running, batches = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            idx = order[start : start + cfg.batch_size]
            x, y = data.images[idx], data.labels[idx]
            if cfg.augment:
                x = augment_batch(x, flip=cfg.flip, padding=cfg.crop_padding, generator=generator)
            loss = loss_fn(model, x, y, idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"The training loss became {loss.item()} at step {step}; stopping ({desc}).")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if on_step is not None:
                on_step(step)
            running += loss.item()
            batches += 1
            step += 1
        if batches:
            history["loss"].append(running / batches)
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        if progress_file is not None:
            from .io import atomic_save

            atomic_save({"format": "dcu-train-progress", "config": asdict(cfg), "epoch": epoch + 1, "step": step,
                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "generator": generator.get_state(),
                         "torch_rng": torch.get_rng_state(), "history": history}, progress_file)
        if step >= total:
            break
    model.eval()
    return history


def _load_progress(path, cfg: TrainConfig) -> Dict:
    from .io import ArtifactError, safe_load

    saved = safe_load(path, what="dcu training checkpoint")
    if not isinstance(saved, dict) or saved.get("format") != "dcu-train-progress":
        raise ArtifactError(f"{path} is not a dcu training checkpoint.")
    if saved["config"] != asdict(cfg):
        raise ArtifactError(f"{path} is the checkpoint of a run with other settings ({saved['config']}); remove it "
                            "or pass the same settings.")
    return saved


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out = [model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate embeddings of ``model`` in eval mode, streamed in batches."""
    was_training = model.training
    model.eval()
    out = [model.forward_features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, data: ImageSet) -> float:
    if len(data) == 0:
        return float("nan")
    return (predict(model, data.images).argmax(1) == data.labels).float().mean().item()


def per_sample_loss(model: nn.Module, data: ImageSet) -> torch.Tensor:
    return F.cross_entropy(predict(model, data.images), data.labels, reduction="none")
