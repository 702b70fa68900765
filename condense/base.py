"""The ``CondensedSet`` artifact, the ``Condenser`` interface and the condensation registry.

A condensed set holds synthetic images and labels and, for each image, the *bucket* of training ids it
summarises (one id for a coreset image, a K-means cluster for ``fdm``, a whole class for ``dm``).
``refresh(forget_ids, retain)`` re-makes every image whose bucket holds a forget id from the bucket's
remaining members, or drops it when none remain, so no synthetic image depends on a forgotten sample.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from dcu.data import DatasetSplits, ImageSet
from dcu.io import ArtifactError, atomic_save, ids_hash, safe_load
from dcu.progress import progress
from dcu.registry import Registry
from dcu.train import MICRO_BATCH_BYTES

CONDENSERS = Registry("condensation method")
FORMAT = "dcu-condensed"
FORMAT_VERSION = 1


@dataclass
class CondensedSet:
    images: torch.Tensor                 # (K, C, H, W), normalised like the source dataset
    labels: torch.Tensor                 # (K,)
    image_bucket: torch.Tensor           # (K,) the bucket each image summarises
    members: torch.Tensor                # (M,) training ids that buckets hold
    member_bucket: torch.Tensor          # (M,) the bucket of each member
    method: str
    config: Dict[str, Any]
    source: Dict[str, Any]               # dataset, num_train, id-set hash, model hash, classes, normalisation
    member_state: Dict[str, torch.Tensor] = field(default_factory=dict)  # per-member rows, dropped with members
    bucket_state: Dict[str, torch.Tensor] = field(default_factory=dict)  # per-bucket rows
    state: Dict[str, Any] = field(default_factory=dict)                  # method-specific (e.g. its extractor)
    history: List[Dict[str, Any]] = field(default_factory=list)          # refreshes applied, oldest first
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def as_imageset(self) -> ImageSet:
        """The synthetic images as a training set (ids -1, -2, ... : they are no training samples)."""
        return ImageSet(self.images, self.labels, -1 - torch.arange(len(self.labels)))

    def buckets_with(self, ids: torch.Tensor) -> torch.Tensor:
        hit = torch.isin(self.members, torch.as_tensor(ids, dtype=torch.long))
        return torch.unique(self.member_bucket[hit])

    def bucket_members(self, bucket: int) -> torch.Tensor:
        return self.members[self.member_bucket == bucket]

    def refresh(self, forget_ids: torch.Tensor, retain: ImageSet, forget: Optional[ImageSet] = None,
                device: str | torch.device = "cpu") -> "CondensedSet":
        """A new set in which no image depends on a forget id (this one is left as it is).

        ``retain`` must hold the remaining members (the retain set does); ``forget``, when given, lets a
        method update bucket statistics from the forgotten samples alone instead of recomputing them.
        ``device`` is where a method that computes (dm, dc, fdm) does so; the new set is on the CPU.
        """
        start = time.perf_counter()
        forget_ids = torch.as_tensor(forget_ids, dtype=torch.long)
        affected = self.buckets_with(forget_ids)
        keep = ~torch.isin(self.members, forget_ids)
        new = CondensedSet(
            images=self.images.clone(), labels=self.labels.clone(), image_bucket=self.image_bucket.clone(),
            members=self.members[keep], member_bucket=self.member_bucket[keep], method=self.method,
            config=dict(self.config), source=dict(self.source),
            member_state={k: v[keep] for k, v in self.member_state.items()},
            bucket_state={k: v.clone() for k, v in self.bucket_state.items()},
            state=self.state, history=list(self.history), timings=dict(self.timings),
        )
        emptied = affected[~torch.isin(affected, new.member_bucket)]
        remade = affected[torch.isin(affected, new.member_bucket)]
        condenser = get_condenser(self.method, **self.config).to(device)
        if condenser.shared_state and len(affected):   # every image depends on every member: re-make them all
            remade = torch.unique(new.image_bucket[torch.isin(new.image_bucket, new.member_bucket)])
        if len(remade):
            rows = torch.isin(new.image_bucket, remade)
            new.images[rows] = condenser.remake(new, remade, retain, forget, old=self, forget_ids=forget_ids)
        if len(emptied):
            keep_images = ~torch.isin(new.image_bucket, emptied)
            new.images, new.labels = new.images[keep_images], new.labels[keep_images]
            new.image_bucket = new.image_bucket[keep_images]
        seconds = time.perf_counter() - start
        new.history.append({"forget_hash": ids_hash(forget_ids), "forget_count": int(len(forget_ids)),
                            "buckets_remade": int(len(remade)), "buckets_dropped": int(len(emptied)),
                            "images_after": int(len(new.labels)), "seconds": seconds})
        return new

    # --- I/O --------------------------------------------------------------------------------------------
    def payload(self) -> Dict[str, Any]:
        """What the file holds: a header and every field."""
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION}
        payload.update({f.name: getattr(self, f.name) for f in fields(self)})
        # a live module kept in memory (the extractor of a wrapped model) is never written: files hold tensors
        payload["state"] = {k: {kk: vv for kk, vv in v.items() if kk != "module"} if isinstance(v, dict) else v
                            for k, v in payload["state"].items()}
        return payload

    def save(self, path: str | os.PathLike) -> None:
        atomic_save(self.payload(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CondensedSet":
        payload = safe_load(path, what="dcu condensed set")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ArtifactError(f"{path} is not a dcu condensed set; make one with `dcu condense`.")
        return cls(**{f.name: payload[f.name] for f in fields(cls)})

    def check_fits(self, splits: DatasetSplits, path: Optional[str] = None) -> None:
        where = f"{path}: " if path else ""
        src = self.source
        if src.get("dataset") != splits.name or src.get("num_train") != splits.num_ids:
            raise ArtifactError(
                f"{where}the condensed set was made from {src.get('dataset')} with {src.get('num_train')} training "
                f"samples, not {splits.name} with {splits.num_ids}."
            )
        if list(self.images.shape[1:]) != list(splits.input_shape):
            raise ArtifactError(f"{where}images of shape {tuple(self.images.shape[1:])} do not fit {splits.input_shape}.")


@dataclass
class CondenseConfig:
    """Settings every method shares; a method's config subclasses this."""

    ipc: int = 10       # images per class
    seed: int = 0


