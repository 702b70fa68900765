"""The one training loop: training, retraining, fine-tuning and condensed-set evaluation all call ``train``.

Data are tensors in memory (an :class:`~dcu.data.ImageSet`), batches are drawn from a seeded generator and
augmented on the batch, so a run is deterministic on the CPU for a fixed seed.
"""
from __future__ import annotations

import math
import os
import time
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
    optimizer: str = "sgd"          # sgd | adam | adamw
    lr: float = 0.05                # the peak lr for onecycle
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"      # onecycle | cosine | step (x0.1 at half, the DC protocol) | multistep | fifths | constant
    augment: bool = False           # random horizontal flip + crop after padding
    flip: bool = True               # with augment; off for digits and other orientation-bound data
    crop_padding: int = 4
    seed: int = 0
    max_steps: Optional[int] = None  # stop early after this many steps (e.g. a time budget in steps)
    amp: bool = True                # bf16 autocast on a GPU (ignored on the CPU)


def augment_batch(x: torch.Tensor, *, flip: bool, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop of a zero-padded batch, one draw per image.

    The draws come from ``generator`` (on the CPU, so a seed means the same on every device) and move to
    ``x``'s device as a few small tensors, without waiting for the device.
    """
    n, _, h, w = x.shape
    device = x.device
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(device, non_blocking=True)
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device, non_blocking=True)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device, non_blocking=True)
        rows = (dy.view(-1, 1) + torch.arange(h, device=device)).view(n, 1, h, 1)
        cols = (dx.view(-1, 1) + torch.arange(w, device=device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=device).view(n, 1, 1, 1)
        chans = torch.arange(x.shape[1], device=device).view(1, -1, 1, 1)
        x = padded[batch, chans, rows, cols]
    return x


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"Unknown optimizer '{cfg.optimizer}'. Valid values are: sgd, adam, adamw.")


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    total_steps = max(1, total_steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[total_steps // 2], gamma=0.1)
    if cfg.schedule == "multistep":   # x0.1 at epochs 91 and 136 of 182 (SalUn's and l1-sparse's original), as fractions
        milestones = [round(total_steps * 91 / 182), round(total_steps * 136 / 182)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if cfg.schedule == "fifths":   # x0.5 after each fifth (IDC's and NCFM's evaluation of a condensed set)
        milestones = [total_steps * k // 5 for k in range(1, 5)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.5)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"Unknown schedule '{cfg.schedule}'. Valid values are: onecycle, cosine, step, multistep, fifths, "
                     "constant.")


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


# A loss marked ``per_sample`` is the mean of one term per sample (plus terms that do not depend on the
# batch), so micro-batches weighted by their size give the batch's gradient exactly.
cross_entropy.per_sample = True
MICRO_BATCH_BYTES = 8 << 20


def cpu_micro_batch(model: nn.Module, x: torch.Tensor) -> Optional[int]:
    """Images per micro-batch when training on a CPU, or None to take every batch whole.

    On a CPU, passes whose largest activation stays under ~8 MiB run up to 1.6x faster per image (ConvNet-64
    on CIFAR, this project's 2-core Xeon: a 256-image step 0.50 s whole, 0.31 s in micro-batches of 32),
    because the allocator reuses small buffers while large ones are mapped and zeroed afresh every pass.
    Models with batch statistics (batch norm) are always trained on whole batches: micro-batches would
    change what they compute. The largest activation is measured on one image of ``x``.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    return max(1, MICRO_BATCH_BYTES // activation_bytes(model, x))


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """The largest output of any leaf module of ``model`` for one image (the first of ``x``), in bytes."""
    largest = 0

    def record(module, inputs, output):
        nonlocal largest
        if isinstance(output, torch.Tensor) and output.dim() > 0:
            largest = max(largest, output[0].numel() * output.element_size())

    handles = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return max(largest, 1)


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
    progress_identity: Optional[Dict] = None,
) -> Dict[str, List[float]]:
    """Train ``model`` in place on ``data``; returns the mean loss per epoch.

    The loop runs on the model's device (the data move there once); under ``torchrun`` (see ``dcu.device``)
    each process takes its share of every global batch. ``loss_fn(model, x, y, idx)`` gives the mean loss
    of an (augmented) batch, ``idx`` its positions in ``data`` (on the CPU);
    methods that add terms (distillation, a forget-set signal) pass their own and keep this loop.
    ``on_epoch(epoch)`` runs before each epoch (e.g. to re-derive targets from the model as it is),
    ``on_step(step)`` after each optimizer step (e.g. to put back weights a hard mask freezes).
    With ``progress_file`` the full state (weights, optimiser, schedule, random generator) is saved
    atomically after every epoch and, when the file exists, training continues from it: a run killed at
    any point and resumed ends with exactly the weights of an uninterrupted run. ``progress_identity`` (the
    dataset, model and ids trained on) is saved with it, and a file made for anything else is refused.
    The returned ``segment_seconds`` lists the time of every segment (one per resume), so the whole
    training time is their sum.
    """
    if len(data) == 0:
        raise ValueError("Cannot train on an empty set of samples.")
    device = model_device(model)
    cuda = device.type == "cuda"
    world, rank = distributed_world()
    if cfg.batch_size < world:
        raise ValueError(f"The batch of {cfg.batch_size} cannot be split over {world} processes.")
    images, labels = on_device(data.images, device), on_device(data.labels, device)
    if cuda and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    # dropout and other global-RNG draws follow cfg.seed inside the loop; the caller's RNG is left as it was
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(cfg.seed)
        return _train_loop(model, net, images, labels, data, cfg, generator, device, loss_fn=loss_fn, desc=desc,
                           progress_file=progress_file, progress_identity=progress_identity, on_epoch=on_epoch,
                           on_step=on_step)


def _train_loop(model, net, images, labels, data, cfg, generator, device, *, loss_fn, desc, progress_file,
                progress_identity, on_epoch, on_step):
    """The loop of :func:`train`, under its seeded copy of the global RNG."""
    cuda = device.type == "cuda"
    world, rank = distributed_world()
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    schedule = make_schedule(optimizer, cfg, total)
    history: Dict[str, List[float]] = {"loss": []}
    model.train()
    step, first_epoch = 0, 0
    if progress_file is not None and Path(progress_file).exists():
        saved = _load_progress(progress_file, cfg, progress_identity)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        step, first_epoch, history = saved["step"], saved["epoch"], saved["history"]
    history.setdefault("segment_seconds", []).append(0.0)
    segment_start = time.perf_counter()
    micro = None
    if device.type == "cpu" and world == 1 and getattr(loss_fn, "per_sample", False):
        micro = cpu_micro_batch(model, images)
    bar = progress(range(first_epoch, cfg.epochs), desc=desc, unit="epoch", initial=first_epoch, total=cfg.epochs)
    for epoch in bar:
        if on_epoch is not None:
            on_epoch(epoch)
        order = torch.randperm(len(data), generator=generator)
        device_order = order.to(device, non_blocking=True)
        running, batches = torch.zeros((), device=device), 0
        for start in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            idx = order[start : start + cfg.batch_size]          # the global batch (positions, on the CPU)
            on_dev = device_order[start : start + cfg.batch_size]
            x, y = images[on_dev], labels[on_dev]
            if cfg.augment:
                x = augment_batch(x, flip=cfg.flip, padding=cfg.crop_padding, generator=generator)
            share = 1.0
            if world > 1:   # each process takes every world-th sample of the same global batch
                share = len(idx[rank::world]) * world / len(idx)
                x, y, idx = x[rank::world], y[rank::world], idx[rank::world]
            if cuda and x.dim() == 4:   # feature vectors (a head trained alone) have no channels
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            if micro is not None and len(x) > micro:
                loss = torch.zeros(())
                for part in range(0, len(x), micro):
                    piece = slice(part, part + micro)
                    part_loss = loss_fn(net, x[piece], y[piece], idx[piece]) * (len(y[piece]) / len(y))
                    part_loss.backward()
                    loss += part_loss.detach()
            else:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and cfg.amp):
                    loss = loss_fn(net, x, y, idx)
                (loss * share).backward()   # DDP averages over processes: weighted, the global batch's mean
            if not cuda and not torch.isfinite(loss):   # on a GPU checked once an epoch: no sync per step
                raise FloatingPointError(f"The training loss became {loss.item()} at step {step}; stopping ({desc}).")
            optimizer.step()
            schedule.step()
            if on_step is not None:
                on_step(step)
            running += loss.detach().float()
            batches += 1
            step += 1
        if batches:
            mean_loss = float(running) / batches
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"The training loss became {mean_loss} in epoch {epoch}; stopping ({desc}).")
            history["loss"].append(mean_loss)
            bar.set_postfix(loss=f"{mean_loss:.3f}")
        history["segment_seconds"][-1] = time.perf_counter() - segment_start
        if progress_file is not None and rank == 0:
            from .io import atomic_save

            atomic_save({"format": "dcu-train-progress", "config": asdict(cfg), "identity": progress_identity or {},
                         "epoch": epoch + 1, "step": step,
                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "generator": generator.get_state(),
                         "torch_rng": torch.get_rng_state(), "history": history}, progress_file)
        if step >= total:
            break
    history["segment_seconds"][-1] = time.perf_counter() - segment_start
    model.eval()
    return history


