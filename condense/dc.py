"""Dataset condensation with gradient matching (DC; Zhao, Mopuri & Bilen, ICLR 2021) and with Differentiable
Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021). Reference: VICO-UoE/DatasetCondensation ``main.py``.

Each iteration draws a fresh ConvNet. For ``outer_loop`` steps the synthetic images of every class are moved
(SGD, lr 0.1, momentum 0.5) so that the gradient of the classification loss on them matches, layer by layer,
the gradient on a real batch of the class (the reference's layer-wise distance: per output unit,
1 − cosine of the weight gradients; biases and norm parameters are skipped). Between outer steps the network
trains ``inner_loop`` epochs on the synthetic set. Loops per IPC follow the reference (1: 1/1, 10: 10/50,
50: 50/10). ``dsa`` applies the same random augmentation to the real and the synthetic batch of a step.
A DC image summarises its whole class, so a refresh re-runs the matching for the classes a request touches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcu.models import create_model
from dcu.models.convnet import fit_depth
from dcu.seeds import derive
from dcu.train import on_device

from .base import Condenser, MatchingConfig, class_positions, cpu_chunk, new_set, register_condenser
from .dsa import for_images

LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def loops_for(ipc: int) -> Tuple[int, int]:
    """The reference's (outer, inner) loops; between listed IPCs, those of the nearest one below."""
    return LOOPS[max(k for k in LOOPS if k <= ipc)]


