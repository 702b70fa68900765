"""Artifact I/O: atomic writes, ``weights_only`` reads, content hashes."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch


class ArtifactError(ValueError):
    """A file is not the dcu artifact it was given as, or does not fit what it is used with."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    return _atomic(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


def safe_load(path: str | os.PathLike, what: str = "dcu artifact") -> Any:
    """``torch.load(weights_only=True)``: a file that would need to unpickle code is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what.capitalize()} {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "Unsupported" in line), "")
        raise ArtifactError(
            f"{path} is not a {what}: it holds objects that only a full unpickle could build, and dcu loads "
            f"with weights_only=True, so it was refused without running them. {detail}"
        ) from err
    except Exception as err:  # any other failure to parse: not an artifact of ours
        raise ArtifactError(f"{path} is not a readable {what} ({type(err).__name__}: {err}).") from err


def ids_hash(ids: Iterable[int] | torch.Tensor) -> str:
    """A short content hash of a set of sample ids (order and duplicates do not matter)."""
    t = torch.unique(torch.as_tensor(list(ids) if not isinstance(ids, torch.Tensor) else ids, dtype=torch.long))
    return hashlib.sha256(t.numpy().astype("<i8").tobytes()).hexdigest()[:16]


def state_hash(state_dict: dict) -> str:
    """A content hash of a model's weights (names, shapes and values)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()[:16]
