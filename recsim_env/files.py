"""Atomic file writes (a reader sees the old file or the whole new one, never a part of it) and
the signed ``.npz`` files of the caches.

Results, caches, checkpoints and plots are written through :func:`atomic_write` (a download
has its own ``.part`` file, renamed once verified, in :mod:`recsim_env.download`):
the content goes to a temporary file in the same folder (a name no other process or thread
draws), which then replaces the target with ``os.replace``. A writer that fails or is
interrupted leaves the old file as it was and no temporary file behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp)`` creates the whole file at ``tmp``, then
    ``os.replace(tmp, path)``.

    :param path: final path (its folder is created if needed)
    :param write: writes the complete file at the temporary path it is given (a name ending in
        ``.tmp``: writers that append their own suffix to a bare name, such as ``np.savez``, must
        be given an open file instead)
    :return: ``path`` as a :class:`Path`
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(payload))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def savez(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` of ``arrays`` to exactly ``path`` (given a name, numpy would append ``.npz``).

    A cache file holds a ``"signature"`` string array: the description of what it was built
    from, compared by :func:`read_signed_npz`.
    """
    with open(path, "wb") as out:
        np.savez(out, **arrays)


def read_signed_npz(path: Path, signature: str) -> dict[str, np.ndarray] | None:
    """Every array of the ``.npz`` at ``path``, or ``None`` when there is no such file or it was
    built from something else (its ``"signature"`` is not ``signature``).

    :raises Exception: whatever numpy raises on a damaged file (callers rebuild the cache)
    """
    if not path.is_file():
        return None
    # Our own handle, so that it is closed even when numpy rejects a damaged file.
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
        if str(npz["signature"]) != signature:
            return None
        return {name: npz[name] for name in npz.files}
