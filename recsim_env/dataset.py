"""In-memory MovieLens data: the one schema shared by both datasets, the split and every model.

Id conventions (used everywhere in this project):

* Users are remapped to contiguous indices ``0 .. n_users-1`` (sorted by original id).
* Items are remapped to contiguous indices ``0 .. n_items-1`` (sorted by original id,
  only items that have at least one rating). **An item index is the action index** of
  ``MovieLensRec-v0`` and the column of every score matrix.
* In observations an item is written as its *token* ``item + 1``, so that token ``0`` is
  reserved for padding (see :func:`item_to_token`).

User features are integer codes shared by ML-100K and ML-1M:

* ``gender``: 0 = F, 1 = M
* ``age``: ML-1M's 7 age groups, 0..6 = under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
  (ML-100K's exact ages are bucketed into these groups)
* ``occupation``: 0..20 (ML-1M codes; ML-100K's ``u.occupation`` names mapped in file order)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Names of the datasets the package loads (the one list: loader, environment and scripts use it).
DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m")
#: Column order of :attr:`MovieLensData.user_features`.
USER_FEATURES: tuple[str, ...] = ("gender", "age", "occupation")
#: Number of distinct codes of each user feature (the ``high`` of its Box is this minus one).
USER_FEATURE_CARDINALITIES: tuple[int, ...] = (2, 7, 21)
#: Age group lower bounds of ML-1M (``users.dat`` stores these numbers).
AGE_GROUP_LOWER_BOUNDS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
#: Token used for "no item" in observation sequences.
PAD_TOKEN = 0


def item_to_token(item: np.ndarray | int) -> np.ndarray | int:
    """Observation token of an item index (``item + 1``; 0 is padding)."""
    return item + 1


def token_to_item(token: np.ndarray | int) -> np.ndarray | int:
    """Item index of an observation token (``token - 1``; padding maps to -1)."""
    return token - 1


@dataclass(frozen=True, eq=False)
class MovieLensData:
    """One MovieLens dataset, parsed and remapped to contiguous ids.

    Rating arrays are parallel, one entry per rating, in the order of the source file.

    :param name: dataset name, ``"ml-100k"`` or ``"ml-1m"`` (or a custom name for hand-made data)
    :param user: user index of each rating, int32 in ``[0, n_users)``
    :param item: item index of each rating, int32 in ``[0, n_items)``
    :param rating: rating of each rating, int8 in ``[1, 5]``
    :param timestamp: Unix seconds of each rating, int64
    :param user_features: int32 array ``(n_users, 3)``, columns :data:`USER_FEATURES`
    :param user_raw_ids: original user id of each user index, int64 ``(n_users,)``
    :param item_raw_ids: original movie id of each item index, int64 ``(n_items,)``
    :param item_titles: title of each item index, object array of str ``(n_items,)``
    :param item_years: release year of each item index, int32 ``(n_items,)``, -1 if unknown
    :param item_genres: bool ``(n_items, n_genres)`` genre indicator matrix
    :param genre_names: names of the genre columns
    """

    name: str
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_features: np.ndarray
    user_raw_ids: np.ndarray
    item_raw_ids: np.ndarray
    item_titles: np.ndarray
    item_years: np.ndarray
    item_genres: np.ndarray
    genre_names: tuple[str, ...]

    @property
    def n_users(self) -> int:
        """Number of users (rows of :attr:`user_features`)."""
        return int(self.user_features.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items (= size of the action space)."""
        return int(self.item_raw_ids.shape[0])

    @property
    def n_ratings(self) -> int:
        """Number of ratings."""
        return int(self.user.shape[0])


@dataclass(frozen=True, eq=False)
class Split:
    """Per-user train/test split of a :class:`MovieLensData`, as CSR sequences.

    User ``u``'s train sequence is ``train_items[train_indptr[u]:train_indptr[u+1]]`` in
    chronological order (ties by file order), with parallel ``train_ratings`` and
    ``train_timestamps``; the same for ``test_*``. For a random split, the order inside
    each part is still chronological.

    :param data: the dataset that was split
    :param method: ``"temporal"`` or ``"random"``
    :param train_ratio: fraction of each user's ratings in the train part
    :param seed: seed of the random split (recorded, unused for temporal)
    """

    data: MovieLensData
    method: str
    train_ratio: float
    seed: int | None
    train_indptr: np.ndarray
    train_items: np.ndarray
    train_ratings: np.ndarray
    train_timestamps: np.ndarray
    test_indptr: np.ndarray
    test_items: np.ndarray
    test_ratings: np.ndarray
    test_timestamps: np.ndarray

    @property
    def n_users(self) -> int:
        return self.data.n_users

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def train_of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """``(items, ratings)`` of a user's train sequence, chronological."""
        lo, hi = self.train_indptr[user], self.train_indptr[user + 1]
        return self.train_items[lo:hi], self.train_ratings[lo:hi]

    def test_of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """``(items, ratings)`` of a user's test part, chronological."""
        lo, hi = self.test_indptr[user], self.test_indptr[user + 1]
        return self.test_items[lo:hi], self.test_ratings[lo:hi]
