"""Loading MovieLens (100K, 1M, 10M, 20M, 25M, 32M): finding the files, parsing them, caching
the parsed arrays.

The releases and their formats (original encodings, original file names):

* ``ml-100k``: ``u.data`` (tab-separated), ``u.user``, ``u.item``, ``u.occupation``; whole stars,
  three user features (gender, age group, occupation).
* ``ml-1m``: ``ratings.dat``, ``users.dat``, ``movies.dat`` (``::``-separated); as ML-100K.
* ``ml-10m``: ``ratings.dat`` and ``movies.dat`` (``::``-separated) in the zip's folder
  ``ml-10M100K/``; half stars 0.5..5.0, no user features.
* ``ml-20m``, ``ml-25m``, ``ml-32m``: ``ratings.csv`` (``userId,movieId,rating,timestamp``) and
  ``movies.csv`` (``movieId,title,genres``); half stars, no user features. The ratings CSV is
  read vectorised (pyarrow's reader when installed, else pandas' C parser): ML-32M's 32 million
  rows take seconds, not minutes.

Genres: ML-100K and ML-1M have the fixed lists :data:`GENRES_ML100K`, :data:`GENRES_ML1M`; the
later releases' genre columns are the genres their movie file names, sorted (``"(no genres
listed)"`` is no genre).

:func:`load_movielens` is the entry point. Where the files come from, in this order:

1. the ``data_dir`` argument: a root holding ``<name>/`` (e.g. ``ml-100k/``; ML-10M's folder may
   keep its zip name ``ml-10M100K/``), or the dataset folder itself. When given, it is the only place looked at: a ``data_dir`` that does not
   exist, or holds no dataset folder, is an error (:class:`DatasetNotFoundError`);
2. the environment variable ``MOVIELENS_DATA`` (same layout). Set to a path that does not
   exist: an error. An existing root without this dataset's folder is passed over (a root may
   hold only one of the two datasets) and the cache is tried next;
3. the per-user cache directory (:func:`recsim_env.download.cache_root`);
4. a download of the official GroupLens zip into that cache, MD5-verified (ML-32M has no
   published checksum: its figures are always checked, whatever ``expect_official`` says).

A folder that is found but lacks a required file is an error (:class:`MissingFileError`), never
a reason to look elsewhere. The loaded data are compared with the official release's figures
(:data:`OFFICIAL_FIGURES`: rows, users, rated items and, for ML-100K and ML-1M, the rating
histogram and the first and last timestamp); a difference means a truncated or edited file and is an error
(:class:`DatasetMismatchError`) unless ``expect_official=False``. Parsed arrays are cached as
``.npz`` under ``<cache>/parsed/``, keyed by a SHA-256 hash of the source files' contents (so
an edit that keeps size and modification time is noticed); the data folder itself is only read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from recsim_env.dataset import (
    AGE_GROUP_LOWER_BOUNDS,
    RATING_SCALES,
    USER_FEATURE_CARDINALITIES,
    MovieLensData,
    rating_levels,
)
from recsim_env.download import (
    ChecksumError,
    DownloadError,
    cache_root,
    dataset_source,
    download_dataset,
)
from recsim_env.files import atomic_write, read_signed_npz, savez

__all__ = [
    "DATA_ENV_VAR",
    "GENRES_ML100K",
    "GENRES_ML1M",
    "ChecksumError",
    "DataFormatError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "DownloadError",
    "MissingFileError",
    "OFFICIAL_FIGURES",
    "OfficialFigures",
    "load_movielens",
    "locate_movielens",
    "parse_movielens",
]

logger = logging.getLogger(__name__)

#: Environment variable naming a data root that holds ``ml-100k/``, ``ml-1m/``, ... (any of them).
DATA_ENV_VAR = "MOVIELENS_DATA"
#: Bumped whenever parsing or the cache key changes, so that old ``.npz`` caches are rebuilt.
CACHE_FORMAT_VERSION = 2
#: Content hash of the cache key (hardware-accelerated on most CPUs; see ``make bench-data``).
_CONTENT_HASH = "sha256"

#: Genre columns of ML-100K, in ``u.item`` / ``u.genre`` order.
GENRES_ML100K: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: Genre columns of ML-1M, in the order of its README.
GENRES_ML1M: tuple[str, ...] = GENRES_ML100K[1:]


@dataclass(frozen=True)
class OfficialFigures:
    """What the official GroupLens release of a dataset contains; :func:`load_movielens`
    compares every copy named like it with these figures.

    Figures that are ``None`` are not checked (GroupLens publishes only the counts of the later
    releases).

    :param n_ratings: rows of the ratings file
    :param n_users: users with at least one rating
    :param n_items: movies with at least one rating
    :param rating_counts: how many ratings have each value of the rating scale (1..5 stars)
    :param first_timestamp: earliest rating time, Unix seconds
    :param last_timestamp: latest rating time, Unix seconds
    :param n_movies: movies listed in the movies file (rated or not)
    """

    n_ratings: int
    n_users: int
    n_items: int | None = None
    rating_counts: tuple[int, ...] | None = None
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    n_movies: int | None = None


#: Figures of the official releases (GroupLens READMEs and files). The reconstructed ML-1M
#: ``ratings.dat`` of this workplace (``shared/data/SOURCES.md``) has the same figures.
OFFICIAL_FIGURES: dict[str, OfficialFigures] = {
    "ml-100k": OfficialFigures(
        n_ratings=100_000, n_users=943, n_items=1_682,
        rating_counts=(6_110, 11_370, 27_145, 34_174, 21_201),
        first_timestamp=874_724_710, last_timestamp=893_286_638,
    ),
    "ml-1m": OfficialFigures(
        n_ratings=1_000_209, n_users=6_040, n_items=3_706,
        rating_counts=(56_174, 107_557, 261_197, 348_971, 226_310),
        first_timestamp=956_703_932, last_timestamp=1_046_454_590,
    ),
    # The later releases: the counts of their GroupLens READMEs (movies = the movies file's).
    "ml-10m": OfficialFigures(n_ratings=10_000_054, n_users=71_567, n_movies=10_681),
    "ml-20m": OfficialFigures(n_ratings=20_000_263, n_users=138_493, n_movies=27_278),
    "ml-25m": OfficialFigures(n_ratings=25_000_095, n_users=162_541, n_movies=62_423),
    "ml-32m": OfficialFigures(n_ratings=32_000_204, n_users=200_948, n_movies=87_585),
}  # fmt: skip
#: The ratings file of each dataset (the one a truncation or an edit usually hits).
_RATINGS_FILE = {
    "ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-10m": "ratings.dat", "ml-20m": "ratings.csv",
    "ml-25m": "ratings.csv", "ml-32m": "ratings.csv",
}
#: Datasets with a users file (the others have no user features).
_WITH_USERS = ("ml-100k", "ml-1m")
#: Header of the ratings CSV of ML-20M and later.
_CSV_RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")
#: Header of the movies CSV of ML-20M and later.
_CSV_MOVIES_HEADER = ("movieId", "title", "genres")
#: The genre of a movie without genres in ML-10M and later.
_NO_GENRES = "(no genres listed)"

_N_OCCUPATIONS = USER_FEATURE_CARDINALITIES[2]
_INT = re.compile(r"[+-]?\d+")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)")
_RELEASE_DATE = re.compile(r"\d{1,2}-[A-Za-z]{3}-(\d{4})")
# Control characters never occur in MovieLens text; they mean UTF-16 or a re-encoding accident.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is in none of the places looked at and could not be downloaded."""


