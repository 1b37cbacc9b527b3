"""Per-user train/test splits of a :class:`~recsim_env.dataset.MovieLensData`.

Every user's ratings are ordered chronologically (by timestamp, ties by file order). The
number of train ratings of a user with ``n`` ratings is ``round(train_ratio * n)`` (halves
rounded up), but at least 1 and, when ``n >= 2``, at most ``n - 1``: no user has an empty
train part, and every user with two or more ratings has a test item.

* ``"temporal"`` (default): the earliest ratings go to train, the latest to test.
* ``"random"``: a seeded per-user random subset of that size goes to train.

Inside each part the sequence stays chronological. Everything is vectorised (one lexsort).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from recsim_env.dataset import MovieLensData, Split

__all__ = ["SPLIT_METHODS", "holdout_last", "split_ratings", "train_counts"]

#: Accepted values of ``method``.
SPLIT_METHODS: tuple[str, ...] = ("temporal", "random")


def _check_ratio(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a float in (0, 1), got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"{what} must be strictly between 0 and 1, got {value!r}")
    return value


def train_counts(counts: np.ndarray, train_ratio: float) -> np.ndarray:
    """Number of train ratings for users with ``counts`` ratings.

    :param counts: ratings per user, int array
    :param train_ratio: fraction in (0, 1)
    :return: ``round(train_ratio * n)`` (halves up), clipped to ``[1, n - 1]`` for ``n >= 2``;
        1 for ``n == 1`` and 0 for ``n == 0``
    """
    counts = np.asarray(counts, dtype=np.int64)
    # The epsilon keeps e.g. 0.7 * 5 = 3.4999999999999996 from rounding down.
    n_train = np.floor(counts * train_ratio + 0.5 + 1e-9).astype(np.int64)
    n_train = np.clip(n_train, 1, np.maximum(counts - 1, 1))
    return np.minimum(n_train, counts)


def _csr(users: np.ndarray, n_users: int) -> np.ndarray:
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr


def split_ratings(
    data: MovieLensData, method: str = "temporal", train_ratio: float = 0.8, seed: int = 0
) -> Split:
    """Split every user's ratings into a train and a test part.

    :param data: the dataset
    :param method: ``"temporal"`` (earliest ratings train, latest test) or ``"random"``
        (seeded random subset per user); default ``"temporal"``
    :param train_ratio: fraction of each user's ratings in train, in (0, 1); default 0.8
    :param seed: seed of the ``"random"`` split (non-negative int; recorded, unused for temporal)
    :return: the :class:`~recsim_env.dataset.Split`, each part chronological per user
    """
    if not isinstance(data, MovieLensData):
        raise TypeError(f"data must be a MovieLensData, got {type(data).__name__}")
    if method not in SPLIT_METHODS:
        raise ValueError(f"Unknown split method {method!r}; choose one of {SPLIT_METHODS}")
    train_ratio = _check_ratio(train_ratio, "train_ratio")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")

    n, n_users = data.n_ratings, data.n_users
    users = np.asarray(data.user, dtype=np.int64)
    # User-major chronological order; the row index makes ties follow file order.
    chrono = np.lexsort((np.arange(n), data.timestamp, users))
    indptr = _csr(users, n_users)
    n_train = train_counts(np.diff(indptr), train_ratio)

    if method == "temporal":
        rank = np.arange(n) - indptr[users[chrono]]  # position in the user's own sequence
        in_train = rank < n_train[users[chrono]]
    else:
        rng = np.random.default_rng(int(seed))
        shuffled = np.argsort(users + rng.random(n))  # user-major, random order inside
        rank = np.arange(n) - indptr[users[shuffled]]
        is_train = np.empty(n, dtype=bool)
        is_train[shuffled] = rank < n_train[users[shuffled]]
        in_train = is_train[chrono]

    train, test = chrono[in_train], chrono[~in_train]
    return Split(
        data=data,
        method=method,
        train_ratio=train_ratio,
        seed=int(seed),
        train_indptr=_csr(users[train], n_users),
        train_items=data.item[train],
        train_ratings=data.rating[train],
        train_timestamps=data.timestamp[train],
        test_indptr=_csr(users[test], n_users),
        test_items=data.item[test],
        test_ratings=data.rating[test],
        test_timestamps=data.timestamp[test],
    )


def holdout_last(split: Split, fraction: float = 0.2) -> Split:
    """A validation split: every user's train sequence is cut again, chronologically.

    The last ``fraction`` of each user's train sequence becomes the test part of the returned
    split (same count rule as :func:`split_ratings` with ``train_ratio = 1 - fraction``); the
    original test part is not used, so tuning on the result never sees test ratings.

    :param split: the split whose train part is cut
    :param fraction: fraction of each train sequence held out, in (0, 1); default 0.2
    :return: a :class:`~recsim_env.dataset.Split` with ``method = "<method>+holdout_last"`` and
        ``train_ratio = 1 - fraction``
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a Split, got {type(split).__name__}")
    keep_ratio = 1.0 - _check_ratio(fraction, "fraction")
    indptr = np.asarray(split.train_indptr, dtype=np.int64)
    lengths = np.diff(indptr)
    owner = np.repeat(np.arange(split.n_users), lengths)
    rank = np.arange(indptr[-1]) - indptr[owner]
    keep = rank < train_counts(lengths, keep_ratio)[owner]
    return Split(
        data=split.data,
        method=f"{split.method}+holdout_last",
        train_ratio=keep_ratio,
        seed=split.seed,
        train_indptr=_csr(owner[keep], split.n_users),
        train_items=split.train_items[keep],
        train_ratings=split.train_ratings[keep],
        train_timestamps=split.train_timestamps[keep],
        test_indptr=_csr(owner[~keep], split.n_users),
        test_items=split.train_items[~keep],
        test_ratings=split.train_ratings[~keep],
        test_timestamps=split.train_timestamps[~keep],
    )
