"""Any interaction log as a dataset: :func:`load_interactions`.

A log is a table with one row per interaction: a user id, an item id and, optionally, a rating
(explicit feedback) or a value (implicit feedback), a time and categorical user features. It
comes as a CSV file (``.csv``, ``.tsv``, optionally compressed: ``.gz``, ``.bz2``, ``.xz``,
``.zst``, ``.zip``), a Parquet file (``.parquet``, ``.pq``; needs ``pyarrow``) or a pandas
DataFrame, and becomes
the :class:`~recsim_env.dataset.MovieLensData` the MovieLens loaders return, so that splits,
the environment, the user model, the baselines, the evaluator and training take it unchanged.

Decisions, where a log leaves room:

* **Ids** are integers when every value of the column is one (a CSV's ``"007"`` stays the string
  ``"007"``: it is not the id ``7``), else strings. They are remapped to contiguous indices
  sorted by original id; ``data.user_raw_ids`` / ``data.item_raw_ids`` map an index back and
  :meth:`~recsim_env.dataset.MovieLensData.item_index` maps ids to indices.
* **Feedback**: with ``rating=`` (explicit) a rating ``>= like_threshold`` (default 4) is a
  like and the default reward is ``rating / max(rating)`` on a like, as on MovieLens. Without it
  (implicit) every interaction is a like worth 1, or worth its ``value=`` column. Ratings and
  values must be positive numbers (0 means "no rating" in the environment), at most 127
  distinct ones (:data:`~recsim_env.dataset.MAX_RATING_LEVELS`).
* **Time**: ``timestamp=`` may hold Unix seconds (fractions are dropped), date-time strings
  (ISO 8601 is safest; read with :func:`pandas.to_datetime`, naive times taken as UTC) or
  date-time values. Without it the row order is the time order (timestamps are row numbers).
* **Duplicates**: a (user, item) pair may occur once. ``duplicates="error"`` (default) says so;
  ``"last"`` / ``"first"`` keep the pair's latest / earliest interaction (by time, then row).
* **Users with one interaction** cannot be split into a train and a test part: an error that
  says how many there are and how to drop them.
* **User features** are categorical: each column's values become codes ``0 .. k-1`` in sorted
  order (``data.user_feature_categories`` keeps the values); a user's value must not change
  between rows, and may not be missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recsim_env.dataset import MAX_RATING_LEVELS, MovieLensData

__all__ = ["DUPLICATE_POLICIES", "load_interactions"]

#: Values of ``duplicates``: refuse repeated (user, item) pairs, or keep their latest / earliest.
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "last", "first")
#: The like threshold of an explicit log when ``like_threshold`` is not given (as on MovieLens).
DEFAULT_LIKE_THRESHOLD = 4
_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")
_PARQUET_SUFFIXES = (".parquet", ".pq")


class _Rows:
    """Where a row of the log is, for messages: a CSV line, a Parquet row or a DataFrame index."""

    def __init__(self, kind: str, index: pd.Index | None = None) -> None:
        self.kind, self.index = kind, index

    def __call__(self, row: int) -> str:
        if self.kind == "csv":
            return f"line {row + 2}"  # 1-based, after the header line
        if self.kind == "frame" and self.index is not None:
            return f"row {row} (index {self.index[row]!r})"
        return f"row {row}"


def load_interactions(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    user: str,
    item: str,
    rating: str | None = None,
    value: str | None = None,
    timestamp: str | None = None,
    user_features: Sequence[str] | None = None,
    duplicates: str = "error",
    like_threshold: float | None = None,
    name: str | None = None,
) -> MovieLensData:
    """Load an interaction log as a :class:`~recsim_env.dataset.MovieLensData` (module docstring).

    >>> import pandas as pd
    >>> log = pd.DataFrame({"who": ["ann", "ann", "bob", "bob"], "what": ["a", "b", "a", "c"]})
    >>> data = load_interactions(log, user="who", item="what")
    >>> data.n_users, data.n_items, data.feedback, data.item_raw_ids.tolist()
    (2, 3, 'implicit', ['a', 'b', 'c'])

    :param source: a CSV path (``.csv``, ``.tsv``, optionally compressed), a Parquet path
        (``.parquet``, ``.pq``) or a :class:`pandas.DataFrame`
    :param user: column of the user ids (integers or strings)
    :param item: column of the item ids (integers or strings)
    :param rating: column of explicit ratings (positive numbers); ``None``: implicit feedback
    :param value: implicit feedback only: column of each interaction's worth (positive
        numbers; the default reward of a consumed item); ``None``: every interaction is worth 1
    :param timestamp: column of the interaction times (Unix seconds, date-time strings or
        values); ``None``: the row order is the time order
    :param user_features: columns of categorical user features (default none)
    :param duplicates: a repeated (user, item) pair: ``"error"`` (default), or keep its
        ``"last"`` or ``"first"`` interaction in time order
    :param like_threshold: explicit feedback only: the dataset's default like threshold (default
        4); implicit feedback: every interaction is a like, so it cannot be given
    :param name: the dataset's name (default: the file name without suffixes, or
        ``"interactions"`` for a DataFrame)
    :return: the dataset: users and items remapped to contiguous indices sorted by original id,
        interactions in source order (duplicates dropped as ``duplicates`` says)
    :raises FileNotFoundError: ``source`` is a path that does not exist
    :raises ValueError: an unsupported file type, a missing column (the message lists those
        present), a null id, an unparseable rating or time, a repeated (user, item) pair
        (``duplicates="error"``), a user with a single interaction, a user feature that changes
        within a user, or inconsistent options; each message names the problem and the fix
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if rating is not None and value is not None:
        raise ValueError(
            f"give rating= (explicit ratings, liked from like_threshold on) or value= (implicit "
            f"feedback, every interaction a like worth its value), not both: got rating={rating!r}, "
            f"value={value!r}"
        )
    if rating is None and like_threshold is not None:
        raise ValueError(
            f"like_threshold={like_threshold!r} needs rating= (explicit ratings): in implicit "
            f"feedback every interaction is a like"
        )
    features = list(user_features or ())
    wanted = {"user": user, "item": item, "rating": rating, "value": value, "timestamp": timestamp}
    columns = [c for c in wanted.values() if c is not None] + features
    for role, column in wanted.items():
        if column is not None and not isinstance(column, str):
            raise ValueError(f"{role}= must be a column name (str), got {column!r}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"a column may serve one purpose only; got the columns {columns}")

    table, rows, default_name = _read(source, columns, id_columns=(user, item))
    if len(table) == 0:
        raise ValueError(f"the log {default_name!r} has no rows")

    user_raw, user_index = _ids(table[user], user, "user", rows)
    item_raw, item_index = _ids(table[item], item, "item", rows)
    times = _timestamps(table[timestamp], timestamp, rows) if timestamp else np.arange(len(table), dtype=np.int64)
    if rating is not None:
        ratings = _positive_numbers(table[rating], rating, "rating", rows)
    elif value is not None:
        ratings = _positive_numbers(table[value], value, "value", rows)
    else:
        ratings = np.ones(len(table), dtype=np.int8)

    keep = _deduplicate(user_index, item_index, times, duplicates, user_raw, item_raw, user, item, rows)
    if keep is not None:
        user_index, item_index, times, ratings = (a[keep] for a in (user_index, item_index, times, ratings))
        table = table.iloc[keep]
    _check_counts(user_index, len(user_raw), user_raw, user)
    codes, cardinalities, categories = _user_features(table, features, user_index, len(user_raw), user_raw)

    scale = tuple(np.unique(ratings).tolist())
    if len(scale) > MAX_RATING_LEVELS:
        column = rating if rating is not None else value
        raise ValueError(
            f"column {column!r} has {len(scale)} distinct values; at most {MAX_RATING_LEVELS} "
            f"are allowed (the environment keys rewards by rating): round or bin it first"
        )
    if rating is not None:
        threshold = DEFAULT_LIKE_THRESHOLD if like_threshold is None else like_threshold
        if like_threshold is None and not scale[0] <= threshold <= scale[-1]:
            raise ValueError(
                f"ratings of {rating!r} range over [{scale[0]}, {scale[-1]}], which does not hold "
                f"the default like_threshold {DEFAULT_LIKE_THRESHOLD}: pass like_threshold= (the "
                f"smallest rating that counts as a like)"
            )
        feedback = "explicit"
    else:
        threshold, feedback = scale[0], "implicit"
    titles = np.array([str(i) for i in item_raw.tolist()], dtype=object)
    n_items = len(item_raw)
    return MovieLensData(
        name=name or default_name,
        user=user_index.astype(np.int32),
        item=item_index.astype(np.int32),
        rating=ratings,
        timestamp=times,
        user_features=codes,
        user_raw_ids=user_raw,
        item_raw_ids=item_raw,
        item_titles=titles,
        item_years=np.full(n_items, -1, dtype=np.int32),
        item_genres=np.zeros((n_items, 0), dtype=bool),
        genre_names=(),
        user_feature_names=tuple(features),
        user_feature_cardinalities=cardinalities,
        user_feature_categories=categories,
        rating_scale=scale,
        like_threshold=threshold,
        feedback=feedback,
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _read(
    source: str | os.PathLike[str] | pd.DataFrame, columns: list[str], id_columns: tuple[str, str]
) -> tuple[pd.DataFrame, _Rows, str]:
    """The needed columns of the log, where its rows are (for messages) and its default name."""
    if isinstance(source, pd.DataFrame):
        _check_columns(list(source.columns), columns, "the DataFrame")
        return source[columns].reset_index(drop=True), _Rows("frame", source.index), "interactions"
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            f"source must be a CSV or Parquet path or a pandas DataFrame, got {type(source).__name__}"
        )
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"interaction log {path} does not exist (or is not a file)")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    stem = path.name.split(".")[0] or "interactions"
    if kind in _PARQUET_SUFFIXES:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or save the log as CSV") from None

        present = pq.read_schema(path).names
        _check_columns(present, columns, str(path))
        return pd.read_parquet(path, columns=columns), _Rows("parquet"), stem
    if kind in _CSV_SUFFIXES:
        sep = _CSV_SUFFIXES[kind]
        present = list(pd.read_csv(path, sep=sep, nrows=0).columns)
        _check_columns(present, columns, str(path))
        # Ids as text: "007" and "7" are different ids (integers are recognised later).
        table = pd.read_csv(
            path, sep=sep, usecols=columns, dtype={c: str for c in id_columns}, keep_default_na=True
        )
        return table[columns], _Rows("csv"), stem
    raise ValueError(
        f"{path}: unknown file type {''.join(path.suffixes) or '(no suffix)'}; a log is a CSV "
        f"({', '.join(_CSV_SUFFIXES)}, optionally {', '.join(_COMPRESSED)}) or Parquet "
        f"({', '.join(_PARQUET_SUFFIXES)}) file, or a pandas DataFrame"
    )