class MissingFileError(FileNotFoundError):
    """A dataset folder was found but lacks a file the loader needs."""

    def __init__(self, directory: Path, missing: list[str], name: str, fix: str = "") -> None:
        self.directory = Path(directory)
        self.missing = list(missing)
        needed = ", ".join(dataset_source(name).files)
        fix = fix or (
            f"copy the missing file(s) into that folder (from the official "
            f"{dataset_source(name).url}), or point data_dir / ${DATA_ENV_VAR} at a complete copy"
        )
        super().__init__(
            f"{', '.join(missing)} missing in {directory}. The {name} loader needs {needed} "
            f"there: {fix}."
        )


class DataFormatError(ValueError):
    """A MovieLens file does not have the expected format.

    :param path: the offending file
    :param line: 1-based line number, or ``None`` when the problem is not on one line
    :param problem: what is wrong
    """

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")


class DatasetMismatchError(DataFormatError):
    """A copy named like an official release does not have that release's figures.

    Raised by :func:`load_movielens` (unless ``expect_official=False``): the ratings file looks
    truncated or edited.

    :param path: the dataset's ratings file
    :param differences: ``{figure: (expected, found)}`` for every figure that differs
    :param problem: the full explanation
    """

    def __init__(
        self, path: Path, differences: dict[str, tuple[object, object]], problem: str
    ) -> None:
        self.differences = dict(differences)
        super().__init__(path, None, problem)


# --------------------------------------------------------------------------------------------
# Locating the files
# --------------------------------------------------------------------------------------------


def _dataset_folder(root: Path, name: str, accept_root: bool) -> Path | None:
    """``root/name`` (or ``root/<the zip's folder name>``, e.g. ``ml-10M100K``), or ``root``
    itself if it looks like the dataset folder."""
    source = dataset_source(name)
    for folder in dict.fromkeys((name, source.folder or name)):
        if (root / folder).is_dir():
            return root / folder
    if accept_root and root.is_dir():
        if root.name in (name, source.folder) or any((root / f).exists() for f in source.files):
            return root
    return None


def _named_root(label: str, value: str | os.PathLike[str], fix: str) -> Path:
    """The directory the caller named (``data_dir`` or ``$MOVIELENS_DATA``); an error if absent."""
    root = Path(value).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(f"{label} points to {root}, which does not exist. {fix}")
    if not root.is_dir():
        raise DatasetNotFoundError(f"{label} points to {root}, which is not a directory. {fix}")
    return root


def _complete(folder: Path, name: str, fix: str = "") -> Path:
    """``folder`` if it holds every required file, else :class:`MissingFileError`."""
    missing = [f for f in dataset_source(name).files if not (folder / f).is_file()]
    if missing:
        raise MissingFileError(folder, missing, name, fix)
    return folder


