"""Seeds: every random stream a run needs is derived from the run's seed by :func:`derive`, named by what it
is for, so two purposes never share a stream by accident (``seed + 1`` for one and ``seed + 1`` for another)."""
from __future__ import annotations

import hashlib
import json


def derive(seed: int, *purpose: str | int) -> int:
    """A seed in 0..2**31-1 for ``purpose`` (words and numbers, e.g. ``"shadow", 3``) under run seed ``seed``."""
    digest = hashlib.sha256(json.dumps([int(seed), *purpose]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