def _check_columns(present: list[str], wanted: list[str], where: str) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ValueError(
            f"{where} has no column {', '.join(repr(c) for c in missing)}; its columns are "
            f"{', '.join(repr(str(c)) for c in present)}. Name the right columns (user=, item=, "
            f"rating=, value=, timestamp=, user_features=)"
        )


def _nulls(column: pd.Series, name: str, what: str, rows: _Rows, fix: str) -> None:
    null = column.isna().to_numpy()
    if null.any():
        first = int(np.flatnonzero(null)[0])
        raise ValueError(
            f"{what} column {name!r} has {int(null.sum()):,} missing value(s), the first at "
            f"{rows(first)}: {fix}"
        )


def _ids(column: pd.Series, name: str, what: str, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted distinct ids, index of each row's id)``; int64 ids when every id is an integer."""
    _nulls(column, name, f"{what} id", rows, f"every interaction needs a {what}; drop those rows")
    ids: np.ndarray | None = None
    if pd.api.types.is_bool_dtype(column):
        raise ValueError(f"{what} id column {name!r} holds booleans; ids are integers or strings")
    if pd.api.types.is_integer_dtype(column):
        ids = column.to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        whole = np.isfinite(values) & (values == np.round(values))
        if not whole.all():
            first = int(np.flatnonzero(~whole)[0])
            raise ValueError(
                f"{what} id column {name!r} holds {float(values[first])!r} at {rows(first)}; ids are "
                f"integers or strings"
            )
        ids = values.astype(np.int64)
    else:
        text = column.astype(str)
        numbers = pd.to_numeric(text, errors="coerce")
        if not numbers.isna().any() and pd.api.types.is_integer_dtype(numbers):
            # Integers only when nothing is lost: "7" is 7, but "007" or "+7" stay strings.
            if (numbers.astype(str) == text).all():
                ids = numbers.to_numpy(dtype=np.int64)
        if ids is None:
            ids = text.to_numpy(dtype=str)
    raw, index = np.unique(ids, return_inverse=True)
    return raw, index.reshape(-1).astype(np.int64)


def _positive_numbers(column: pd.Series, name: str, what: str, rows: _Rows) -> np.ndarray:
    """A rating or value column as int8 (whole numbers up to 127) or float64, each > 0."""
    _nulls(column, name, what, rows, f"every interaction needs a {what}; drop or fill those rows")
    if pd.api.types.is_bool_dtype(column):
        raise ValueError(f"{what} column {name!r} holds booleans; {what}s are positive numbers")
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what} {column.iloc[first]!r} at {rows(first)} (column {name!r}) is not a number"
        )
    values = numbers.to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what} {float(values[first])!r} at {rows(first)} (column {name!r}) is not a positive "
            f"number: {what}s must be > 0 (0 means 'no rating' in the environment); shift or "
            f"drop those rows"
        )
    if np.all(values == np.round(values)) and values.max() <= np.iinfo(np.int8).max:
        return values.astype(np.int8)
    return values