def locate_movielens(
    name: str = "ml-100k",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Find (or download) the folder holding the raw files of a MovieLens dataset.

    An explicit ``data_dir`` is the only place looked at. ``$MOVIELENS_DATA``, when set
    (non-empty), must exist; if it lacks ``<name>/`` the per-user cache comes next.

    :param name: one of :data:`recsim_env.dataset.DATASETS` (``"ml-100k"``, ``"ml-1m"``, ...)
    :param data_dir: a root holding ``<name>/``, or the dataset folder itself; default ``None``
        (look in ``$MOVIELENS_DATA``, the cache, then download)
    :param download: download the official zip into the cache when no copy is found
    :param cache_dir: per-user cache directory, see :func:`recsim_env.download.cache_root`
    :return: the dataset folder, holding every required file
    :raises MissingFileError: a dataset folder exists but lacks a required file
    :raises DatasetNotFoundError: ``data_dir`` does not exist or holds no dataset folder;
        ``$MOVIELENS_DATA`` does not exist; or not found anywhere and not downloadable (the
        message lists every place looked at)
    :raises ChecksumError: the download does not match the published checksum
    """
    source = dataset_source(name)
    env = os.environ.get(DATA_ENV_VAR)
    cache = cache_root(cache_dir)
    if data_dir is not None:
        # Named for this call: a mistake in it must not silently load data from elsewhere.
        fix = (
            f"Pass the folder that holds {name}/ (or the {name} folder itself), or "
            f"data_dir=None to look in ${DATA_ENV_VAR}, the per-user cache {cache} and then "
            f"download."
        )
        if not os.fspath(data_dir):
            raise DatasetNotFoundError(f"data_dir is an empty string. {fix}")
        root = _named_root("data_dir", data_dir, fix)
        folder = _dataset_folder(root, name, accept_root=True)
        if folder is None:
            raise DatasetNotFoundError(
                f"data_dir {root} holds no {name}/ folder and is not itself the {name} folder "
                f"(none of {', '.join(source.files)} in it). {fix}"
            )
        return _complete(folder, name)

    looked = ["data_dir argument: not given"]
    if env:  # empty counts as unset: the Makefile exports an empty value when it has no data
        root = _named_root(
            f"${DATA_ENV_VAR}",
            env,
            f"Point it at a folder holding {name}/ (or other MovieLens folders), or unset it to use the "
            f"per-user cache {cache} (and a download).",
        )
        folder = _dataset_folder(root, name, accept_root=True)
        if folder is not None:
            return _complete(folder, name)
        # A data root may hold only one of the datasets; the cache holds official copies only.
        logger.info("%s not in $%s=%s; trying the per-user cache", name, DATA_ENV_VAR, root)
        looked.append(f"${DATA_ENV_VAR}: no folder {root / name} (nor {root} itself)")
    else:
        looked.append(f"${DATA_ENV_VAR}: not set")

    folder = _dataset_folder(cache, name, accept_root=False)
    if folder is not None:
        return _complete(folder, name, f"delete {folder} to download it again")
    looked.append(f"per-user cache: no folder {cache / name}")

    if not download:
        looked.append("download: disabled (download=False)")
        raise DatasetNotFoundError(_not_found_message(name, looked, cache))
    try:
        return download_dataset(name, cache_dir)
    except ChecksumError:
        raise
    except DownloadError as exc:
        looked.append(f"download: {exc}")
        raise DatasetNotFoundError(_not_found_message(name, looked, cache)) from exc


def _not_found_message(name: str, looked: list[str], cache: Path) -> str:
    source = dataset_source(name)
    places = "\n".join(f"  - {place}" for place in looked)
    files = ", ".join(f"ROOT/{name}/{f}" for f in source.files)
    return (
        f"MovieLens dataset {name!r} not found. Looked in:\n{places}\n"
        f"To supply the files, either\n"
        f"  - download {source.url}, unzip it into a folder ROOT (giving {files}) and pass "
        f"data_dir=ROOT or set {DATA_ENV_VAR}=ROOT, or\n"
        f"  - let load_movielens download it (download=True, the default) on a machine that "
        f"can reach {source.url}; the files go to {cache / name}."
    )


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


class _Ratings(NamedTuple):
    path: Path
    raw: bytes | None  # the file (small formats), for line numbers that skip blank lines
    user: np.ndarray  # int64 user ids
    item: np.ndarray  # int64 movie ids
    rating: np.ndarray  # int64 (whole stars) or float64 (half stars)
    timestamp: np.ndarray  # int64

    def line_of(self, row: int) -> int:
        """1-based line number of the ``row``-th rating (blank lines are skipped; a CSV's
        header is line 1)."""
        if self.raw is None:
            return row + 2
        seen = -1
        for lineno, line in enumerate(self.raw.split(b"\n"), 1):
            if line.rstrip(b"\r"):
                seen += 1
                if seen == row:
                    return lineno
        return row + 1


class _Users(NamedTuple):
    path: Path | None  # None: the release has no users file (ids come from the ratings)
    raw_ids: np.ndarray  # int64 (n,)
    features: np.ndarray  # int32 (n, 3), or (n, 0) without a users file


class _Items(NamedTuple):
    path: Path
    raw_ids: np.ndarray  # int64 (n,)
    titles: list[str]
    years: np.ndarray  # int32 (n,)
    genres: np.ndarray  # bool (n, n_genres)


_RATING_FIELDS = ("user id", "movie id", "rating", "timestamp")


def _read_ratings(path: Path, sep: bytes, half_stars: bool = False) -> _Ratings:
    """Vectorised parse of a separated ratings file (``u.data`` or ``ratings.dat``).

    :param half_stars: ratings are numbers such as ``3.5`` (ML-10M), not integers
    """
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(path, None, "the file is empty; expected one rating per line")
    # '::' becomes one tab so that pandas' C parser splits it; a stray ':' then fails to parse.
    text = raw if sep == b"\t" else raw.replace(sep, b"\t")
    dtype: Any = {0: np.int64, 1: np.int64, 2: np.float64, 3: np.int64} if half_stars else np.int64
    try:
        table = pd.read_csv(
            io.BytesIO(text), sep="\t", header=None, dtype=dtype, engine="c", na_filter=False
        )
        if table.shape[1] != len(_RATING_FIELDS):
            raise ValueError(f"{table.shape[1]} columns")
    except (ValueError, OverflowError) as exc:
        raise _diagnose_ratings(path, raw, sep, exc, half_stars) from None
    columns = [table[c].to_numpy() for c in table.columns]
    return _Ratings(path, raw, *columns)


def _read_ratings_csv(path: Path) -> _Ratings:
    """Vectorised parse of ML-20M and later's ``ratings.csv`` (``userId,movieId,rating,timestamp``)."""
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace").strip()
    if not header:
        raise DataFormatError(path, None, "the file is empty; expected a header and one rating per line")
    if tuple(header.split(",")) != _CSV_RATINGS_HEADER:
        raise DataFormatError(path, 1, f"expected the header {','.join(_CSV_RATINGS_HEADER)}, found {header!r}")
    dtype = {"userId": np.int64, "movieId": np.int64, "rating": np.float64, "timestamp": np.int64}
    try:
        try:
            columns = _read_csv_columns_pyarrow(path, dtype)
        except ImportError:
            table = pd.read_csv(path, dtype=dtype, engine="c", na_filter=False)
            if tuple(table.columns) != _CSV_RATINGS_HEADER:
                raise ValueError(f"columns {list(table.columns)}") from None
            columns = [table[c].to_numpy() for c in _CSV_RATINGS_HEADER]
    except Exception as exc:  # pyarrow and pandas raise their own types; find the line ourselves
        raise _diagnose_ratings_csv(path, exc) from None
    return _Ratings(path, None, *columns)


def _read_csv_columns_pyarrow(path: Path, dtype: dict[str, Any]) -> list[np.ndarray]:
    """The columns of a CSV with a header, read by pyarrow (multi-threaded; ML-32M's 830 MB in
    seconds) straight into numpy arrays, without a pandas frame in between; the memory pyarrow
    used is handed back to the system at once.

    :raises ImportError: pyarrow is not installed
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {name: pa.from_numpy_dtype(np.dtype(t)) for name, t in dtype.items()}
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    if tuple(table.column_names) != tuple(dtype):
        raise ValueError(f"columns {table.column_names}")
    # one concatenation of the chunks' zero-copy views: ChunkedArray.to_numpy is 15x slower
    columns = [np.concatenate([chunk.to_numpy(zero_copy_only=True) for chunk in table.column(name).chunks])
               if table.num_rows else np.zeros(0, dtype=dtype[name]) for name in dtype]
    del table
    pa.default_memory_pool().release_unused()
    return columns


def _diagnose_ratings_csv(path: Path, exc: Exception) -> DataFormatError:
    """Find the first bad line of a ratings CSV (slow; only runs after a parse failure)."""
    with open(path, "rb") as handle:
        for lineno, line in enumerate(handle, 1):
            if lineno == 1:
                continue
            line = line.rstrip(b"\r\n")
            problem = _encoding_problem(line, "ascii")
            if problem:
                return DataFormatError(path, lineno, problem)
            fields = line.decode("ascii").split(",")
            if len(fields) != len(_CSV_RATINGS_HEADER):
                return DataFormatError(
                    path, lineno, f"expected {len(_CSV_RATINGS_HEADER)} fields "
                    f"({','.join(_CSV_RATINGS_HEADER)}), found {len(fields)}: {line.decode()!r}"
                )
            for field_name, value in zip(_RATING_FIELDS, fields, strict=True):
                problem = _number_problem(field_name, value, field_name == "rating")
                if problem:
                    return DataFormatError(path, lineno, problem)
    return DataFormatError(path, None, f"cannot be parsed as ratings: {exc}")


def _number_problem(field_name: str, value: str, decimal: bool) -> str | None:
    """Why ``value`` is not an integer (or, ``decimal``, a number) field; ``None`` if it is one."""
    if decimal:
        try:
            float(value)
            return None
        except ValueError:
            return f"{field_name} {value!r} is not a number"
    if not _INT.fullmatch(value.strip()):
        return f"{field_name} {value!r} is not an integer"
    if abs(int(value)) >= 2**63:
        return f"{field_name} {value!r} is out of range"
    return None


def _diagnose_ratings(
    path: Path, raw: bytes, sep: bytes, exc: Exception, half_stars: bool = False
) -> DataFormatError:
    """Find the first bad line of a ratings file (slow; only runs after a parse failure)."""
    sep_text = sep.decode()
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        problem = _encoding_problem(line, "ascii")
        if problem:
            return DataFormatError(path, lineno, problem)
        fields = line.decode("ascii").split(sep_text)
        if len(fields) != len(_RATING_FIELDS):
            return DataFormatError(
                path,
                lineno,
                f"expected {len(_RATING_FIELDS)} fields ({', '.join(_RATING_FIELDS)}) separated "
                f"by {sep_text!r}, found {len(fields)}: {line.decode()!r}",
            )
        for field_name, value in zip(_RATING_FIELDS, fields, strict=True):
            problem = _number_problem(field_name, value, half_stars and field_name == "rating")
            if problem:
                return DataFormatError(path, lineno, problem)
    return DataFormatError(path, None, f"cannot be parsed as ratings: {exc}")


def _encoding_problem(line: bytes, encoding: str) -> str | None:
    """Why ``line`` is not text in ``encoding`` (``None`` if it is)."""
    try:
        text = line.decode(encoding)
    except UnicodeDecodeError as exc:
        return (
            f"byte 0x{line[exc.start]:02x} at column {exc.start + 1} is not valid {encoding}: "
            f"wrong encoding (this file must be {encoding}, as in the GroupLens release)"
        )
    bad = _CONTROL.search(text)
    if bad:
        return (
            f"control character {bad.group()!r} at column {bad.start() + 1}: wrong encoding "
            f"(UTF-16 or a damaged file? this file must be {encoding}, as in the GroupLens release)"
        )
    return None


def _text_lines(path: Path, encoding: str) -> list[tuple[int, str]]:
    """Non-blank lines of a small text file as ``(line number, text)``, encoding-checked.

    ``encoding="latin-1"`` also accepts a copy re-encoded to UTF-8 (detected when the whole file
    is valid UTF-8 with non-ASCII characters; the original latin-1 files are not).
    """
    raw = path.read_bytes()
    if encoding == "latin-1" and not raw.isascii():
        try:
            raw.decode("utf-8")
            encoding = "utf-8-sig"
        except UnicodeDecodeError:
            pass
    lines = []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        problem = _encoding_problem(line, encoding)
        if problem:
            raise DataFormatError(path, lineno, problem)
        lines.append((lineno, line.decode(encoding)))
    if not lines:
        raise DataFormatError(path, None, "the file is empty")
    return lines


def _fields(
    path: Path, lineno: int, text: str, sep: str, names: tuple[str, ...], describe: str = ""
) -> list[str]:
    fields = text.split(sep)
    if len(fields) != len(names):
        raise DataFormatError(
            path,
            lineno,
            f"expected {len(names)} fields ({describe or ', '.join(names)}) separated by "
            f"{sep!r}, found {len(fields)}: {text!r}",
        )
    return fields


def _int(path: Path, lineno: int, what: str, value: str) -> int:
    if not _INT.fullmatch(value.strip()):
        raise DataFormatError(path, lineno, f"{what} {value!r} is not an integer")
    return int(value)


def _check_unique(path: Path, what: str, ids: list[int], lines: list[int]) -> None:
    first: dict[int, int] = {}
    for raw_id, lineno in zip(ids, lines, strict=True):
        if raw_id in first:
            raise DataFormatError(
                path, lineno, f"{what} {raw_id} is listed again (first at line {first[raw_id]})"
            )
        first[raw_id] = lineno


def _age_group(path: Path, lineno: int, age: int) -> int:
    if age < 0:
        raise DataFormatError(path, lineno, f"age {age} is negative")
    return int(np.searchsorted(AGE_GROUP_LOWER_BOUNDS[1:], age, side="right"))


def _gender(path: Path, lineno: int, value: str) -> int:
    if value not in ("F", "M"):
        raise DataFormatError(path, lineno, f"gender {value!r} is neither 'F' nor 'M'")
    return 0 if value == "F" else 1


def _users(
    path: Path, ids: list[int], features: list[tuple[int, int, int]], lines: list[int]
) -> _Users:
    _check_unique(path, "user id", ids, lines)
    return _Users(
        path, np.asarray(ids, dtype=np.int64), np.asarray(features, dtype=np.int32).reshape(-1, 3)
    )


def _read_occupations(path: Path) -> dict[str, int]:
    names = [text.strip() for _, text in _text_lines(path, "ascii")]
    if len(names) > _N_OCCUPATIONS or len(set(names)) != len(names):
        raise DataFormatError(
            path, None, f"expected at most {_N_OCCUPATIONS} distinct occupation names, "
            f"found {len(names)} ({len(set(names))} distinct)"
        )
    return {occupation: code for code, occupation in enumerate(names)}


def _read_users_ml100k(path: Path, occupations: dict[str, int]) -> _Users:
    ids, features, lines = [], [], []
    for lineno, text in _text_lines(path, "ascii"):
        uid, age, gender, occupation, _zip = _fields(
            path, lineno, text, "|", ("user id", "age", "gender", "occupation", "zip code")
        )
        if occupation not in occupations:
            raise DataFormatError(
                path, lineno, f"occupation {occupation!r} is not listed in u.occupation"
            )
        ids.append(_int(path, lineno, "user id", uid))
        age_group = _age_group(path, lineno, _int(path, lineno, "age", age))
        features.append((_gender(path, lineno, gender), age_group, occupations[occupation]))
        lines.append(lineno)
    return _users(path, ids, features, lines)


def _read_users_ml1m(path: Path) -> _Users:
    ids, features, lines = [], [], []
    for lineno, text in _text_lines(path, "ascii"):
        uid, gender, age, occupation, _zip = _fields(
            path, lineno, text, "::", ("UserID", "Gender", "Age", "Occupation", "Zip-code")
        )
        age_value = _int(path, lineno, "age", age)
        if age_value not in AGE_GROUP_LOWER_BOUNDS:
            raise DataFormatError(
                path, lineno, f"age {age_value} is not an ML-1M age code {AGE_GROUP_LOWER_BOUNDS}"
            )
        code = _int(path, lineno, "occupation", occupation)
        if not 0 <= code < _N_OCCUPATIONS:
            raise DataFormatError(
                path, lineno, f"occupation {code} is outside 0..{_N_OCCUPATIONS - 1}"
            )
        ids.append(_int(path, lineno, "user id", uid))
        features.append(
            (_gender(path, lineno, gender), AGE_GROUP_LOWER_BOUNDS.index(age_value), code)
        )
        lines.append(lineno)
    return _users(path, ids, features, lines)


def _year(title: str, release_date: str = "") -> int:
    """Year in the title's last ``(YYYY)``, else of an ML-100K release date, else -1."""
    years = _YEAR_IN_TITLE.findall(title)
    if years:
        return int(years[-1])
    date = _RELEASE_DATE.fullmatch(release_date.strip())
    return int(date.group(1)) if date else -1


def _read_items_ml100k(path: Path) -> _Items:
    names = ("movie id", "title", "release date", "video release date", "IMDb URL")
    describe = ", ".join(names) + f", {len(GENRES_ML100K)} genre flags"
    names += GENRES_ML100K
    ids, titles, years, genres, lines = [], [], [], [], []
    for lineno, text in _text_lines(path, "latin-1"):
        fields = _fields(path, lineno, text, "|", names, describe)
        flags = fields[5:]
        for genre, flag in zip(GENRES_ML100K, flags, strict=True):
            if flag not in ("0", "1"):
                raise DataFormatError(path, lineno, f"genre flag {genre!r} is {flag!r}, not 0 or 1")
        ids.append(_int(path, lineno, "movie id", fields[0]))
        titles.append(fields[1].strip())
        years.append(_year(fields[1], fields[2]))
        genres.append([flag == "1" for flag in flags])
        lines.append(lineno)
    _check_unique(path, "movie id", ids, lines)
    return _Items(
        path,
        np.asarray(ids, dtype=np.int64),
        titles,
        np.asarray(years, dtype=np.int32),
        np.asarray(genres, dtype=bool).reshape(-1, len(GENRES_ML100K)),
    )


def _read_items_ml1m(path: Path) -> _Items:
    genre_code = {g: j for j, g in enumerate(GENRES_ML1M)}
    ids, titles, years, lines = [], [], [], []
    genres = []
    for lineno, text in _text_lines(path, "latin-1"):
        movie_id, title, genre_field = _fields(
            path, lineno, text, "::", ("MovieID", "Title", "Genres")
        )
        row = np.zeros(len(GENRES_ML1M), dtype=bool)
        for genre in filter(None, genre_field.strip().split("|")):
            if genre not in genre_code:
                known = ", ".join(GENRES_ML1M)
                raise DataFormatError(
                    path, lineno, f"unknown genre {genre!r}; ML-1M genres are {known}"
                )
            row[genre_code[genre]] = True
        ids.append(_int(path, lineno, "movie id", movie_id))
        titles.append(title.strip())
        years.append(_year(title))
        genres.append(row)
        lines.append(lineno)
    _check_unique(path, "movie id", ids, lines)
    return _Items(
        path,
        np.asarray(ids, dtype=np.int64),
        titles,
        np.asarray(years, dtype=np.int32),
        np.asarray(genres, dtype=bool).reshape(-1, len(GENRES_ML1M)),
    )


def _items_with_genres(
    path: Path, ids: list[int], titles: list[str], genre_fields: list[str], lines: list[int]
) -> tuple[_Items, tuple[str, ...]]:
    """The items of a later release, its genre columns being the genres its movies name
    (vectorised: ML-32M lists 87,585 movies)."""
    _check_unique(path, "movie id", ids, lines)
    flags = pd.Series(genre_fields, dtype=str).str.strip().str.get_dummies(sep="|")
    flags = flags.drop(columns=[c for c in flags.columns if c in ("", _NO_GENRES)])
    names = tuple(sorted(flags.columns))
    # The last "(YYYY)" of a title, as _year reads it; -1 without one.
    last_year = pd.Series(titles, dtype=str).str.findall(_YEAR_IN_TITLE.pattern).str[-1]
    years = pd.to_numeric(last_year, errors="coerce").fillna(-1).to_numpy(dtype=np.int32)
    items = _Items(
        path, np.asarray(ids, dtype=np.int64), titles, years, flags[list(names)].to_numpy(dtype=bool),
    )  # fmt: skip
    return items, names


def _read_items_ml10m(path: Path) -> tuple[_Items, tuple[str, ...]]:
    """ML-10M's ``movies.dat``: ``MovieID::Title::Genres``, as ML-1M's with its own genres."""
    ids, titles, genre_fields, lines = [], [], [], []
    for lineno, text in _text_lines(path, "latin-1"):
        movie_id, title, genre_field = _fields(path, lineno, text, "::", ("MovieID", "Title", "Genres"))
        ids.append(_int(path, lineno, "movie id", movie_id))
        titles.append(title.strip())
        genre_fields.append(genre_field)
        lines.append(lineno)
    return _items_with_genres(path, ids, titles, genre_fields, lines)


def _read_items_csv(path: Path) -> tuple[_Items, tuple[str, ...]]:
    """ML-20M and later's ``movies.csv``: ``movieId,title,genres`` (quoted titles, UTF-8)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, None, f"cannot be read as a CSV of movies: {exc}") from None
    if tuple(table.columns) != _CSV_MOVIES_HEADER:
        raise DataFormatError(
            path, 1, f"expected the header {','.join(_CSV_MOVIES_HEADER)}, found {','.join(table.columns)!r}"
        )
    if table.empty:
        raise DataFormatError(path, None, "the file lists no movie")
    ids = pd.to_numeric(table["movieId"], errors="coerce")
    bad = ids.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(path, row + 2, f"movie id {table['movieId'].iloc[row]!r} is not an integer")
    lines = list(range(2, len(table) + 2))  # a quoted title may span lines: row numbers, near enough
    titles = [t.strip() for t in table["title"].tolist()]
    return _items_with_genres(path, ids.astype(np.int64).tolist(), titles, table["genres"].tolist(), lines)


#: Ids in ``[0, _DENSE_ID_LIMIT)`` are indexed through a lookup table (O(n), 4 bytes per id
#: value) instead of a sort: ML-32M's 32 million ratings in a fraction of a second.
_DENSE_ID_LIMIT = 1 << 25


def _unique_inverse(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` (sorted unique ids, and the position of each id
    among them), by a lookup table when the ids are small non-negative integers."""
    if ids.size == 0 or ids.min() < 0 or ids.max() >= _DENSE_ID_LIMIT:
        return np.unique(ids, return_inverse=True)
    present = np.zeros(int(ids.max()) + 1, dtype=bool)
    present[ids] = True
    unique = np.flatnonzero(present)
    table = np.empty(present.size, dtype=np.int64 if unique.size >= 2**31 else np.int32)
    table[unique] = np.arange(unique.size)
    return unique, table[ids]


def _rows_in_listing(
    listed_ids: np.ndarray, unique: np.ndarray, inverse: np.ndarray, ratings: _Ratings, what: str,
    listing: Path,
) -> np.ndarray:
    """Row of each of the ratings' ``unique`` ids in the listing file's ``listed_ids``; an error
    naming the first rating (in file order) whose id the listing lacks.

    :param inverse: each rating's position in ``unique`` (from :func:`_unique_inverse`)
    """
    order = np.argsort(listed_ids, kind="stable")
    sorted_ids = listed_ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, unique), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == unique if len(sorted_ids) else np.zeros(len(unique), dtype=bool)
    if not found.all():
        row = int(np.argmax(~found[inverse]))
        raise DataFormatError(
            ratings.path, ratings.line_of(row), f"{what} {int(unique[inverse[row]])} is not listed in {listing}"
        )
    return order[pos]