def _load_progress(path, cfg: TrainConfig, identity: Optional[Dict]) -> Dict:
    from .io import ArtifactError, clip, safe_load

    saved = safe_load(path, what="dcu training checkpoint")
    if not isinstance(saved, dict) or saved.get("format") != "dcu-train-progress":
        raise ArtifactError(f"{path} is not a dcu training checkpoint.")
    if saved.get("config") != asdict(cfg):
        raise ArtifactError(f"{path} is the checkpoint of a run with other settings ({clip(saved.get('config'), 200)}); "
                            "remove it or pass the same settings.")
    if identity is not None and saved.get("identity") != identity:
        differ = sorted(k for k in identity if (saved.get("identity") or {}).get(k) != identity[k])
        raise ArtifactError(f"{path} is the checkpoint of a run on another dataset or model (differs in "
                            f"{', '.join(differ) or 'its identity'}); remove it or resume the run it belongs to.")
    return saved


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``: moved once (from pinned memory, without blocking) when it is elsewhere."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def distributed_world() -> tuple:
    """(world size, rank) under ``torchrun`` (an initialised process group), else (1, 0)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


@torch.no_grad()
def _batched(fn, model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = model_device(model)
    if device.type == "cpu" and len(images) > 1:   # cache-sized passes: 2x faster here (see cpu_micro_batch)
        batch_size = min(batch_size, max(1, MICRO_BATCH_BYTES // activation_bytes(model, images)))
    out = [fn(on_device(images[i : i + batch_size], device)).float().cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` in eval mode, in batches on the model's device, returned on the CPU."""
    return _batched(model, model, images, batch_size)


def features(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate embeddings of ``model`` in eval mode, streamed in batches, returned on the CPU."""
    return _batched(model.forward_features, model, images, batch_size)


def accuracy(model: nn.Module, data: ImageSet) -> float:
    if len(data) == 0:
        return float("nan")
    return (predict(model, data.images).argmax(1) == data.labels).float().mean().item()


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p_y - log(1 - p_y) from logits (..., N, classes) and labels (N,), computed stably."""
    index = labels.view(-1, 1).expand(*logits.shape[:-1], 1)
    return logits.gather(-1, index).squeeze(-1) - logits.scatter(-1, index, float("-inf")).logsumexp(-1)


def per_sample_loss(model: nn.Module, data: ImageSet) -> torch.Tensor:
    return F.cross_entropy(predict(model, data.images), data.labels, reduction="none")
