"""Progress bars (tqdm) that one switch silences: ``--quiet`` on the CLI, ``set_quiet(True)`` in Python."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from tqdm.auto import tqdm

_QUIET = os.environ.get("DCU_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool = True) -> None:
    global _QUIET
    _QUIET = quiet


def progress(*args: Any, **kwargs: Any) -> tqdm:
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs["disable"] = kwargs.get("disable", False) or _QUIET
    return tqdm(*args, **kwargs)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the bars inside (an inner loop whose outer loop already shows one)."""
    global _QUIET
    before, _QUIET = _QUIET, True
    try:
        yield
    finally:
        _QUIET = before