def _assemble(
    name: str, ratings: _Ratings, users: _Users | None, items: _Items, genre_names: tuple[str, ...]
) -> MovieLensData:
    """Check ratings against the user/item tables and remap everything to contiguous ids.

    :param users: the users file's table, or ``None`` for a release without one (users are
        those of the ratings, without features)
    """
    user_raw, item_raw, rating, timestamp = (
        np.ascontiguousarray(c) for c in (ratings.user, ratings.item, ratings.rating, ratings.timestamp)
    )
    scale = RATING_SCALES[name]
    if rating.dtype.kind in "iu":  # whole stars (ML-100K, ML-1M)
        bad = np.flatnonzero((rating < 1) | (rating > 5))
        if bad.size:
            row = int(bad[0])
            raise DataFormatError(
                ratings.path, ratings.line_of(row), f"rating {int(rating[row])} is outside 1..5"
            )
    else:
        twice = rating * 2
        bad = np.flatnonzero(~((twice == np.rint(twice)) & (rating >= scale[0]) & (rating <= scale[-1])))
        if bad.size:
            row = int(bad[0])
            raise DataFormatError(
                ratings.path, ratings.line_of(row),
                f"rating {float(rating[row])!r} is not a half star in {scale[0]}..{scale[-1]}",
            )
    # Only users and items that have ratings get an index, sorted by original id.
    user_raw_ids, user = _unique_inverse(user_raw)
    item_raw_ids, item = _unique_inverse(item_raw)
    n_items = len(item_raw_ids)
    if users is not None:
        user_rows = _rows_in_listing(users.raw_ids, user_raw_ids, user, ratings, "user id", users.path)
    item_rows = _rows_in_listing(items.raw_ids, item_raw_ids, item, ratings, "movie id", items.path)

    key = user.astype(np.int64) * n_items + item
    sorted_key = np.sort(key)  # unstable, fast; the stable order is only needed for the message
    if (sorted_key[1:] == sorted_key[:-1]).any():
        order = np.argsort(key, kind="stable")
        repeated = np.flatnonzero(key[order][1:] == key[order][:-1])
        j = int(np.argmin(order[repeated + 1]))
        first, again = int(order[repeated[j]]), int(order[repeated[j] + 1])
        raise DataFormatError(
            ratings.path,
            ratings.line_of(again),
            f"user {int(user_raw[again])} rated movie {int(item_raw[again])} again (first at "
            f"line {ratings.line_of(first)}); each (user, movie) pair may appear only once",
        )
    del key, sorted_key

    if users is not None:
        features: dict[str, Any] = {"user_features": users.features[user_rows]}
    else:
        features = {"user_features": np.zeros((len(user_raw_ids), 0), dtype=np.int32), **_metadata(name)}
    return MovieLensData(
        name=name,
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        rating=rating.astype(np.int8 if rating.dtype.kind in "iu" else np.float32),
        timestamp=timestamp.astype(np.int64),
        user_raw_ids=user_raw_ids.astype(np.int64),
        item_raw_ids=item_raw_ids.astype(np.int64),
        item_titles=np.array([items.titles[r] for r in item_rows], dtype=object),
        item_years=items.years[item_rows],
        item_genres=items.genres[item_rows],
        genre_names=tuple(genre_names),
        **features,
    )


