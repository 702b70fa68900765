"""Distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution Matching", WACV 2023;
reference code VICO-UoE/DatasetCondensation ``main_DM.py``).

Each iteration samples a freshly initialised ConvNet, embeds a real batch and the synthetic images of
every class, and moves the synthetic pixels (SGD, lr 1, momentum 0.5) to match the per-class mean
embeddings, both batches under the same DSA augmentation as in the reference (``dsa``; one family per step,
one parameter draw per class). The classes are batched into one forward pass: the ConvNet's instance norm works per image,
so this is the same objective as the reference's per-class loop. Images start from real ones. A DM image
summarises its whole class, so a refresh re-runs DM on the class's remaining members.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from dcu.models import create_model
from dcu.models.convnet import fit_depth
from dcu.seeds import derive
from dcu.train import on_device

from .base import Condenser, MatchingConfig, class_positions, cpu_chunk, new_set, register_condenser
from .dsa import for_images


@dataclass
class DMConfig(MatchingConfig):
    iterations: int = 1000      # reference: 20,000 on a GPU
    lr_img: float = 1.0         # reference lr_img for DM
    momentum: float = 0.5       # reference
    batch_real: int = 256       # real images per class per iteration (reference)
    dsa: bool = True            # the reference matches under DSA (one draw per class, shared by real and synthetic)


def match_means(net: torch.nn.Module, images: torch.Tensor, pools: List[torch.Tensor], syn: torch.Tensor,
                syn_group: torch.Tensor, dsa, gen: torch.Generator, batch_real: int, chunk: Optional[int]):
    """DM's objective: the squared distance between each group's mean embedding of a real batch (``batch_real``
    images drawn from ``pools[g]``) and of the synthetic images of group ``g`` (``syn_group``), both under one
    DSA draw per group when ``dsa`` is given. Returns the loss and the synthetic embeddings."""
    device, groups = syn.device, len(pools)
    picks = [pool[torch.randperm(len(pool), generator=gen)[:batch_real]] for pool in pools]
    real = images[torch.cat(picks).to(device, non_blocking=True)]
    real_group = torch.cat([torch.full((len(p),), i) for i, p in enumerate(picks)]).to(device, non_blocking=True)
    if dsa is not None:
        per_group = {k: (v if k == "family" else v.to(device, non_blocking=True)) for k, v in dsa.sample(gen, groups).items()}
        real, syn = dsa(real, dsa.take(per_group, real_group)), dsa(syn, dsa.take(per_group, syn_group))
    with torch.no_grad():
        emb_real = torch.cat([net.forward_features(part) for part in real.split(chunk or len(real))])
    mean_real = torch.zeros(groups, emb_real.shape[1], device=device).index_add_(0, real_group, emb_real)
    mean_real /= torch.bincount(real_group, minlength=groups).clamp(min=1).unsqueeze(1)
    emb_syn = torch.cat([net.forward_features(part) for part in syn.split(chunk or len(syn))])
    syn_count = torch.bincount(syn_group, minlength=groups).clamp(min=1).unsqueeze(1)
    mean_syn = torch.zeros(groups, emb_syn.shape[1], device=device).index_add(0, syn_group, emb_syn) / syn_count
    return ((mean_real - mean_syn) ** 2).sum(), emb_syn


@register_condenser
class DistributionMatching(Condenser):
    name = "dm"
    Config = DMConfig

    def _match(self, images: torch.Tensor, labels: torch.Tensor, pools: List[torch.Tensor], classes: List[int],
               syn: torch.Tensor, syn_labels: torch.Tensor, seed: int, desc: str) -> torch.Tensor:
        """Optimise ``syn`` (for ``classes``) against real images ``images[pools[i]]`` of ``classes[i]``."""
        cfg = self.cfg
        device = self.device
        images = on_device(images, device)
        syn = syn.to(device).clone().requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        gen = torch.Generator().manual_seed(seed)
        in_ch, size = images.shape[1], images.shape[2]
        slot = {c: i for i, c in enumerate(classes)}
        syn_group = torch.tensor([slot[int(c)] for c in syn_labels], device=device)
        dsa = for_images(cfg.dsa_strategy, images.shape[1]) if cfg.dsa else None
        chunk = cpu_chunk(cfg.net_width, size) if images.device.type == "cpu" else None
        self.history = []
        for iteration in self.iterations(desc, syn, optimizer, gen):
            net = create_model("convnet", in_channels=in_ch, num_classes=1, image_size=size, width=cfg.net_width,
                               depth=fit_depth(cfg.net_depth, size)).to(device)
            net.requires_grad_(False)
            loss, _ = match_means(net, images, pools, syn, syn_group, dsa, gen, cfg.batch_real, chunk)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.history.append(loss.detach())   # read back once at the end: no device sync per iteration
            if self.progress_path is not None and ((iteration + 1) % self.progress_every == 0
                                                   or iteration + 1 == cfg.iterations):
                self.history = [float(h) for h in self.history]
                self.save_progress(desc, iteration + 1, cfg.iterations, syn=syn.detach().cpu(),
                                   optimizer=optimizer.state_dict(), generator=gen.get_state())
        self.history = [float(h) for h in self.history]
        return syn.detach().cpu()

    def build(self, train, num_classes, model: Optional[torch.nn.Module]):
        gen = torch.Generator().manual_seed(self.cfg.seed)
        pools = class_positions(train.labels, num_classes)
        init = torch.cat([pool[torch.randperm(len(pool), generator=gen)[: self.cfg.ipc]] for pool in pools])
        syn = self._match(train.images, train.labels, pools, list(range(num_classes)), train.images[init],
                          train.labels[init], self.cfg.seed, "dm")
        labels = train.labels[init].clone()
        return new_set(syn, labels, labels.clone(), train.ids.clone(), train.labels.clone(),
                       state={"loss_history": list(self.history)})

    def remake(self, cset, buckets, retain, forget, *, old, forget_ids):
        classes = [int(b) for b in buckets]  # a DM bucket is a class
        rows = torch.isin(cset.image_bucket, buckets)
        pools = [retain.positions(cset.bucket_members(c)) for c in classes]
        gen = torch.Generator().manual_seed(derive(self.cfg.seed, "refresh"))
        init = torch.cat([pool[torch.randperm(len(pool), generator=gen)[: int((cset.image_bucket[rows] == c).sum())]]
                          for c, pool in zip(classes, pools)])
        return self._match(retain.images, retain.labels, pools, classes, retain.images[init],
                           cset.labels[rows], derive(self.cfg.seed, "refresh"), "dm refresh")
