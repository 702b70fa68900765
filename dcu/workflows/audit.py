"""The many-model, per-example audit: ensembles of retrained, unlearned and original models, and the
scorecard computed from their stored logits (orchestration: it looks methods up by name).

An :class:`EnsembleStore` is a folder: ``manifest.json`` (dataset, the original's hash, the forget ids'
digest, the query ids) and one file per model, ``<kind>-<method>-<seed>.pt``, holding that model's logits on
the query images (the forget set, a sample of the retain set, the held-out split, a sample of the test set),
its accuracies and its time. Files are written atomically, so a stopped run resumes where it was, and
``shard=(i, n)`` lets n processes fill one store (model k of each ensemble belongs to shard k mod n). Scores
read the stored logits only: a new score needs no training.

    store = EnsembleStore.create(path, splits, original_meta, forget_ids)
    fill(store, splits, original, original_meta, methods=["finetune"], models=8)
    card = scorecard(store, splits, methods=["finetune"])
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn

from ..data import DatasetSplits, ImageSet
from ..io import ArtifactError, atomic_save, atomic_write_json, ids_hash, safe_load
from ..models import create_model
from ..presets import method_of
from ..progress import progress, quiet
from ..seeds import derive
from ..train import TrainConfig, accuracy, predict, train

MANIFEST = "manifest.json"
FORMAT = "dcu-ensemble"
PROBES = ("probe_forget_acc", "relearn_forget_acc", "relearn_retain_forget_acc")   # source: the original being unlearned, stored once


class EnsembleStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.path} is not an ensemble store (no {MANIFEST}); make one with `dcu audit`.")
        try:
            self.manifest: Dict[str, Any] = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise ArtifactError(f"{manifest} is not an ensemble manifest ({err}).") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise ArtifactError(f"{manifest} is not a dcu ensemble manifest.")
        self.forget_ids = torch.tensor(self.manifest["forget_ids"], dtype=torch.long)
        self.retain_ids = torch.tensor(self.manifest["retain_ids"], dtype=torch.long)
        self.val_ids = torch.tensor(self.manifest["val_ids"], dtype=torch.long)
        self.test_positions = torch.tensor(self.manifest["test_positions"], dtype=torch.long)

    @classmethod
    def create(cls, path: str | Path, splits: DatasetSplits, meta: Dict[str, Any], forget_ids: torch.Tensor, *,
               retain_sample: int = 1000, test_sample: int = 1000, seed: int = 0) -> "EnsembleStore":
        """A new store for models that answer ``forget_ids`` from the original ``meta`` describes; reopening a
        store made for the same original and request is allowed (a stopped run, another shard)."""
        path = Path(path)
        forget_ids = torch.sort(torch.as_tensor(forget_ids, dtype=torch.long)).values
        gen = torch.Generator().manual_seed(seed)
        retain_ids = splits.train.without(forget_ids).ids
        retain_ids = torch.sort(retain_ids[torch.randperm(len(retain_ids), generator=gen)[:retain_sample]]).values
        test_positions = torch.sort(torch.randperm(len(splits.test), generator=gen)[:test_sample]).values
        val_ids = splits.val.ids if splits.val is not None else torch.empty(0, dtype=torch.long)
        manifest = {"format": FORMAT, "dataset": splits.name, "num_ids": splits.num_ids,
                    "original_hash": meta["hash"], "forget_hash": ids_hash(forget_ids),
                    "arch": meta["arch"], "arch_args": meta["arch_args"], "train_config": meta["train_config"],
                    "forget_ids": forget_ids.tolist(), "retain_ids": retain_ids.tolist(),
                    "val_ids": val_ids.tolist(), "test_positions": test_positions.tolist()}
        manifest = json.loads(json.dumps(manifest))
        existing = path / MANIFEST
        if existing.exists():
            old = cls(path).manifest
            differ = [k for k in ("dataset", "num_ids", "original_hash", "forget_hash", "arch", "arch_args")
                      if old.get(k) != manifest[k]]
            if differ:
                raise ArtifactError(f"{path} holds an ensemble store for another original or request "
                                    f"({', '.join(differ)}); use another folder.")
        else:
            atomic_write_json(manifest, existing)
        return cls(path)

    def check_fits(self, splits: DatasetSplits, meta: Dict[str, Any]) -> None:
        if self.manifest["dataset"] != splits.name or self.manifest["num_ids"] != splits.num_ids:
            raise ArtifactError(f"{self.path} was made for {self.manifest['dataset']}, not {splits.name}.")
        if self.manifest["original_hash"] != meta["hash"]:
            raise ArtifactError(f"{self.path} was made for original {self.manifest['original_hash']}, not "
                                f"{meta['hash']}.")

    def file(self, kind: str, method: str, seed: int) -> Path:
        return self.path / f"{kind}-{method}-{seed:04d}.pt"

    def seeds(self, kind: str, method: str) -> List[int]:
        """The seeds of the models of one ensemble that are in the store."""
        prefix = f"{kind}-{method}-"   # a label that extends this one with "-..." is another ensemble
        return sorted(int(p.stem[len(prefix):]) for p in self.path.glob(f"{prefix}*.pt") if p.stem[len(prefix):].isdigit())

    def add(self, kind: str, method: str, seed: int, model: nn.Module, splits: DatasetSplits, seconds: float, *,
            source: Optional[str] = None) -> None:
        """Store one model's logits, accuracies and probes; ``source`` is the hash of the checkpoint it came from,
        for a model the store did not train itself (a user's own unlearned model)."""
        sets = self.query_sets(splits)
        record = {"format": "dcu-ensemble-member", "kind": kind, "method": method, "seed": seed, "seconds": seconds,
                  "source": source}
        for name, data in sets.items():
            record[f"logits_{name}"] = predict(model, data.images).half()
        record.update({f"{name}_acc": accuracy(model, sets[name]) for name in ("retain", "forget", "test")})
        record.update(probes(model, splits, sets["forget"], sets["retain"], seed=seed))
        atomic_save(record, self.file(kind, method, seed))

    def query_sets(self, splits: DatasetSplits) -> Dict[str, ImageSet]:
        """The images every member is queried on, by split: forget, the retain sample, test sample, held-out."""
        parts = {"forget": splits.train.subset(self.forget_ids), "retain": splits.train.subset(self.retain_ids),
                 "test": splits.test.subset(splits.test.ids[self.test_positions])}
        if len(self.val_ids):
            parts["val"] = splits.val.subset(self.val_ids)
        return parts

    def bank(self, kind: str, method: str) -> Dict[str, Any]:
        """Every stored model of one ensemble: logits per query split (models, examples, classes), accuracies,
        seconds."""
        seeds = self.seeds(kind, method)
        if not seeds:
            raise ValueError(f"{self.path} holds no {kind} models for '{method}'; fill it first.")
        records = []
        for seed in seeds:
            saved = safe_load(self.file(kind, method, seed), what="dcu ensemble member")
            if not isinstance(saved, dict) or saved.get("format") != "dcu-ensemble-member":
                raise ArtifactError(f"{self.file(kind, method, seed)} is not a dcu ensemble member.")
            records.append(saved)
        out: Dict[str, Any] = {"seeds": seeds}
        for key in records[0]:
            if key.startswith("logits_"):
                out[key[len("logits_"):]] = torch.stack([r[key].float() for r in records])
        for key in ("retain_acc", "forget_acc", "test_acc", "seconds", *PROBES):
            if all(key in r for r in records):   # probes: members stored before they existed lack them
                out[key] = torch.tensor([float(r[key]) for r in records])
        return out


def add_checkpoints(store: EnsembleStore, splits: DatasetSplits, label: str, checkpoints: List[Tuple[str, nn.Module, Dict[str, Any]]], *,
                    shard: Tuple[int, int] = (0, 1)) -> None:
    """A user's own unlearned models as the ensemble ``label`` (model k from ``checkpoints[k]``: path, model,
    meta), for the models of this shard that the store lacks. A store that already holds another checkpoint
    under the same name is refused rather than mixed."""
    part, parts = shard
    for k, (path, model, meta) in enumerate(checkpoints):
        if k % parts != part:
            continue
        file = store.file("unlearn", label, k)
        if file.exists():
            held = safe_load(file, what="dcu ensemble member").get("source")
            if held != meta.get("hash"):
                raise ArtifactError(f"{store.path} already holds another model as '{label}' number {k} (not {path}); "
                                    "pass another --label or --store.")
            continue
        store.add("unlearn", label, k, model, splits, float(meta.get("times", {}).get("online_seconds") or 0.0),
                  source=meta.get("hash"))


def linear_probe(fit: torch.Tensor, fit_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor) -> float:
    """Accuracy on ``query`` of a multinomial logistic regression fitted on ``fit`` (flat activations)."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(max_iter=500).fit(fit.numpy(), fit_labels.numpy())
    return float((fitted.predict(query.numpy()) == query_labels.numpy()).mean())


def probes(model: nn.Module, splits: DatasetSplits, forget, retain, *, seed: int = 0, relearn_size: int = 32,
           relearn_epochs: int = 3) -> Dict[str, float]:
    """What a logit-level score cannot see (Gao et al., AISTATS 2026: a class that reads 0% at the output may
    read ~93% through its features):

    * ``probe_forget_acc`` — a linear probe on the frozen penultimate features, fitted on the held-out images,
      read on the forget set;
    * ``relearn_forget_acc`` — a few epochs of fine-tuning on ``relearn_size`` forget images: accuracy on the
      rest of the forget set after it (how fast the forgotten comes back);
    * ``relearn_retain_forget_acc`` — the same amount of fine-tuning on retain images only: forget accuracy
      after it (knowledge that returns without the forgotten data).
    """
    import copy

    from ..train import features

    out: Dict[str, float] = {}
    if splits.val is not None and len(splits.val) >= 2 * splits.num_classes:
        out["probe_forget_acc"] = linear_probe(features(model, splits.val.images), splits.val.labels,
                                               features(model, forget.images), forget.labels)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(forget), generator=gen)
    if len(forget) > relearn_size:
        shown, rest = forget.subset(forget.ids[order[:relearn_size]]), forget.subset(forget.ids[order[relearn_size:]])
        cfg = TrainConfig(epochs=relearn_epochs, batch_size=16, lr=0.01, schedule="constant", seed=seed)
        with quiet():
            relearnt = copy.deepcopy(model)
            train(relearnt, shown, cfg, desc="relearn")
            out["relearn_forget_acc"] = accuracy(relearnt, rest)
            extra = retain.subset(retain.ids[torch.randperm(len(retain), generator=gen)[:relearn_size]])
            control = copy.deepcopy(model)
            train(control, extra, cfg, desc="relearn on retain")
            out["relearn_retain_forget_acc"] = accuracy(control, rest)
    return out


def fill(store: EnsembleStore, splits: DatasetSplits, original: nn.Module, meta: Dict[str, Any], *,
         methods: Iterable[str], models: int, retrains: Optional[int] = None, originals: int = 0, condensed=None,
         settings: Optional[Dict[str, Dict[str, Any]]] = None, shard: Tuple[int, int] = (0, 1),
         first_seed: int = 0) -> List[Tuple[str, str, int]]:
    """Train what is missing of this shard: ``retrains`` (default ``models``) retrained models and, per method,
    ``models`` unlearned models (seeds ``first_seed ...``), and ``originals`` models trained on everything from
    other training seeds; the original itself is stored once (the "no unlearning" row)."""
    from unlearn import get_unlearner

    store.check_fits(splits, meta)
    part, parts = shard
    if not 0 <= part < parts:
        raise ValueError(f"shard must be i/n with 0 <= i < n. Got {part}/{parts}.")
    forget_ids = store.forget_ids
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    train_cfg = TrainConfig(**meta["train_config"])
    settings = settings or {}
    todo = [("retrain", "retrain", first_seed + k) for k in range(retrains or models)]
    todo += [("unlearn", m, first_seed + k) for m in methods if m != "retrain" for k in range(models)]
    todo += [("original", "original", derive(first_seed, "original", k)) for k in range(originals)]
    todo = [t for i, t in enumerate(todo) if i % parts == part and not store.file(*t).exists()]
    done = []
    if part == 0 and not store.file("source", "original", 0).exists():   # "no unlearning": the original itself
        store.add("source", "original", 0, original, splits, 0.0)
    for kind, method, seed in progress(todo, desc="ensembles", unit="model"):
        start = time.perf_counter()
        with quiet():
            if kind == "original":
                torch.manual_seed(seed)
                model = create_model(meta["arch"], **meta["arch_args"])
                train(model, splits.train, TrainConfig(**{**asdict(train_cfg), "seed": seed}), desc="original")
            else:
                # "dcu@noisy": a variant of dcu stored under its own name, with its own settings
                unlearner = get_unlearner(method_of(method), train_config=train_cfg, seed=seed,
                                          **settings.get(method, {}))
                model = unlearner.unlearn(original, retain, forget, val=splits.val,
                                          condensed=condensed if unlearner.requires_condensed else None).model
        store.add(kind, method, seed, model, splits, time.perf_counter() - start)
        done.append((kind, method, seed))
    return done


def _row(bank: Dict[str, Any], reference: Dict[str, Any], labels: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """Every score of one ensemble against the reference retrain ensemble (same number of models)."""
    from inversion_attacks.ensemble import EPSILON_CAP, confidences, forgetting_score, klom, loss_lr_per_model, ulira

    n = min(len(bank["seeds"]), len(reference["seeds"]))
    take = lambda b, split: b[split][:n]   # noqa: E731
    ratios = (float(bank["retain_acc"][:n].mean() / reference["retain_acc"][:n].mean())
              * float(bank["test_acc"][:n].mean() / reference["test_acc"][:n].mean()))
    score = forgetting_score(take(bank, "forget"), take(reference, "forget"), labels["forget"], accuracy_ratios=ratios)
    u_lira = ulira(take(bank, "forget"), take(reference, "forget"), labels["forget"])
    kl = {split: klom(take(bank, split), take(reference, split), labels[split])
          for split in ("forget", "retain", "val") if split in labels}
    same_class = torch.isin(labels["test"], labels["forget"].unique())   # non-members of the forget set's classes
    loss_lr = loss_lr_per_model(take(bank, "forget"), labels["forget"], take(bank, "test")[:, same_class],
                                labels["test"][same_class])
    row = {"models": n, "forgetting_score": score.value, **{k: v for k, v in score.extra.items() if k != "models"},
           "ulira": {**u_lira.summary(), "pairs": 2 * n * len(labels["forget"])},
           "klom": {split: result.value for split, result in kl.items()},
           "loss_lr": float(loss_lr.mean()), "loss_lr_std": float(loss_lr.std()),
           **{k: float(bank[k][:n].mean()) for k in ("retain_acc", "forget_acc", "test_acc", "seconds", *PROBES)
              if k in bank},
           # how much the ensemble's models differ on each forget example (retraining's own spread is the yardstick)
           "seed_spread": float(confidences(take(bank, "forget"), labels["forget"]).std(0).median()),
           "epsilon_capped": int((score.per_example >= EPSILON_CAP).sum()),
           "epsilons": score.per_example.tolist(), "klom_forget_per_example": kl["forget"].per_example.tolist()}
    if "val" in labels:   # held-out accuracy: what choices among variants may look at (test accuracy may not)
        row["val_acc"] = float((bank["val"][:n].argmax(-1) == labels["val"]).float().mean())
    row["ulira"].pop("name", None)
    return row


def scorecard(store: EnsembleStore, splits: DatasetSplits, *, methods: Iterable[str]) -> Dict[str, Any]:
    """The per-example verdict for every method in the store, beside the retrain-vs-retrain ceiling and the
    untouched originals (when the store has them): the retrain ensemble is split in two halves, the second
    half is the reference for every row, the first half is the ceiling's stand-in for a perfect method."""
    labels = {name: data.labels for name, data in store.query_sets(splits).items()}
    retrained = store.bank("retrain", "retrain")
    half = len(retrained["seeds"]) // 2
    if half < 2:
        raise ValueError(f"{store.path} holds {len(retrained['seeds'])} retrained models; the audit needs at least 4 "
                         "(two halves of 2).")
    split_bank = lambda b, s: {k: (v[s] if isinstance(v, torch.Tensor) else v[s]) for k, v in b.items()}  # noqa: E731
    first, reference = split_bank(retrained, slice(0, half)), split_bank(retrained, slice(half, 2 * half))
    card: Dict[str, Any] = {"store": str(store.path), "dataset": splits.name, "models_per_ensemble": half,
                            "forget": len(store.forget_ids), "retain_sample": len(store.retain_ids),
                            "val": len(store.val_ids), "test_sample": len(store.test_positions),
                            "reference": {k: float(reference[k].mean()) for k in ("retain_acc", "forget_acc",
                                                                                  "test_acc", "seconds")},
                            "rows": {"ceiling (retrain vs retrain)": _row(first, reference, labels)}}
    for method in methods:
        if method != "retrain":
            card["rows"][method] = _row(store.bank("unlearn", method), reference, labels)
    if store.seeds("source", "original"):   # doing nothing: the one original, as an ensemble of copies
        source = store.bank("source", "original")
        copies = {k: (v.expand(half, *v.shape[1:]) if isinstance(v, torch.Tensor) else v * half)
                  for k, v in source.items()}
        card["rows"]["original (no unlearning)"] = _row(copies, reference, labels)
    if len(store.seeds("original", "original")) >= 3:   # trained on the forget set, other seeds: memorisation
        card["rows"]["originals, other training seeds"] = _row(store.bank("original", "original"), reference, labels)
    return card


def shared_condensed(path: Path, splits: DatasetSplits, model: nn.Module, meta: Dict[str, Any], *,
                     method: str = "fdm", seed: int = 0, **settings: Any):
    """The condensed set an audit's methods share (offline, once), kept in the ensemble store's folder.

    Settings named ``refresh_*`` change only how a request re-makes buckets, so a kept set takes them without
    being made again."""
    from condense import get_condenser, load_condensed

    if Path(path).exists():
        cset = load_condensed(path)
        if (cset.source.get("model_hash") == meta["hash"] and cset.method == method
                and all(cset.config.get(k) == v for k, v in settings.items() if not k.startswith("refresh_"))):
            cset.config.update({k: v for k, v in settings.items() if k.startswith("refresh_")})
            return cset
    cset = get_condenser(method, seed=seed, **settings).condense(splits, model, meta["hash"])
    cset.source["holdout"] = meta.get("holdout")
    cset.save(path)
    return cset


# --- forget sets beyond random -------------------------------------------------------------------------------

def memorisation(shadows, splits: DatasetSplits) -> Tuple[torch.Tensor, torch.Tensor]:
    """(training ids, memorisation score) from a shadow store: for each id, the accuracy of the shadows that
    trained on it minus that of the shadows that did not (Feldman's estimator, as RUM uses it, Zhao et al.,
    NeurIPS 2024). Ids the store's pool lacks, or that no shadow saw both ways, are left out."""
    ids = splits.train.ids[shadows.contains(splits.train.ids)]
    logits, masks = shadows.load(ids)                       # (S, N, Q, C), (S, N)
    labels = splits.train.subset(ids).labels
    correct = (logits.mean(2).argmax(-1) == labels).float()
    inside, outside = masks.float(), (~masks).float()
    seen_both = (inside.sum(0) > 0) & (outside.sum(0) > 0)
    score = (correct * inside).sum(0) / inside.sum(0).clamp(min=1) - (correct * outside).sum(0) / outside.sum(0).clamp(min=1)
    return ids[seen_both], score[seen_both]


def memorised_request(shadows, splits: DatasetSplits, count: int, *, high: bool = True) -> torch.Tensor:
    """The ``count`` training ids with the highest (``high``) or lowest memorisation scores."""
    ids, score = memorisation(shadows, splits)
    if count > len(ids):
        raise ValueError(f"Asked for {count} ids, but the shadow store scores only {len(ids)}.")
    order = torch.argsort(score, descending=high)
    return torch.sort(ids[order[:count]]).values


def subpopulation_request(model: nn.Module, splits: DatasetSplits, count: int, *, seed: int = 0) -> torch.Tensor:
    """A sub-population: a random anchor image and its ``count - 1`` nearest training images of the same class
    in the model's penultimate feature space."""
    from ..train import features

    gen = torch.Generator().manual_seed(seed)
    anchor = int(torch.randint(len(splits.train), (1,), generator=gen))
    same = torch.nonzero(splits.train.labels == splits.train.labels[anchor]).flatten()
    if count > len(same):
        raise ValueError(f"A sub-population of {count} is larger than the anchor's class ({len(same)} images).")
    feats = features(model, splits.train.images[same])
    distance = (feats - features(model, splits.train.images[anchor : anchor + 1])).pow(2).sum(1)
    return torch.sort(splits.train.ids[same[torch.argsort(distance)[:count]]]).values