def _metadata(name: str) -> dict[str, Any]:
    """The :class:`MovieLensData` fields of a release that differ from the defaults (ML-100K's)."""
    if name in _WITH_USERS:
        return {}
    return {"user_feature_names": (), "user_feature_cardinalities": (), "rating_scale": RATING_SCALES[name]}


def parse_movielens(name: str, folder: str | os.PathLike[str]) -> MovieLensData:
    """Parse the raw files in ``folder`` (no lookup, no cache, no comparison with the
    official figures: :func:`load_movielens` does those).

    :param name: ``"ml-100k"`` (``u.data``, ``u.user``, ``u.item``, ``u.occupation``),
        ``"ml-1m"`` (``ratings.dat``, ``users.dat``, ``movies.dat``), ``"ml-10m"``
        (``ratings.dat``, ``movies.dat``) or ``"ml-20m"``, ``"ml-25m"``, ``"ml-32m"``
        (``ratings.csv``, ``movies.csv``)
    :param folder: the dataset folder
    :return: the parsed, remapped dataset
    :raises MissingFileError: a required file is missing
    :raises DataFormatError: a file is malformed (the message names file and line)
    """
    folder = Path(folder)
    source = dataset_source(name)
    missing = [f for f in source.files if not (folder / f).is_file()]
    if missing:
        raise MissingFileError(folder, missing, name)
    ratings_path = folder / _RATINGS_FILE[name]
    if name == "ml-100k":
        occupations = _read_occupations(folder / "u.occupation")
        users = _read_users_ml100k(folder / "u.user", occupations)
        items = _read_items_ml100k(folder / "u.item")
        ratings = _read_ratings(ratings_path, b"\t")
        return _assemble(name, ratings, users, items, GENRES_ML100K)
    if name == "ml-1m":
        users = _read_users_ml1m(folder / "users.dat")
        items = _read_items_ml1m(folder / "movies.dat")
        ratings = _read_ratings(ratings_path, b"::")
        return _assemble(name, ratings, users, items, GENRES_ML1M)
    items, genre_names = _read_items_later(name, folder)
    if name == "ml-10m":
        ratings = _read_ratings(ratings_path, b"::", half_stars=True)
    else:
        ratings = _read_ratings_csv(ratings_path)
    return _assemble(name, ratings, None, items, genre_names)


