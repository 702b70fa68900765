"""Artifact I/O: atomic writes, ``weights_only`` reads, content hashes, and the checks that keep a command
from destroying what it was given.

A file is written to a temporary file beside its target (``.NAME.<pid>.<random>.tmp``), flushed,
``fsync``ed and renamed over the target, keeping the target's permissions. Several files that belong
together (an unlearned model, its request ledger and its refreshed condensed set) are committed as one
transaction (:func:`commit_together`): every file is written in full first, a journal names the renames,
and a writer killed between renames is rolled forward by the next writer of the same outputs.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch


class ArtifactError(ValueError):
    """A file is not the dcu artifact it was given as, or does not fit what it is used with."""


class OutputError(ValueError):
    """An output path that cannot or must not be written (an input, a folder, a full or read-only disk)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> List[Path]:
    """Delete temporary files of ``path`` left by dcu writers that were killed (their process is gone)."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        match = _TEMP.match(entry.name)
        if match and match["name"] == path.name and not _pid_alive(int(match["pid"])):
            try:
                entry.unlink()
                removed.append(entry)
            except FileNotFoundError:
                pass
    return removed


def _no_space(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a failed write inside its zip writer as "unexpected pos ..." without the errno
    return isinstance(err, RuntimeError) and "unexpected pos" in str(err)


def _write_temp(path: Path, write: Callable[[Any], None]) -> Path:
    """Write a complete temporary file beside ``path`` (flushed, fsynced, with the target's permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:   # keep an existing target's mode (a 0600 file stays 0600); else what open() would give
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if _no_space(err):
            raise OutputError(f"No space left on the device to write {path}; nothing was written there. "
                              "Free some space or write elsewhere.") from err
        raise
    return Path(tmp)


def _atomic(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; name a file to write.")
    os.replace(_write_temp(path, write), path)
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    return _atomic(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


# --- several files as one transaction -------------------------------------------------------------------

def _journal(path: Path) -> Path:
    return path.parent / f".{path.name}.dcu-txn.json"


def commit_together(writes: Sequence[Tuple[Path, Callable[[Any], None]]]) -> None:
    """Write several files so that either all of them are replaced or none is.

    Every file is written in full to its temporary file first; then a journal beside the first target lists
    the renames, the renames run, and the journal is removed. A writer killed before the journal exists
    changed nothing; one killed after it is completed by :func:`recover` (called by the next writer).
    """
    temps: List[Tuple[Path, Path]] = []
    try:
        for path, write in writes:
            path = Path(path)
            if path.is_dir():
                raise OutputError(f"{path} is a directory; name a file to write.")
            temps.append((_write_temp(path, write), path))
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    journal = _journal(temps[0][1])
    text = json.dumps({"renames": [[str(tmp), str(path)] for tmp, path in temps]})
    os.replace(_write_temp(journal, lambda fh: fh.write(text.encode())), journal)
    _roll_forward(journal)


def _roll_forward(journal: Path) -> None:
    renames = json.loads(journal.read_text())["renames"]
    for tmp, path in renames:
        if Path(tmp).exists():
            os.replace(tmp, path)
    journal.unlink(missing_ok=True)


def recover(paths: Iterable[str | os.PathLike]) -> None:
    """Finish a transaction on ``paths`` that a killed writer left half done (see :func:`commit_together`)."""
    for path in paths:
        journal = _journal(Path(path))
        if journal.exists():
            try:
                _roll_forward(journal)
            except (ValueError, KeyError, TypeError, OSError):
                journal.unlink(missing_ok=True)   # not ours or unreadable: the targets are as they were


# --- checking outputs against inputs before any work --------------------------------------------------

def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Dict[str, Optional[str | os.PathLike]],
                  inputs: Dict[str, Optional[str | os.PathLike]]) -> None:
    """Refuse, before any work, outputs that would destroy an input or each other, or cannot be written.

    ``outputs`` and ``inputs`` map a name for the user (``--out``, ``--model``) to a path (``None``: not
    given). An output is refused when it is an input (by path, symlink or hard link), when two outputs are
    one file, when it is a directory, or when its folder cannot be written (probed with a real file, so a
    read-only mount is caught even for root).
    """
    given_out = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    given_in = [(name, Path(p)) for name, p in inputs.items() if p is not None]
    for i, (name, path) in enumerate(given_out):
        for in_name, in_path in given_in:
            if _same(path, in_path):
                raise OutputError(f"{name} {path} is the same file as the input {in_name}; writing it would destroy "
                                  f"the input. Name another output file.")
            if in_path.is_dir() and path.resolve().is_relative_to(in_path.resolve()):
                raise OutputError(f"{name} {path} lies inside the input {in_name} {in_path}; write it elsewhere.")
        for other_name, other in given_out[:i]:
            if _same(path, other):
                raise OutputError(f"{name} and {other_name} are the same file ({path}); each output needs its own.")
        if path.is_dir():
            raise OutputError(f"{name} {path} is a directory; name a file to write.")
        probe_writable(path.parent, name)


def probe_writable(folder: Path, name: str = "--out") -> None:
    """Create and remove a file in ``folder`` (made when missing), or raise OutputError naming the cause."""
    folder = Path(folder) if str(folder) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{name}: {existing} is a file, so {folder} cannot be a folder to write into.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dcu-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        reason = "no space left on the device" if _no_space(err) else (err.strerror or str(err)).lower()
        raise OutputError(f"{name}: cannot write into {folder} ({reason}); choose a writable location.") from None


# --- one writer per output ----------------------------------------------------------------------------

@contextmanager
def output_lock(paths: Iterable[Optional[str | os.PathLike]]) -> Iterator[None]:
    """Hold ``PATH.lock`` for every output while a command writes them; a second writer is refused.

    A lock left by a process that no longer runs is taken over. A half-done transaction on these outputs
    is completed first (:func:`recover`).
    """
    held: List[Path] = []
    paths = [Path(p) for p in paths if p is not None]
    try:
        for path in paths:
            lock = path.parent / f"{path.name}.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(2):
                try:
                    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    try:
                        pid = int(lock.read_text().strip() or "0")
                    except (OSError, ValueError):
                        pid = 0
                    if pid and _pid_alive(pid):
                        raise OutputError(f"{path} is being written by another dcu process (pid {pid}, lock {lock}); "
                                          "wait for it or write elsewhere.") from None
                    lock.unlink(missing_ok=True)   # stale: its writer is gone
                    continue
                with os.fdopen(fd, "w") as fh:
                    fh.write(str(os.getpid()))
                held.append(lock)
                break
        recover(paths)
        yield
    finally:
        for lock in held:
            lock.unlink(missing_ok=True)


# --- reading ------------------------------------------------------------------------------------------

def safe_load(path: str | os.PathLike, what: str = "dcu artifact") -> Any:
    """``torch.load(weights_only=True)``: a file that would need to unpickle code is refused, never run."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory, not a {what}.")
    if not path.is_file():
        raise FileNotFoundError(f"{what[0].upper() + what[1:]} {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=_zip(path))
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "Unsupported" in line), "")
        raise ArtifactError(
            f"{path} is not a {what}: it holds objects that only a full unpickle could build, and dcu loads "
            f"with weights_only=True, so it was refused without running them. {clip(detail)}"
        ) from err
    except Exception as err:  # any other failure to parse: not an artifact of ours
        raise ArtifactError(f"{path} is not a readable {what} ({type(err).__name__}: {clip(str(err))}).") from err


def _zip(path: Path) -> bool:
    """Memory-map zip-format files: a tensor whose declared size exceeds the file then fails to map instead
    of allocating what the file claims."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters for an error message (a 5 MB line is not repeated whole)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
