"""Improved distribution matching (Zhao, Li, Qin & Yu, "Improved Distribution Matching for Dataset
Condensation", CVPR 2023; reference code uitrbn/IDM ``IDM_cifar10.py``, settings from its ``command.txt``).

Distribution matching (``dm``: per-class mean embeddings of real and synthetic images under DSA, SGD on the
pixels) with the paper's three changes:

- **partitioning and expansion**: each stored image holds ``factor x factor`` cells, started from as many
  bilinearly downscaled real images; what is matched, and what networks train on, is every cell upsampled to
  full size (the reference's ``--aug``, ``number_sign_augment``);
- **enriched model sampling**: instead of a fresh random network per iteration, a queue of networks that
  train on real data as condensation goes. A new random network joins every ``new_net_every`` iterations (the
  queue keeps the newest ``queue_size``); each iteration matches under one network drawn from the queue, then
  ``nets_trained`` networks drawn from it take ``train_steps`` SGD steps on random real batches;
- **class-aware regularisation**: the cross-entropy of the synthetic images under the matching network,
  weighted by ``ce_weight`` times that network's recent training accuracy in percent, as the reference does.

Where this differs from the reference: the classes are batched into one SGD step per iteration (the
reference steps once per class), one DSA family is drawn per iteration with parameters per class (the
reference draws a family per class), and a stopped run starts over (the queue is not checkpointed). A bucket is
a class, as ``dm``'s; a refresh re-runs IDM for the touched classes on their remaining members with a new queue,
which trains on the retain set alone, so nothing in a refreshed class saw a forgotten sample.
"""
from __future__ import annotations

import random as pyrandom
from dataclasses import dataclass
from typing import Dict, List

import torch
import torch.nn.functional as F

from dcu.models import create_model
from dcu.models.convnet import fit_depth
from dcu.seeds import derive
from dcu.train import on_device

from .base import Condenser, MatchingConfig, class_positions, cpu_chunk, new_set, register_condenser
from .dm import match_means
from .dsa import for_images
from .ncfm import decode, encode_init


@dataclass
class IDMConfig(MatchingConfig):
    iterations: int = 1000      # reference: 20,000 on a GPU
    lr_img: float = 0.2         # SGD on normalised pixels (reference)
    momentum: float = 0.5       # reference
    batch_real: int = 256       # real images per class per iteration (reference)
    factor: int = 2             # partitioning and expansion, 2 x 2 (reference)
    ce_weight: float = 0.5      # reference: 0.5 at IPC 1 and 10, 0.1 at IPC 50
    queue_size: int = 100       # reference net_num
    new_net_every: int = 30     # reference net_generate_interval
    nets_trained: int = 2       # reference fetch_net_num
    train_steps: int = 10       # reference model_train_steps
    train_batch: int = 256      # reference trained_bs
    lr_net: float = 0.01        # SGD, momentum 0.9, weight decay 5e-4 (reference with --net_decay)
    dsa: bool = True