def _read_items_later(name: str, folder: Path) -> tuple[_Items, tuple[str, ...]]:
    """The movies file of ML-10M (``movies.dat``) or a later release (``movies.csv``)."""
    return _read_items_ml10m(folder / "movies.dat") if name == "ml-10m" else _read_items_csv(folder / "movies.csv")


def _count_movies(name: str, folder: Path) -> int:
    """Movies listed in a later release's movies file (its official figure; read again only when
    checked, the parsed cache keeps rated movies only)."""
    return len(_read_items_later(name, folder)[0].raw_ids)


# --------------------------------------------------------------------------------------------
# Parsed-array cache
# --------------------------------------------------------------------------------------------

_ARRAY_FIELDS = (
    "user", "item", "rating", "timestamp", "user_features", "user_raw_ids", "item_raw_ids",
    "item_years", "item_genres",
)  # fmt: skip


def _cache_file(root: Path, name: str, folder: Path) -> Path:
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return root / "parsed" / f"{name}-{digest}.npz"


def _file_digest(path: Path) -> str:
    """Hex content hash of ``path``, read in chunks (``hashlib.file_digest`` needs 3.11)."""
    digest = hashlib.new(_CONTENT_HASH)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(name: str, folder: Path) -> str:
    # Contents, not size and mtime: an edit that keeps both (or a restored mtime) must be seen.
    files = [[f, _file_digest(folder / f)] for f in dataset_source(name).files]
    return json.dumps(
        {"version": CACHE_FORMAT_VERSION, "name": name, _CONTENT_HASH: files}, sort_keys=True
    )