def _timestamps(column: pd.Series, name: str, rows: _Rows) -> np.ndarray:
    """Unix seconds (int64) from numbers, date-time strings or date-time values."""
    fix = "every interaction needs a time; drop or fill those rows, or leave timestamp= out (row order = time order)"
    _nulls(column, name, "timestamp", rows, fix)
    if pd.api.types.is_datetime64_any_dtype(column):
        return _seconds(column)
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            first = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"timestamp {float(values[first])!r} at {rows(first)} (column {name!r}) is not finite")
        return np.floor(values).astype(np.int64)
    text = column.astype(str)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().any():  # Unix seconds written as text: every value must be a number
        bad = numbers.isna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"timestamp {text.iloc[first]!r} at {rows(first)} (column {name!r}) is not a "
                f"number, while other rows hold Unix seconds: fix or drop that row"
            )
        return np.floor(numbers.to_numpy(dtype=np.float64)).astype(np.int64)
    # ISO 8601 in any of its forms first ("2024-01-31" and "2024-01-31T12:00+01:00" together),
    # else the format pandas infers from the first value (e.g. "01/31/2024 12:00").
    for fmt in ("ISO8601", None):
        try:
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format=fmt)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"timestamp column {name!r} cannot be read as date-times: {exc}") from None
        bad = parsed.isna().to_numpy()
        if not bad.any():
            return _seconds(parsed)
    first = int(np.flatnonzero(bad)[0])
    raise ValueError(
        f"timestamp {text.iloc[first]!r} at {rows(first)} (column {name!r}) cannot be parsed as "
        f"a date-time: write every time in one format, ISO 8601 ('2024-01-31 12:00:00') or Unix "
        f"seconds"
    )


