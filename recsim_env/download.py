"""Fetching the official GroupLens MovieLens zips into the per-user cache directory.

This module only downloads and unpacks; :mod:`recsim_env.movielens` decides when to call it
and parses the files. The table :data:`SOURCES` (URL, MD5, required files) and the
``opener`` argument of :func:`download_dataset` are the injection points for mirrors and tests.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from recsim_env.dataset import DATASETS

logger = logging.getLogger(__name__)

#: Environment variable that overrides the per-user cache directory.
CACHE_ENV_VAR = "RECSIM_ENV_CACHE"

_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset is published and which of its files the loader needs.

    :param url: address of the official zip
    :param md5: hex MD5 digest of the zip (verified before anything is unpacked); ``None`` when
        GroupLens publishes none (ML-32M): the loader then checks the unpacked data against the
        official figures (``recsim_env.movielens.OFFICIAL_FIGURES``) instead
    :param files: files the loader requires inside the dataset folder
    :param folder: the folder the zip holds (default: the dataset's name; ML-10M's is
        ``ml-10M100K``); it is unpacked as ``<cache>/<name>/``
    """

    url: str
    md5: str | None
    files: tuple[str, ...]
    folder: str | None = None


#: The official GroupLens release of each name of :data:`recsim_env.dataset.DATASETS`. Tests and
#: mirrors may replace entries.
SOURCES: dict[str, DatasetSource] = {
    "ml-100k": DatasetSource(
        url=_GROUPLENS + "ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        files=("u.data", "u.user", "u.item", "u.occupation"),
    ),
    "ml-1m": DatasetSource(
        url=_GROUPLENS + "ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        files=("ratings.dat", "users.dat", "movies.dat"),
    ),
    "ml-10m": DatasetSource(
        url=_GROUPLENS + "ml-10m.zip",
        md5="ce571fd55effeba0271552578f2648bd",
        files=("ratings.dat", "movies.dat"),
        folder="ml-10M100K",
    ),
    "ml-20m": DatasetSource(
        url=_GROUPLENS + "ml-20m.zip",
        md5="cd245b17a1ae2cc31bb14903e1204af3",
        files=("ratings.csv", "movies.csv"),
    ),
    "ml-25m": DatasetSource(
        url=_GROUPLENS + "ml-25m.zip",
        md5="6b51fb2759a8657d3bfcbfc42b592ada",
        files=("ratings.csv", "movies.csv"),
    ),
    "ml-32m": DatasetSource(
        url=_GROUPLENS + "ml-32m.zip",
        md5=None,  # none published: the loader checks the official counts
        files=("ratings.csv", "movies.csv"),
    ),
}

#: ``opener(url, timeout_seconds)`` returns a context manager with a binary ``read(n)``.
Opener = Callable[[str, float], IO[bytes]]

_CHUNK = 1 << 20


class DownloadError(OSError):
    """The dataset could not be downloaded or unpacked (network, HTTP or archive problem)."""


class ChecksumError(DownloadError):
    """The downloaded file does not have the published MD5 digest; nothing was kept."""


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The per-user cache directory of this package (not created here).

    :param cache_dir: explicit directory; default ``$RECSIM_ENV_CACHE``, else
        ``$XDG_CACHE_HOME/recsim_env``, else ``~/.cache/recsim_env``
    :return: the directory (downloaded datasets live in ``<root>/<name>/``, parsed arrays
        in ``<root>/parsed/``)
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "recsim_env"


def dataset_source(name: str) -> DatasetSource:
    """The :data:`SOURCES` entry of ``name``; a clear ``ValueError`` for unknown names."""
    if name not in DATASETS or name not in SOURCES:
        known = ", ".join(repr(k) for k in DATASETS)
        raise ValueError(f"Unknown MovieLens dataset {name!r}; choose one of {known}.")
    return SOURCES[name]


def is_complete(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds every file the loader needs for dataset ``name``."""
    return all((folder / f).is_file() for f in dataset_source(name).files)


def _urlopen(url: str, timeout: float) -> IO[bytes]:
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (https/http URLs only)


def download_dataset(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    opener: Opener | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the official zip of ``name`` into the cache, verify it and unpack it.

    The zip is streamed into a temporary file in the cache directory, its MD5 compared with
    :data:`SOURCES` (when published), and only then renamed; the dataset folder is unpacked
    into a temporary directory and renamed into place, so ``<cache>/<name>/`` is either complete
    or absent.

    :param name: one of :data:`recsim_env.dataset.DATASETS` (``"ml-100k"``, ``"ml-1m"``, ...)
    :param cache_dir: cache directory, see :func:`cache_root`
    :param opener: transport, ``opener(url, timeout)`` -> readable binary response;
        default :func:`urllib.request.urlopen`
    :param timeout: socket timeout in seconds
    :return: the unpacked dataset folder ``<cache>/<name>``
    :raises ChecksumError: the download does not match the published MD5 (nothing is kept)
    :raises DownloadError: network, HTTP or archive failure (nothing is kept)
    """
    source = dataset_source(name)
    root = cache_root(cache_dir)
    target = root / name
    if is_complete(target, name):
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"Cannot create the cache directory {root}: {exc}") from exc

    open_url = opener if opener is not None else _urlopen
    fd, part_name = tempfile.mkstemp(dir=root, prefix=f".{name}.", suffix=".zip.part")
    part = Path(part_name)
    zip_path = root / f"{name}.zip"
    try:
        logger.info("Downloading %s into %s", source.url, root)
        digest = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as out, open_url(source.url, timeout) as response:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts...
            raise DownloadError(f"Could not download {source.url}: {exc}") from exc
        if source.md5 is None:
            logger.info("%s has no published checksum; the loader checks its official figures", name)
        elif digest.hexdigest() != source.md5:
            raise ChecksumError(
                f"Checksum mismatch for {source.url}: MD5 {digest.hexdigest()}, expected "
                f"{source.md5}. The file was deleted; the download was corrupted or the server "
                f"is not serving the official GroupLens release. Retry, or unzip the official "
                f"{name}.zip yourself and pass its parent folder as data_dir."
            )
        os.replace(part, zip_path)  # only a complete, verified download gets the real name
        _unpack(zip_path, root, name)
    finally:
        part.unlink(missing_ok=True)
        zip_path.unlink(missing_ok=True)
    return target


def _unpack(zip_path: Path, root: Path, name: str) -> None:
    """Extract the zip's dataset folder as ``<root>/<name>/``, atomically (temp dir + rename)."""
    target = root / name
    folder = dataset_source(name).folder or name
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.unpack."))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                prefix = f"{folder}/"
                members = [m for m in archive.namelist() if m.startswith(prefix)]
                present = {m[len(prefix):] for m in members}
                missing = [f for f in dataset_source(name).files if f not in present]
                if missing:
                    raise DownloadError(
                        f"{zip_path.name} does not contain {', '.join(prefix + m for m in missing)}"
                    )
                for member in members:
                    archive.extract(member, staging)  # extract() strips '..' and absolute parts
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{zip_path.name} is not a valid zip archive: {exc}") from exc
        try:
            os.rename(staging / folder, target)
        except OSError as exc:
            if not is_complete(target, name):  # else another process won the race: fine
                raise DownloadError(f"Cannot move the unpacked files to {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