def _read_cache(path: Path, signature: str) -> MovieLensData | None:
    try:
        npz = read_signed_npz(path, signature)
        if npz is None:
            return None
        name = str(npz["name"])
        data = MovieLensData(
            name=name,
            item_titles=npz["item_titles"].astype(object),
            genre_names=tuple(str(g) for g in npz["genre_names"]),
            **{f: npz[f] for f in _ARRAY_FIELDS},
            **_metadata(name),
        )
        n = data.n_ratings
        if not all(len(a) == n for a in (data.item, data.rating, data.timestamp)) or not (
            len(data.item_titles) == data.n_items == len(data.item_genres)
        ):
            raise ValueError("inconsistent array lengths")
        return data
    except Exception as exc:  # any unreadable cache is rebuilt, never fatal
        logger.warning("Ignoring unreadable cache file %s (%s); re-parsing", path, exc)
        return None


def _write_cache(path: Path, signature: str, data: MovieLensData) -> None:
    arrays = {
        "signature": np.array(signature),
        "name": np.array(data.name),
        "item_titles": np.array([str(t) for t in data.item_titles], dtype=str),
        "genre_names": np.array(data.genre_names, dtype=str),
        **{f: getattr(data, f) for f in _ARRAY_FIELDS},
    }
    try:
        atomic_write(path, lambda tmp: savez(tmp, arrays))
    except OSError as exc:
        logger.warning("Could not write the parsed-data cache %s (%s)", path, exc)