@dataclass
class MatchingConfig(CondenseConfig):
    """Settings the matching methods (dc, dsa, dm) share: the random ConvNets, DSA, a time budget."""

    net_width: int = 128        # the randomly initialised ConvNet's width and depth (reference ConvNet)
    net_depth: int = 3
    dsa: bool = False
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    max_seconds: Optional[float] = None   # stop early once this much time is spent (a CPU budget)


class Condenser:
    """Base class: a method implements ``build`` (and ``remake`` when its buckets hold several ids)."""

    name: str = ""
    Config = CondenseConfig
    needs_model: bool = False
    shared_state: bool = False   # images share learned state (e.g. one inverter), so a refresh re-makes all of them

    def __init__(self, cfg: Optional[CondenseConfig] = None, **kwargs: Any):
        self.cfg = cfg if cfg is not None else self.Config(**kwargs)
        self.progress_path: Optional[Path] = None   # where an iterative method checkpoints its progress
        self.progress_every: int = 50               # ... every this many iterations
        self.history: List[float] = []              # the matching loss per iteration, for the loss plot
        self.device = torch.device("cpu")           # where an iterative method computes (dm so far)
        self.normalisation = ((0.0,), (1.0,))       # the dataset's per-channel mean and std, set by ``condense``
        self.identity: Dict[str, Any] = {}          # what a progress file must have been made for
        self.earlier_seconds = 0.0                  # condensation time before a resume
        self.started = time.perf_counter()

    def to(self, device: str | torch.device) -> "Condenser":
        self.device = torch.device(device)
        return self

    def resumable(self, path: str | os.PathLike, every: int = 50, identity: Optional[Dict[str, Any]] = None) -> "Condenser":
        """Checkpoint progress to ``path`` every ``every`` iterations and continue from it when it exists.

        A run resumed from such a file reaches the same synthetic set as an uninterrupted run with the same
        seed: the images, the optimiser's state and the random generator are all saved. ``identity`` (the
        dataset, the ids and the model condensed) is saved too, and a file made for anything else is refused.
        Time spent before a resume is counted in ``condense_seconds``.
        """
        if every < 1:
            raise ValueError(f"The checkpoint interval must be at least 1 iteration. Got {every}.")
        self.progress_path, self.progress_every, self.identity = Path(path), every, identity or {}
        return self

    def load_progress(self, tag: str) -> Optional[Dict[str, Any]]:
        if self.progress_path is None or not self.progress_path.exists():
            return None
        saved = safe_load(self.progress_path, what="dcu condensation checkpoint")
        if not isinstance(saved, dict) or saved.get("format") != "dcu-condense-progress":
            raise ArtifactError(f"{self.progress_path} is not a dcu condensation checkpoint.")
        if (saved.get("method") != self.name or saved.get("config") != asdict(self.cfg) or saved.get("tag") != tag
                or saved.get("identity", {}) != self.identity):
            raise ArtifactError(f"{self.progress_path} is the checkpoint of another run ({saved.get('method')}, "
                                f"{saved.get('tag')}, {saved.get('identity')}); remove it or pass the same data, model "
                                "and settings.")
        return saved

    def resume(self, tag: str, syn: torch.Tensor, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
        """Load saved progress into the synthetic images, optimiser and generator; returns the next iteration."""
        saved = self.load_progress(tag)
        if saved is None:
            return 0
        with torch.no_grad():
            syn.copy_(saved["syn"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        self.history = list(saved["history"])
        self.earlier_seconds = float(saved.get("elapsed_seconds", 0.0))
        return saved["iteration"]

    def iterations(self, tag: str, syn: torch.Tensor, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                   max_seconds: Optional[float] = None, total: Optional[int] = None):
        """The iteration numbers still to run (after a resume) of ``total`` (default: the config's ``iterations``),
        within ``max_seconds`` (default: the config's), each with the global seed drawn from ``generator`` so the
        random networks are the same in a resumed run."""
        cfg = self.cfg
        limit = cfg.max_seconds if max_seconds is None else max_seconds
        total = cfg.iterations if total is None else total
        first = self.resume(tag, syn, optimizer, generator)
        started = time.perf_counter()
        for iteration in progress(range(first, total), desc=tag, unit="it", initial=first, total=total):
            if limit is not None and time.perf_counter() - started > limit:
                return
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            yield iteration

    def save_progress(self, tag: str, iteration: int, total: int, **state: Any) -> None:
        if self.progress_path is None or (iteration % self.progress_every and iteration != total):
            return
        elapsed = self.earlier_seconds + time.perf_counter() - self.started
        atomic_save({"format": "dcu-condense-progress", "method": self.name, "config": asdict(self.cfg), "tag": tag,
                     "identity": self.identity, "iteration": iteration, "history": list(self.history),
                     "elapsed_seconds": elapsed, **state}, self.progress_path)

    def condense(self, splits: DatasetSplits, model: Optional[nn.Module] = None, model_hash: str = "") -> CondensedSet:
        if self.needs_model and model is None:
            raise ValueError(f"Condensation method '{self.name}' needs a trained model (--model original.pt).")
        train = splits.train
        if self.cfg.ipc < 1:
            raise ValueError(f"ipc (images per class) must be at least 1. Got {self.cfg.ipc}.")
        counts = torch.bincount(train.labels, minlength=splits.num_classes)
        if int(counts.min()) < self.cfg.ipc:
            raise ValueError(f"ipc={self.cfg.ipc} but class {int(counts.argmin())} has only {int(counts.min())} images.")
        torch.manual_seed(self.cfg.seed)
        self.normalisation = (tuple(splits.mean), tuple(splits.std))
        start = self.started = time.perf_counter()
        cset = self.build(train, splits.num_classes, model)
        if not torch.isfinite(cset.images).all():
            raise FloatingPointError(f"Condensation with '{self.name}' produced non-finite images (settings "
                                     f"{asdict(self.cfg)}); nothing was written. Lower the learning rates.")
        cset.method, cset.config = self.name, asdict(self.cfg)
        cset.source = {"dataset": splits.name, "num_train": splits.num_ids, "train_ids_hash": ids_hash(train.ids),
                       "model_hash": model_hash, "classes": list(splits.classes), "mean": list(splits.mean),
                       "std": list(splits.std), "input_shape": list(splits.input_shape)}
        cset.timings["condense_seconds"] = self.earlier_seconds + time.perf_counter() - start
        return cset

    def build(self, train: ImageSet, num_classes: int, model: Optional[nn.Module]) -> CondensedSet:
        raise NotImplementedError

    def remake(self, cset: CondensedSet, buckets: torch.Tensor, retain: ImageSet, forget: Optional[ImageSet], *,
               old: CondensedSet, forget_ids: torch.Tensor) -> torch.Tensor:
        """New images for the images of ``buckets`` (in their order in ``cset``), from remaining members only."""
        raise NotImplementedError(f"Condensation method '{self.name}' cannot re-make a bucket.")


def cpu_chunk(width: int, size: int) -> int:
    """Images per pass of a matching network on a CPU: as many as keep the first block's activation under
    ~8 MiB. Measured on this project's 2-core Xeon (ConvNet-128, CIFAR, dm with batch_real 256): an iteration
    in passes of 16 images takes 1.5 s, in one pass per 256-image class 2.5-2.9 s, because activations that
    size are freshly mapped and zeroed by the allocator on every pass while small ones are reused."""
    return max(1, MICRO_BATCH_BYTES // (4 * width * size * size))


def new_set(images, labels, image_bucket, members, member_bucket, **extra) -> CondensedSet:
    return CondensedSet(images=images, labels=labels, image_bucket=image_bucket, members=members,
                        member_bucket=member_bucket, method="", config={}, source={}, **extra)


def register_condenser(cls):
    CONDENSERS.register(cls.name)(cls)
    return cls


def get_condenser(name: str, **cfg: Any) -> Condenser:
    return CONDENSERS.create(name, **cfg)


def list_condensers() -> List[str]:
    return CONDENSERS.names()


def load_condensed(path: str | os.PathLike) -> CondensedSet:
    return CondensedSet.load(path)


def class_positions(labels: torch.Tensor, num_classes: int) -> List[torch.Tensor]:
    return [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