def layer_distance(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """The reference's ``distance_wb``: Σ over output units of 1 − cos, for conv and linear weights."""
    if real.dim() == 1:
        return torch.zeros((), dtype=syn.dtype, device=syn.device)
    real, syn = real.flatten(1), syn.flatten(1)
    cos = (real * syn).sum(1) / (real.norm(dim=1) * syn.norm(dim=1) + 1e-6)
    return (1 - cos).sum()


def mean_gradient(net: nn.Module, params: List[torch.Tensor], real: torch.Tensor, label: int,
                  chunk: int) -> List[torch.Tensor]:
    """The gradient of the mean cross-entropy of ``real`` (all of class ``label``), summed over passes of
    ``chunk`` images: the same number as one pass for networks without batch statistics (ConvNet)."""
    total = [torch.zeros_like(p) for p in params]
    for part in real.split(chunk):
        target = torch.full((len(part),), label, dtype=torch.long, device=part.device)
        loss = F.cross_entropy(net(part), target, reduction="sum") / len(real)
        for acc, g in zip(total, torch.autograd.grad(loss, params)):
            acc += g
    return total


@dataclass
class DCConfig(MatchingConfig):
    iterations: int = 1000       # reference
    lr_img: float = 0.1          # reference
    momentum: float = 0.5
    lr_net: float = 0.01
    batch_real: int = 256
    batch_train: int = 256
    outer_loop: Optional[int] = None   # None: the reference's value for this IPC
    inner_loop: Optional[int] = None


@register_condenser
class GradientMatching(Condenser):
    name = "dc"
    Config = DCConfig

    def _match(self, images, pools: List[torch.Tensor], classes: List[int], syn: torch.Tensor,
               syn_labels: torch.Tensor, num_classes: int, seed: int, desc: str) -> torch.Tensor:
        cfg = self.cfg
        device = self.device
        outer, inner = loops_for(cfg.ipc)
        outer, inner = cfg.outer_loop or outer, cfg.inner_loop or inner
        images, syn_labels = on_device(images, device), syn_labels.to(device)
        syn = syn.to(device).clone().requires_grad_(True)
        optimizer_img = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        gen = torch.Generator().manual_seed(seed)
        dsa = for_images(cfg.dsa_strategy, images.shape[1]) if cfg.dsa else None
        channels, size = images.shape[1], images.shape[2]
        rows = [torch.nonzero(syn_labels == c).flatten() for c in classes]
        chunk = cpu_chunk(cfg.net_width, size) if images.device.type == "cpu" else None
        losses = []
        for iteration in self.iterations(desc, syn, optimizer_img, gen):
            net = create_model("convnet", in_channels=channels, num_classes=num_classes, image_size=size,
                               width=cfg.net_width, depth=fit_depth(cfg.net_depth, size)).to(device)
            params = list(net.parameters())
            optimizer_net = torch.optim.SGD(params, lr=cfg.lr_net)
            for step in range(outer):
                loss = torch.zeros((), device=device)
                for c, pool, row in zip(classes, pools, rows):
                    pick = pool[torch.randperm(len(pool), generator=gen)[: cfg.batch_real]]
                    real = images[pick.to(device, non_blocking=True)]
                    fake = syn[row]
                    if dsa is not None:
                        params_aug = dsa.sample(gen)
                        real, fake = dsa(real, params_aug), dsa(fake, params_aug)
                    g_real = mean_gradient(net, params, real, c, chunk or len(real))
                    g_syn = torch.autograd.grad(F.cross_entropy(net(fake), syn_labels[row]), params, create_graph=True)
                    loss = loss + sum(layer_distance(r.detach(), s) for r, s in zip(g_real, g_syn))
                optimizer_img.zero_grad(set_to_none=True)
                loss.backward()
                optimizer_img.step()
                if step == outer - 1:
                    break
                train_images, train_labels = syn.detach(), syn_labels
                for _ in range(inner):
                    order = torch.randperm(len(train_images), generator=gen).to(device, non_blocking=True)
                    for start in range(0, len(order), cfg.batch_train):
                        idx = order[start : start + cfg.batch_train]
                        x = train_images[idx]
                        if dsa is not None:
                            x = dsa.random(x, gen)
                        net_loss = F.cross_entropy(net(x), train_labels[idx])
                        optimizer_net.zero_grad(set_to_none=True)
                        net_loss.backward()
                        optimizer_net.step()
            losses.append(loss.detach())   # read back when saved: no device sync per iteration
            if self.progress_path is not None:
                self.history += [float(x) for x in losses]
                losses = []
                self.save_progress(desc, iteration + 1, cfg.iterations, syn=syn.detach().cpu(),
                                   optimizer=optimizer_img.state_dict(), generator=gen.get_state())
        self.history += [float(x) for x in losses]
        return syn.detach().cpu()

    def build(self, train, num_classes, model: Optional[nn.Module]):
        self.history = []
        gen = torch.Generator().manual_seed(self.cfg.seed)
        pools = class_positions(train.labels, num_classes)
        init = torch.cat([pool[torch.randperm(len(pool), generator=gen)[: self.cfg.ipc]] for pool in pools])
        labels = train.labels[init].clone()
        syn = self._match(train.images, pools, list(range(num_classes)), train.images[init], labels, num_classes,
                          self.cfg.seed, self.name)
        return new_set(syn, labels, labels.clone(), train.ids.clone(), train.labels.clone(),
                       state={"loss_history": list(self.history)})

    def remake(self, cset, buckets, retain, forget, *, old, forget_ids):
        self.history = []
        classes = [int(b) for b in buckets]  # a DC bucket is a class
        rows = torch.isin(cset.image_bucket, buckets)
        pools = [retain.positions(cset.bucket_members(c)) for c in classes]
        gen = torch.Generator().manual_seed(derive(self.cfg.seed, "refresh"))
        init = torch.cat([pool[torch.randperm(len(pool), generator=gen)[: int((cset.image_bucket[rows] == c).sum())]]
                          for c, pool in zip(classes, pools)])
        return self._match(retain.images, pools, classes, retain.images[init], cset.labels[rows],
                           len(cset.source["classes"]), derive(self.cfg.seed, "refresh"), f"{self.name} refresh")


@dataclass
class DSAConfig(DCConfig):
    dsa: bool = True


@register_condenser
class DSAMatching(GradientMatching):
    name = "dsa"
    Config = DSAConfig