def _check_official(data: MovieLensData, folder: Path) -> None:
    """:class:`DatasetMismatchError` unless ``data`` has the figures of its official release
    (those :data:`OFFICIAL_FIGURES` gives)."""
    expected = OFFICIAL_FIGURES[data.name]
    scale = data.rating_scale
    levels = rating_levels(scale, data.rating) if expected.rating_counts is not None else None
    found = OfficialFigures(
        n_ratings=data.n_ratings,
        n_users=data.n_users,
        n_items=data.n_items,
        rating_counts=None if levels is None else tuple(
            int(c) for c in np.bincount(levels, minlength=len(scale) + 1)[1:]
        ),
        first_timestamp=int(data.timestamp.min()),
        last_timestamp=int(data.timestamp.max()),
        n_movies=None if expected.n_movies is None else _count_movies(data.name, folder),
    )
    labels = {
        "n_ratings": "ratings (rows)",
        "n_users": "users with ratings",
        "n_items": "movies with ratings",
        "rating_counts": f"ratings of {' / '.join(str(r) for r in scale)} stars",
        "first_timestamp": "earliest timestamp",
        "last_timestamp": "latest timestamp",
        "n_movies": "movies listed in the movies file",
    }
    differences = {
        field: (getattr(expected, field), getattr(found, field))
        for field in labels
        if getattr(expected, field) is not None and getattr(expected, field) != getattr(found, field)
    }
    if not differences:
        return

    def show(value: object) -> str:
        return " / ".join(f"{v:,}" for v in value) if isinstance(value, tuple) else f"{value:,}"

    lines = "\n".join(
        f"  - {labels[field]}: expected {show(want)}, found {show(got)}"
        for field, (want, got) in differences.items()
    )
    source = dataset_source(data.name)
    raise DatasetMismatchError(
        folder / _RATINGS_FILE[data.name],
        differences,
        f"this {data.name} copy does not match the official GroupLens release, so the file "
        f"looks truncated or edited:\n{lines}\n"
        f"Replace the folder's files with those of the official {source.url}, or, if the copy "
        f"is edited on purpose, load it with load_movielens({data.name!r}, ..., "
        f"expect_official=False) (for the environment: gym.make('MovieLensRec-v0', "
        f"split_data=split_ratings(that data)); see the README's Data section).",
    )


def load_movielens(
    name: str = "ml-100k",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    expect_official: bool = True,
) -> MovieLensData:
    """Load a MovieLens dataset as a :class:`~recsim_env.dataset.MovieLensData`.

    The files are looked up as :func:`locate_movielens` describes (``data_dir`` alone when
    given; else ``$MOVIELENS_DATA``, the cache, then a download). The parsed arrays are cached in
    ``<cache>/parsed/`` and reused while the source files keep their contents (SHA-256).

    :param name: one of :data:`recsim_env.dataset.DATASETS`: ``"ml-100k"``, ``"ml-1m"``,
        ``"ml-10m"``, ``"ml-20m"``, ``"ml-25m"`` or ``"ml-32m"``
    :param data_dir: a root holding ``<name>/``, or the dataset folder itself; default ``None``
    :param download: download the official zip when no copy is found (default ``True``)
    :param cache_dir: cache directory; default ``$RECSIM_ENV_CACHE``, else
        ``$XDG_CACHE_HOME/recsim_env``, else ``~/.cache/recsim_env``
    :param expect_official: compare the data with the official release's figures
        (:data:`OFFICIAL_FIGURES`) and raise :class:`DatasetMismatchError` on any difference
        (default ``True``); ``False`` for a copy edited on purpose (subsampled, filtered,
        hand-made in the same format). A downloaded copy (in the per-user cache) of a release
        without a published checksum (ML-32M) is always compared: the figures are its check
    :return: the dataset: users and items remapped to contiguous indices sorted by original id
        (only those with ratings), ratings in file order
    :raises DatasetNotFoundError: ``data_dir`` or ``$MOVIELENS_DATA`` names a path that does
        not exist (or ``data_dir`` holds no dataset folder); or the dataset is found nowhere and
        cannot be downloaded (the message lists every place looked at)
    :raises MissingFileError: a dataset folder exists but lacks a required file
    :raises DataFormatError: a file is malformed (the message names file and line)
    :raises DatasetMismatchError: ``expect_official`` and a figure differs from the official
        release (a truncated or edited file; the message lists expected and found figures)
    :raises ChecksumError: the download does not match the published checksum
    """
    folder = locate_movielens(name, data_dir, download=download, cache_dir=cache_dir)
    signature = _signature(name, folder)
    cache_file = _cache_file(cache_root(cache_dir), name, folder)
    data = _read_cache(cache_file, signature)
    if data is None:
        data = parse_movielens(name, folder)
        # A file rewritten while it was parsed must not be cached under its old hash.
        if _signature(name, folder) == signature:
            _write_cache(cache_file, signature, data)
    downloaded = folder.resolve() == (cache_root(cache_dir) / name).resolve()
    if expect_official or (downloaded and dataset_source(name).md5 is None):
        _check_official(data, folder)
    return data
