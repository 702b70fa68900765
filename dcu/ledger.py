"""The request ledger: which ids a model has been asked to forget, kept apart from the model itself.

A deletion request is itself sensitive (Chen et al., CCS 2021, "When Machine Unlearning Jeopardizes
Privacy"): whoever receives a model must not learn from it which records were deleted. So an unlearned
checkpoint carries only counts and *salted* digests of its requests; the ids are in the ledger, a JSON
file the operator keeps (``MODEL.ledger.json`` beside the model unless ``--ledger`` says otherwise). The
salt is drawn once per chain of requests and lives only in the ledger, so a digest in a model cannot be
checked against guessed ids by someone without the ledger.

The ledger holds two id sets:
- ``forgotten``: ids the model trained on and has forgotten (the next request starts from what remains);
- ``withdrawn``: ids a request named that the model never trained on (held out). They are removed from
  the held-out split that this and every later request, ``dcu evaluate`` and ``dcu tune`` read, so a
  person who asked to be forgotten no longer shapes calibration.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .io import ArtifactError, clip

FORMAT = "dcu-ledger"
FORMAT_VERSION = 1


def ledger_path(model_path: str | os.PathLike) -> Path:
    """Where a model's ledger is kept by default: ``unlearned.pt`` -> ``unlearned.ledger.json``."""
    return Path(model_path).with_suffix(".ledger.json")


@dataclass
class Ledger:
    salt: str = field(default_factory=lambda: secrets.token_hex(16))
    forgotten: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    withdrawn: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    requests: List[Dict[str, Any]] = field(default_factory=list)
    model_hash: str = ""

    def digest(self, ids: torch.Tensor) -> str:
        """A salted digest of an id set (order and duplicates do not matter)."""
        t = torch.unique(torch.as_tensor(ids, dtype=torch.long))
        return hashlib.sha256(bytes.fromhex(self.salt) + t.numpy().astype("<i8").tobytes()).hexdigest()[:16]

    def summary(self) -> Dict[str, Any]:
        """What a checkpoint may carry about its requests: counts and salted digests, never ids."""
        return {"forgotten_count": int(len(self.forgotten)), "forgotten_digest": self.digest(self.forgotten),
                "withdrawn_count": int(len(self.withdrawn)), "withdrawn_digest": self.digest(self.withdrawn)}

    def after(self, forget: torch.Tensor, withdrawn: torch.Tensor) -> "Ledger":
        """The ledger of the model that answers one more request (same salt, ids added)."""
        return Ledger(salt=self.salt,
                      forgotten=torch.sort(torch.cat([self.forgotten, forget]).unique()).values,
                      withdrawn=torch.sort(torch.cat([self.withdrawn, withdrawn]).unique()).values,
                      requests=list(self.requests))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "model_hash": self.model_hash,
                           "salt": self.salt, "forgotten_ids": self.forgotten.tolist(),
                           "withdrawn_ids": self.withdrawn.tolist(), "requests": self.requests}, indent=1) + "\n"


def read_ledger(meta: Dict[str, Any], model_path: str | os.PathLike, num_ids: int,
                path: Optional[str | os.PathLike] = None) -> Ledger:
    """The ledger of the model ``meta`` describes, checked against the model's counts and digests.

    A model that answered no request needs none (an empty ledger with a fresh salt is returned). A
    checkpoint written before ledgers existed carries ``forgotten_ids`` itself; those are read as its ledger.
    """
    if "forgotten_ids" in meta:   # the old format: the ids were in the checkpoint
        return Ledger(forgotten=torch.tensor(sorted(meta["forgotten_ids"]), dtype=torch.long), model_hash=meta["hash"])
    if not meta.get("forgotten_count") and not meta.get("withdrawn_count"):
        return Ledger(model_hash=meta["hash"])
    path = Path(path) if path is not None else ledger_path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{model_path} answered forget requests, but its request ledger {path} is missing; "
                                "pass the ledger the request wrote with --ledger PATH.")
    ledger = load_ledger(path, num_ids)
    if ledger.model_hash != meta.get("hash"):
        raise ArtifactError(f"{path} is the ledger of model {clip(ledger.model_hash, 20)}, not of {model_path} "
                            f"({meta.get('hash')}); pass the ledger that request wrote with --ledger PATH.")
    if ledger.summary() != {k: meta.get(k) for k in ledger.summary()}:
        raise ArtifactError(f"{path} does not match {model_path}: its ids do not give the counts and digests the "
                            "model records. It was altered, or belongs to another model.")
    return ledger


def load_ledger(path: str | os.PathLike, num_ids: Optional[int] = None) -> Ledger:
    """A ledger file, checked on its own (format, salt, ids whole numbers and, with ``num_ids``, in range);
    :func:`read_ledger` also checks it against the model it belongs to."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Request ledger {path} does not exist.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path} is not a dcu request ledger ({clip(str(err))}).") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a dcu request ledger (no '{FORMAT}' header).")
    salt = raw.get("salt")
    if not isinstance(salt, str) or len(salt) != 32 or any(c not in "0123456789abcdef" for c in salt):
        raise ArtifactError(f"{path}: field 'salt' must be 32 hex digits.")
    sets = {}
    for key in ("forgotten_ids", "withdrawn_ids"):
        ids = raw.get(key)
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ArtifactError(f"{path}: field '{key}' must be a list of whole numbers.")
        bad = [i for i in ids if num_ids is not None and not 0 <= i < num_ids]
        if bad:
            raise ArtifactError(f"{path}: field '{key}' holds id {bad[0]}, outside 0..{num_ids - 1}.")
        sets[key] = torch.tensor(sorted(set(ids)), dtype=torch.long)
    requests = raw.get("requests", [])
    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        raise ArtifactError(f"{path}: field 'requests' must be a list of records.")
    return Ledger(salt=salt, forgotten=sets["forgotten_ids"], withdrawn=sets["withdrawn_ids"], requests=requests,
                  model_hash=str(raw.get("model_hash", "")))