@register_condenser
class IDM(Condenser):
    name = "idm"
    Config = IDMConfig

    def _new_net(self, channels: int, size: int, num_classes: int) -> Dict:
        cfg = self.cfg
        net = create_model("convnet", in_channels=channels, num_classes=num_classes, image_size=size,
                           width=cfg.net_width, depth=fit_depth(cfg.net_depth, size)).to(self.device)
        optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=0.9, weight_decay=5e-4)
        return {"net": net, "optimizer": optimizer, "accuracy": 0.0}

    def _match(self, images: torch.Tensor, labels: torch.Tensor, pools: List[torch.Tensor], classes: List[int],
               stored: torch.Tensor, stored_labels: torch.Tensor, num_classes: int, seed: int, desc: str) -> torch.Tensor:
        """Optimise ``stored`` (of ``classes``) against ``images[pools[i]]``; the queue trains on all of ``images``."""
        cfg, device = self.cfg, self.device
        images, labels = on_device(images, device), labels.to(device)
        channels, size = images.shape[1], images.shape[2]
        syn = stored.to(device).clone().requires_grad_(True)
        optimizer = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
        gen = torch.Generator().manual_seed(seed)
        picker = pyrandom.Random(seed)
        slot = {c: i for i, c in enumerate(classes)}
        syn_group = torch.tensor([slot[int(c)] for c in stored_labels], device=device).repeat(cfg.factor**2)
        syn_labels = stored_labels.to(device).repeat(cfg.factor**2)
        syn_count = torch.bincount(syn_group, minlength=len(classes)).clamp(min=1).unsqueeze(1)
        everyone = torch.arange(len(images))
        dsa = for_images(cfg.dsa_strategy, channels) if cfg.dsa else None
        chunk = cpu_chunk(cfg.net_width, size) if images.device.type == "cpu" else None
        torch.manual_seed(seed)   # the queue's first networks; later ones draw from the per-iteration seed
        queue = [self._new_net(channels, size, num_classes) for _ in range(3)]   # the reference starts with three
        self.history = []
        for iteration in self.iterations(desc, syn, optimizer, gen):
            if iteration % cfg.new_net_every == 0:
                queue = (queue + [self._new_net(channels, size, num_classes)])[-cfg.queue_size:]
            member = queue[picker.randrange(len(queue))]
            net = member["net"].eval().requires_grad_(False)
            loss, emb_syn = match_means(net, images, pools, decode(syn, cfg.factor), syn_group, dsa, gen, cfg.batch_real,
                                        chunk)
            if cfg.ce_weight > 0 and member["accuracy"] > 0:
                logits = net.forward_head(emb_syn)
                per_image = F.cross_entropy(logits, syn_labels, reduction="none")
                per_class = torch.zeros(len(classes), device=device).index_add(0, syn_group, per_image) / syn_count.squeeze(1)
                loss = loss + cfg.ce_weight * member["accuracy"] * per_class.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.history.append(loss.detach())
            for trained in pyrandom.Random(picker.random()).sample(queue, min(cfg.nets_trained, len(queue))):
                self._train_member(trained, images, labels, everyone, gen)
        self.history = [float(h) for h in self.history]
        return syn.detach().cpu()

    def _train_member(self, member: Dict, images: torch.Tensor, labels: torch.Tensor, everyone: torch.Tensor,
                      gen: torch.Generator) -> None:
        """``train_steps`` SGD steps on random real batches; the member's accuracy over them, in percent."""
        net, optimizer = member["net"].train().requires_grad_(True), member["optimizer"]
        correct = seen = 0
        for _ in range(self.cfg.train_steps):
            batch = everyone[torch.randperm(len(everyone), generator=gen)[: self.cfg.train_batch]].to(images.device)
            logits = net(images[batch])
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == labels[batch]).sum())
            seen += len(batch)
        member["accuracy"] = 100.0 * correct / max(seen, 1)

    def _initial(self, images: torch.Tensor, pools: List[torch.Tensor], count: int, gen: torch.Generator) -> torch.Tensor:
        out = []
        for pool in pools:
            need = count * self.cfg.factor**2
            picks = pool[torch.randperm(len(pool), generator=gen)[:need]]
            picks = picks.repeat(-(-need // len(picks)))[:need]
            out.append(encode_init(images[picks], self.cfg.factor, count, mode="bilinear"))
        return torch.cat(out)

    def build(self, train_set, num_classes, model):
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        pools = class_positions(train_set.labels, num_classes)
        labels = torch.arange(num_classes).repeat_interleave(cfg.ipc)
        stored = self._match(train_set.images, train_set.labels, pools, list(range(num_classes)),
                             self._initial(train_set.images, pools, cfg.ipc, gen), labels, num_classes, cfg.seed, "idm")
        decoded_labels = labels.repeat(cfg.factor**2)
        return new_set(decode(stored, cfg.factor), decoded_labels, decoded_labels.clone(), train_set.ids.clone(),
                       train_set.labels.clone(), state={"loss_history": list(self.history), "stored": stored})

    def remake(self, cset, buckets, retain, forget, *, old, forget_ids):
        cfg = self.cfg
        classes = [int(b) for b in buckets]   # a bucket is a class
        rows = torch.isin(cset.image_bucket, buckets)
        counts = {c: int((cset.image_bucket[rows] == c).sum()) // cfg.factor**2 for c in classes}
        if len(set(counts.values())) != 1:
            raise ValueError("idm re-makes classes that hold the same number of images; this set's differ.")
        gen = torch.Generator().manual_seed(derive(cfg.seed, "refresh"))
        pools = [retain.positions(cset.bucket_members(c)) for c in classes]
        count = counts[classes[0]]
        labels = torch.tensor(classes).repeat_interleave(count)
        stored = self._match(retain.images, retain.labels, pools, classes, self._initial(retain.images, pools, count, gen),
                             labels, len(cset.source["classes"]), derive(cfg.seed, "refresh"), "idm refresh")
        decoded, decoded_labels = decode(stored, cfg.factor), labels.repeat(cfg.factor**2)
        # the set lists cell k of every stored image before cell k + 1; within a class both keep that order
        order = torch.argsort(torch.tensor([classes.index(int(c)) for c in cset.image_bucket[rows]]), stable=True)
        ours = torch.argsort(torch.tensor([classes.index(int(c)) for c in decoded_labels]), stable=True)
        out = torch.empty_like(decoded)
        out[order] = decoded[ours]
        return out
