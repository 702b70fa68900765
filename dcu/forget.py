"""Forget requests: which training ids to remove, from a file, a random fraction or a class."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import torch

from .data import DatasetSplits


class ForgetRequestError(ValueError):
    """A forget request that cannot be carried out as written."""


def parse_ids_file(path: str | os.PathLike, num_train: int) -> torch.Tensor:
    """Read ids, one per line (``#`` comments and blank lines allowed), and check them against the split.

    Non-integer, negative, out-of-range and duplicate ids are refused with the line they stand on.
    """
    path = Path(path)
    if not path.is_file():
        raise ForgetRequestError(f"Forget-ids file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ForgetRequestError(f"{path} is not a text file of ids ({err}).") from err
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            value = int(line, 10)
        except ValueError:
            raise ForgetRequestError(f"{path}, line {lineno}: '{raw.strip()}' is not an integer sample id.") from None
        if not 0 <= value < num_train:
            raise ForgetRequestError(
                f"{path}, line {lineno}: id {value} is out of range; the training split has ids 0..{num_train - 1}."
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


def class_ids(labels: torch.Tensor, cls: int, classes: Optional[List[str]] = None) -> torch.Tensor:
    """Every training id of one class."""
    num_classes = len(classes) if classes else int(labels.max()) + 1
    if not 0 <= cls < num_classes:
        raise ForgetRequestError(f"--forget-class must be in 0..{num_classes - 1}. Got {cls}.")
    return torch.nonzero(labels == cls).flatten()


def resolve(
    splits: DatasetSplits,
    *,
    ids_file: Optional[str] = None,
    frac: Optional[float] = None,
    cls: Optional[int] = None,
    seed: int = 0,
) -> torch.Tensor:
    """The forget ids of a request given in exactly one of the three forms, checked against the split."""
    given = [name for name, v in (("--ids", ids_file), ("--forget-frac", frac), ("--forget-class", cls)) if v is not None]
    if len(given) != 1:
        raise ForgetRequestError(
            "Give the forget request in exactly one form: --ids FILE, --forget-frac F (with --seed), or "
            f"--forget-class C. Got {', '.join(given) or 'none'}."
        )
    num_train = len(splits.train)
    if ids_file is not None:
        ids = parse_ids_file(ids_file, splits.num_ids)
        held = torch.isin(ids, splits.val.ids) if splits.val is not None else torch.zeros(len(ids), dtype=torch.bool)
        if held.any():
            raise ForgetRequestError(
                f"{ids_file}: id {int(ids[held][0])} is in the held-out validation split; the model never trained "
                "on it, so there is nothing to forget."
            )
    elif frac is not None:
        ids = random_ids(splits.train.ids, frac, seed)
    else:
        ids = splits.train.ids[class_ids(splits.train.labels, int(cls), splits.classes)]
    if len(ids) >= num_train:
        raise ForgetRequestError(
            f"The request forgets all {num_train} training samples; nothing would remain to learn from."
        )
    return ids


def write_ids(ids: torch.Tensor, path: str | os.PathLike, comment: str = "") -> None:
    from .io import atomic_write_text

    header = f"# {comment}\n" if comment else ""
    atomic_write_text(header + "".join(f"{int(i)}\n" for i in ids), path)
