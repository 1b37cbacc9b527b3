"""Run directories: fresh names, exclusive use, and the rules for reusing one.

One training process at a time owns a run directory: it holds an exclusive lock on
``<run_dir>/.lock`` (``fcntl.flock``, released by the operating system when the process ends,
even when it is killed), so two runs never write into the same folder. A folder that already
holds files is never trained into by accident: a new run refuses it unless it is resumed
(:func:`agents.training.train` with ``resume=True``) or explicitly replaced
(``overwrite=True``, which only replaces folders that are run directories).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the emptiness checks still apply
    fcntl = None

#: Name of the lock file inside a run directory (ignored when checking for existing files).
LOCK_NAME = ".lock"


class RunDirError(Exception):
    """A run directory cannot be used as asked (exists, in use, not a run directory)."""


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """Create and return a fresh ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]`` folder.

    The folder is created with one atomic ``mkdir``; runs started in the same second get
    ``-2``, ``-3``, ... suffixes, so two processes never share a folder.

    :param runs_dir: parent folder (created if needed)
    :param name: run name prefix
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / f"{name}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


def existing_files(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` other than the lock file (``[]`` if it does not exist)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)


def is_run_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` was written by a training run (it holds ``config.json``)."""
    return (run_dir / "config.json").is_file()


def check_new_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a folder a new run must not train into; changes nothing on disk.

    :param run_dir: the requested run directory
    :param overwrite: the caller asked to replace an existing run directory
    :raises RunDirError: ``run_dir`` holds files and ``overwrite`` is off, or it holds files
        but is no run directory (``overwrite`` never deletes other folders), or it is a file
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} exists and is not a folder; choose another --run-dir")
    files = existing_files(run_dir)
    if not files:
        return
    if not is_run_dir(run_dir):
        raise RunDirError(
            f"{run_dir} is not empty ({', '.join(files[:5])}{' ...' if len(files) > 5 else ''}) and is not "
            "a run directory (no config.json); choose an empty or new --run-dir (--overwrite only "
            "replaces run directories)"
        )
    if not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, replace it with "
            "--overwrite, or choose another --run-dir"
        )


class RunDirLock:
    """Exclusive use of a run directory by this process (``with RunDirLock(path): ...``).

    :param run_dir: an existing folder
    :raises RunDirError: another process holds the lock (the message names its pid)
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunDirError(
                    f"{self.path.parent} is in use by another training process (pid {owner}); "
                    "wait for it to finish or choose another --run-dir"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_run_dir(run_dir: Path) -> None:
    """Delete everything in a (locked) run directory except the lock file.

    Each entry is first renamed into a hidden trash folder beside ``run_dir`` and that folder
    is deleted afterwards, so an interrupted clear never leaves old files mixed with new ones.
    """
    trash = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
    trash.mkdir(exist_ok=True)
    for name in existing_files(run_dir):
        os.replace(run_dir / name, trash / name)
    shutil.rmtree(trash)