def _seconds(times: pd.Series) -> np.ndarray:
    if times.dt.tz is None:
        times = times.dt.tz_localize("UTC")
    return (times.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[s]")).to_numpy().astype(np.int64)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _deduplicate(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, policy: str,
    user_raw: np.ndarray, item_raw: np.ndarray, user_col: str, item_col: str, rows: _Rows,
) -> np.ndarray | None:
    """Rows to keep (source order) when (user, item) pairs repeat; ``None`` when none does."""
    key = users * max(int(items.max()) + 1, 1) + items
    order = np.lexsort((np.arange(users.size), times, key))  # by pair, then time, then row
    sorted_key = key[order]
    repeat = sorted_key[1:] == sorted_key[:-1]
    if not repeat.any():
        return None
    if policy == "error":
        j = int(np.flatnonzero(repeat)[0])
        first, again = int(order[j]), int(order[j + 1])
        n_pairs = int(np.count_nonzero(repeat & ~np.concatenate(([False], repeat[:-1]))))
        raise ValueError(
            f"{n_pairs:,} (user, item) pair(s) occur more than once ({int(repeat.sum()):,} extra "
            f"rows), e.g. {user_col}={user_raw[users[first]].item()!r} with "
            f"{item_col}={item_raw[items[first]].item()!r} at {rows(min(first, again))} and "
            f"{rows(max(first, again))}. Each pair may occur once: pass duplicates='last' (keep "
            f"its latest interaction) or duplicates='first' (its earliest)"
        )
    # A group's last element has no equal successor; its first has no equal predecessor.
    chosen = ~np.append(repeat, False) if policy == "last" else ~np.insert(repeat, 0, False)
    return np.sort(order[chosen])


