"""Forget requests: which training ids to remove, from a file, a random fraction or a class."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from .data import DatasetSplits
from .io import clip

_ID = re.compile(r"-?[0-9]+")   # ASCII digits only: no Unicode digits, no '1_0'


class ForgetRequestError(ValueError):
    """A forget request that cannot be carried out as written."""


def parse_ids_file(path: str | os.PathLike, num_train: int) -> torch.Tensor:
    """Read ids, one per line (``#`` comments and blank lines allowed), and check them against the split.

    Non-integer, negative, out-of-range and duplicate ids are refused with the line they stand on.
    """
    path = Path(path)
    if path.is_dir():
        raise ForgetRequestError(f"Forget-ids file {path} is a directory; name a text file of ids.")
    if not path.is_file():
        raise ForgetRequestError(f"Forget-ids file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ForgetRequestError(f"{path} is not a text file of ids ({err.reason} at byte {err.start}).") from None
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _ID.fullmatch(line):
            raise ForgetRequestError(f"{path}, line {lineno}: '{clip(raw.strip(), 60)}' is not an integer sample id.")
        value = int(line, 10)
        if not 0 <= value < num_train:
            raise ForgetRequestError(
                f"{path}, line {lineno}: id {clip(str(value), 30)} is out of range; the training split has ids "
                f"0..{num_train - 1}."
            )
        if value in seen:
            raise ForgetRequestError(f"{path}, line {lineno}: id {value} is a duplicate of line {seen[value]}.")
        seen[value] = lineno
    if not seen:
        raise ForgetRequestError(f"{path} holds no ids: a forget request must name at least one sample.")
    return torch.tensor(sorted(seen), dtype=torch.long)


def random_ids(train_ids: torch.Tensor | int, frac: float, seed: int) -> torch.Tensor:
    """A random fraction of the training ids, reproducible from the seed."""
    if not 0.0 < frac < 1.0:
        raise ForgetRequestError(f"--forget-frac must be in (0, 1). Got {frac}.")
    train_ids = torch.arange(train_ids) if isinstance(train_ids, int) else train_ids
    count = max(1, int(round(frac * len(train_ids))))
    gen = torch.Generator().manual_seed(seed)
    return torch.sort(train_ids[torch.randperm(len(train_ids), generator=gen)[:count]]).values


def class_index(cls: int | str, classes: List[str]) -> int:
    """A class given by name or by index. A name wins: in a folder dataset whose classes are named "0".."9"
    in another order, "3" is the folder named 3, not the fourth in sorted order."""
    if str(cls) in classes:
        return classes.index(str(cls))
    text = str(cls).strip()
    if text.lstrip("-").isdigit() and text.isascii():
        index = int(text)
        if 0 <= index < len(classes):
            return index
        raise ForgetRequestError(f"--forget-class {index} is out of range: the classes are 0..{len(classes) - 1} "
                                 f"({', '.join(clip(c, 20) for c in classes[:12])}{', ...' if len(classes) > 12 else ''}).")
    raise ForgetRequestError(f"--forget-class '{clip(text, 40)}' is no class of this dataset; its classes are "
                             f"{', '.join(clip(c, 20) for c in classes[:12])}{', ...' if len(classes) > 12 else ''}.")


def class_ids(labels: torch.Tensor, cls: int | str, classes: Optional[List[str]] = None) -> torch.Tensor:
    """Every training id of one class, named or by index."""
    classes = list(classes) if classes else [str(i) for i in range(int(labels.max()) + 1)]
    return torch.nonzero(labels == class_index(cls, classes)).flatten()


@dataclass
class Request:
    """A forget request resolved against a split: ids the model trained on, and held-out ids it names."""

    forget: torch.Tensor      # sorted training ids to unlearn
    withdrawn: torch.Tensor   # sorted held-out ids (never trained on): removed from the held-out split


def resolve_request(
    splits: DatasetSplits,
    *,
    ids_file: Optional[str] = None,
    frac: Optional[float] = None,
    cls: Optional[int | str] = None,
    seed: int = 0,
) -> Request:
    """A request given in exactly one of the three forms, checked against the split.

    An id file may name held-out ids; they come back as ``withdrawn``. A fraction or a class is drawn
    from ``splits.train`` alone. Forgetting every training sample is refused.
    """
    given = [name for name, v in (("--ids", ids_file), ("--forget-frac", frac), ("--forget-class", cls)) if v is not None]
    if len(given) != 1:
        raise ForgetRequestError(
            "Give the forget request in exactly one form: --ids FILE, --forget-frac F (with --forget-seed S), or "
            f"--forget-class C. Got {', '.join(given) or 'none'}."
        )
    num_train = len(splits.train)
    withdrawn = torch.empty(0, dtype=torch.long)
    if ids_file is not None:
        ids = parse_ids_file(ids_file, splits.num_ids)
        held = torch.isin(ids, splits.val.ids) if splits.val is not None else torch.zeros(len(ids), dtype=torch.bool)
        ids, withdrawn = ids[~held], ids[held]
        unknown = ~torch.isin(ids, splits.train.ids)
        if unknown.any():
            raise ForgetRequestError(f"{ids_file}: id {int(ids[unknown][0])} is neither in the training split nor "
                                     "held out here (an earlier request already removed it?).")
    elif frac is not None:
        ids = random_ids(splits.train.ids, frac, seed)
    else:
        ids = splits.train.ids[class_ids(splits.train.labels, cls, splits.classes)]
    if len(ids) >= num_train:
        raise ForgetRequestError(
            f"The request forgets all {num_train} training samples; nothing would remain to learn from."
        )
    return Request(forget=ids, withdrawn=withdrawn)


def resolve(
    splits: DatasetSplits,
    *,
    ids_file: Optional[str] = None,
    frac: Optional[float] = None,
    cls: Optional[int | str] = None,
    seed: int = 0,
) -> torch.Tensor:
    """The forget ids of a request to *measure* (evaluate, tune): held-out ids are refused, since a model
    that never trained on them has no membership of them to test."""
    request = resolve_request(splits, ids_file=ids_file, frac=frac, cls=cls, seed=seed)
    if len(request.withdrawn):
        raise ForgetRequestError(
            f"{ids_file}: id {int(request.withdrawn[0])} is in the held-out validation split; the model never "
            "trained on it, so there is no membership to measure."
        )
    if len(request.forget) == 0:
        raise ForgetRequestError(f"{ids_file or 'The request'} names no training id.")
    return request.forget
