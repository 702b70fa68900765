"""A store of shadow models for the likelihood-ratio attacks (LiRA, RMIA).

Each shadow model trains, with the target's architecture and schedule, on a random half (``keep``) of a
*pool* of training ids (the training split and its held-out part: every id has shadows that saw it and
shadows that did not). LiRA's shadows keep half; a reference for dcu's targets may keep more, so that its
OUT models are closer in size to a retrained one. The store keeps, per shadow, its membership mask over the pool and its logits on every pool image
(eval mode, the image and its horizontal flip when the data are flipped in training), so an attack never
re-runs a shadow model, and its weights (for attacks that unlearn shadows, such as U-LiRA). One file per shadow, written atomically: a run stopped at any point resumes where
it was, and ``shard=(i, n)`` lets n machines fill one store (shadow k belongs to shard k mod n); the store
is merged by simply reading every shadow file present.

    store = ShadowStore.create(path, splits, original, meta, count=16)   # or ShadowStore(path) to open
    store.fill(splits, shard=(0, 1))
    logits, masks = store.load(ids)        # (shadows, len(ids), queries, classes), (shadows, len(ids))
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from dcu.data import DatasetSplits, ImageSet
from dcu.io import ArtifactError, atomic_save, atomic_write_json, ids_hash, safe_load
from dcu.models import create_model
from dcu.progress import progress, quiet
from dcu.seeds import derive
from dcu.train import TrainConfig, predict, train

MANIFEST = "manifest.json"


def queries(images: torch.Tensor, flip: bool) -> torch.Tensor:
    """The images an attack queries a model with: the image, and its mirror when training flipped images."""
    return torch.stack([images, images.flip(3)], 1) if flip else images.unsqueeze(1)


@torch.no_grad()
def query_logits(model: nn.Module, images: torch.Tensor, flip: bool) -> torch.Tensor:
    """(N, queries, classes) logits of ``model`` in eval mode."""
    q = queries(images, flip)
    n, k = q.shape[:2]
    return predict(model, q.flatten(0, 1)).view(n, k, -1)


class ShadowStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.exists():
            raise FileNotFoundError(f"{self.path} is not a shadow-model store (no {MANIFEST}); make one with "
                                    "`dcu shadows`.")
        self.manifest: Dict[str, Any] = json.loads(manifest.read_text())
        self.pool = torch.tensor(self.manifest["pool_ids"], dtype=torch.long)

    # --- creation -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, splits: DatasetSplits, meta: Dict[str, Any], *, count: int = 16,
               seed: int = 0, keep: float = 0.5) -> "ShadowStore":
        """A new (empty) store for models like the one ``meta`` describes; reopening an existing store with
        the same settings is allowed (that is how a stopped run or another shard continues), also when the
        held-out split has grown since: the pool it was made with stays the pool."""
        if count < 2:
            raise ValueError(f"A shadow store needs at least 2 models (some in, some out). Got {count}.")
        if not 0 < keep < 1:
            raise ValueError(f"keep is the share of the pool each shadow trains on, in (0, 1). Got {keep}.")
        path = Path(path)
        pool = splits.train.ids if splits.val is None else torch.cat([splits.train.ids, splits.val.ids])
        pool = torch.sort(pool).values
        manifest = {"format": "dcu-shadow-store", "dataset": splits.name, "num_ids": splits.num_ids,
                    "pool_ids": pool.tolist(), "pool_hash": ids_hash(pool), "count": count, "seed": seed,
                    "arch": meta["arch"], "arch_args": meta["arch_args"],
                    "train_config": _schedule(meta["train_config"])}
        if keep != 0.5:   # stores made before ``keep`` existed keep half and have no such key
            manifest["keep"] = keep
        existing = path / MANIFEST
        if existing.exists():
            old = json.loads(existing.read_text())
            manifest = json.loads(json.dumps(manifest))   # compare as stored (tuples read back as lists)
            if isinstance(old.get("train_config"), dict):   # stores made before the target's seed was left out
                old["train_config"] = _schedule(old["train_config"])
            differ = [k for k in manifest if k not in ("pool_ids", "pool_hash", "keep") and old.get(k) != manifest[k]]
            if old.get("keep", 0.5) != keep:
                differ.append("keep")
            old_pool = torch.tensor(old["pool_ids"], dtype=torch.long)
            # a store made with a smaller held-out split still serves: its pool holds every training id
            if not (torch.isin(splits.train.ids, old_pool).all() and torch.isin(old_pool, pool).all()):
                differ.append("pool_hash")
            if differ:
                raise ArtifactError(f"{path} holds a shadow store made with other settings ({', '.join(differ)}); "
                                    "use another folder.")
        else:
            atomic_write_json(manifest, existing)
        return cls(path)

    @classmethod
    def open_for(cls, path: str | Path, splits: DatasetSplits, meta: Dict[str, Any]) -> "ShadowStore":
        """An existing store, checked to hold shadows of the model ``meta`` describes on these splits (the same
        check as reopening it with its own count, seed and share)."""
        manifest = cls(path).manifest
        return cls.create(path, splits, meta, count=manifest["count"], seed=manifest["seed"],
                          keep=manifest.get("keep", 0.5))

    def mask(self, index: int) -> torch.Tensor:
        """Shadow ``index``'s training share of the pool (seeded, so every shard draws the same masks), less any
        id pruned from the store after a deletion request."""
        gen = torch.Generator().manual_seed(self.manifest["seed"] * 100_003 + index)
        excluded = torch.tensor(self.manifest.get("excluded_ids", []), dtype=torch.long)
        keep = self.manifest.get("keep", 0.5)
        return (torch.rand(len(self.pool), generator=gen) < keep) & ~torch.isin(self.pool, excluded)

    # --- deletion requests ----------------------------------------------------------------------------
    def trained_on(self, ids: torch.Tensor) -> Dict[int, int]:
        """Shadow index -> how many of ``ids`` its stored model trained on (such a model is a copy of them)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        pos = self.positions(ids[self.contains(ids)]) if len(ids) else torch.empty(0, dtype=torch.long)
        out = {}
        for i in self.done():
            saved = safe_load(self.file(i), what="dcu shadow model")
            count = int(saved["mask"][pos].sum()) if isinstance(saved, dict) and "mask" in saved else 0
            if count:
                out[i] = count
        return out

    def prune(self, ids: torch.Tensor) -> list:
        """Delete every shadow that trained on any of ``ids`` and exclude them from this store's masks, so
        `dcu shadows` retrains those shadows without them. Returns the deleted indices."""
        hit = sorted(self.trained_on(ids))
        excluded = sorted(set(self.manifest.get("excluded_ids", [])) | set(torch.as_tensor(ids).tolist()))
        self.manifest["excluded_ids"] = excluded
        atomic_write_json(self.manifest, self.path / MANIFEST)
        for i in hit:
            self.file(i).unlink(missing_ok=True)
        return hit

    def file(self, index: int) -> Path:
        return self.path / f"shadow-{index:04d}.pt"

    def done(self) -> list:
        return [i for i in range(self.manifest["count"]) if self.file(i).exists()]

    def fill(self, splits: DatasetSplits, *, shard: Tuple[int, int] = (0, 1)) -> list:
        """Train the missing shadows of this shard; returns the indices trained now."""
        part, parts = shard
        if not 0 <= part < parts:
            raise ValueError(f"shard must be i/n with 0 <= i < n. Got {part}/{parts}.")
        if splits.name != self.manifest["dataset"] or splits.num_ids != self.manifest["num_ids"]:
            raise ArtifactError(f"{self.path} was made for {self.manifest['dataset']} with {self.manifest['num_ids']} "
                                f"ids, not {splits.name} with {splits.num_ids}.")
        everything = _pool_set(splits, self.pool)
        cfg = TrainConfig(**self.manifest["train_config"])
        todo = [i for i in range(self.manifest["count"]) if i % parts == part and not self.file(i).exists()]
        trained = []
        for i in progress(todo, desc="shadow models", unit="model"):
            mask = self.mask(i)
            torch.manual_seed(derive(self.manifest["seed"], "shadow", i))
            c, h, _ = splits.input_shape
            model = create_model(self.manifest["arch"], **{**self.manifest["arch_args"], "in_channels": c,
                                                          "image_size": h, "num_classes": splits.num_classes})
            member = ImageSet(everything.images[mask], everything.labels[mask], everything.ids[mask])
            with quiet():
                train(model, member, TrainConfig(**{**cfg.__dict__, "seed": self.manifest["seed"] * 100_003 + i}))
            logits = query_logits(model, everything.images, cfg.augment and cfg.flip)
            atomic_save({"format": "dcu-shadow", "index": i, "mask": mask, "logits": logits.half(),
                         "state_dict": model.state_dict()}, self.file(i))
            trained.append(i)
        return trained

    # --- reading --------------------------------------------------------------------------------------
    def contains(self, ids: torch.Tensor) -> torch.Tensor:
        """Which of ``ids`` are in the pool (have shadows that trained on them and shadows that did not)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        return self.pool[torch.searchsorted(self.pool, ids).clamp(max=len(self.pool) - 1)] == ids

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.searchsorted(self.pool, ids).clamp(max=len(self.pool) - 1)
        if not torch.equal(self.pool[pos], ids):
            bad = ids[self.pool[pos] != ids]
            raise KeyError(f"Sample id {int(bad[0])} is not in the shadow store's pool (train and held-out ids).")
        return pos

    def load(self, ids: torch.Tensor, *, minimum: int = 2) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits (shadows, len(ids), queries, classes) and membership (shadows, len(ids)) of every shadow present."""
        present = self.done()
        if len(present) < minimum:
            raise ValueError(f"{self.path} holds {len(present)} trained shadow models; at least {minimum} are needed "
                             f"(run `dcu shadows` to fill it).")
        pos = self.positions(torch.as_tensor(ids, dtype=torch.long))
        logits, masks = [], []
        for i in present:
            saved = safe_load(self.file(i), what="dcu shadow model")
            if not isinstance(saved, dict) or saved.get("format") != "dcu-shadow":
                raise ArtifactError(f"{self.file(i)} is not a dcu shadow model.")
            logits.append(saved["logits"][pos].float())
            masks.append(saved["mask"][pos])
        return torch.stack(logits), torch.stack(masks)

    @property
    def flip(self) -> bool:
        cfg = self.manifest["train_config"]
        return bool(cfg.get("augment") and cfg.get("flip"))


def _schedule(train_config: Dict[str, Any]) -> Dict[str, Any]:
    """The target's training settings less its own seed: a shadow's seed comes from the store's, so one store
    serves originals of every seed."""
    return {k: v for k, v in train_config.items() if k != "seed"}


def _pool_set(splits: DatasetSplits, pool: torch.Tensor) -> ImageSet:
    parts = [splits.train] + ([splits.val] if splits.val is not None else [])
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([p.labels for p in parts])
    ids = torch.cat([p.ids for p in parts])
    order = torch.argsort(ids)
    data = ImageSet(images[order], labels[order], ids[order])
    if not torch.isin(pool, data.ids).all():
        raise ArtifactError("The shadow store's pool holds ids that are not in the dataset's train and held-out splits.")
    return data.subset(pool)


def open_store(path: Optional[str | Path]) -> ShadowStore:
    if path is None:
        raise ValueError("This attack needs shadow models: pass a store made with `dcu shadows` (--shadows DIR).")
    return ShadowStore(path)