def _check_counts(users: np.ndarray, n_users: int, user_raw: np.ndarray, user_col: str) -> None:
    counts = np.bincount(users, minlength=n_users)
    single = np.flatnonzero(counts == 1)
    if single.size:
        raise ValueError(
            f"{single.size:,} of {n_users:,} users have a single interaction (e.g. "
            f"{user_col}={user_raw[single[0]].item()!r}): a per-user train/test split needs at "
            f"least 2. Drop them first, e.g. log = log[log.groupby({user_col!r})[{user_col!r}]"
            f".transform('size') >= 2]"
        )


def _user_features(
    table: pd.DataFrame, features: list[str], users: np.ndarray, n_users: int, user_raw: np.ndarray
) -> tuple[np.ndarray, tuple[int, ...], tuple[tuple[str, ...], ...]]:
    """``(codes (n_users, F) int32, cardinalities, category labels)`` of the feature columns."""
    codes = np.zeros((n_users, len(features)), dtype=np.int32)
    cardinalities, categories = [], []
    for j, name in enumerate(features):
        column = table[name].reset_index(drop=True)
        null = column.isna().to_numpy()
        if null.any():
            raise ValueError(
                f"user feature {name!r} is missing in {int(null.sum()):,} row(s) (e.g. for user "
                f"{user_raw[users[np.flatnonzero(null)[0]]].item()!r}): fill it with a category "
                f"of its own, e.g. log[{name!r}] = log[{name!r}].fillna('unknown')"
            )
        if column.dtype == object:  # mixed types (1 and "1") cannot be sorted: compare as text
            column = column.astype(str)
        code, labels = pd.factorize(column, sort=True)
        per_user = np.full(n_users, -1, dtype=np.int64)
        per_user[users] = code
        changed = per_user[users] != code
        if changed.any():
            row = int(np.flatnonzero(changed)[0])
            u = users[row]
            seen = sorted({str(labels[c]) for c in code[users == u]})
            raise ValueError(
                f"user feature {name!r} changes within user {user_raw[u].item()!r} (values "
                f"{seen}); user features are one value per user: keep one (e.g. the latest) "
                f"before loading"
            )
        codes[:, j] = per_user
        cardinalities.append(len(labels))
        categories.append(tuple(str(v) for v in labels))
    return codes, tuple(cardinalities), tuple(categories)
