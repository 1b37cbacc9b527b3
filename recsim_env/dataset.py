"""In-memory interaction data: the one schema shared by every dataset, the split and every model.

A dataset is a MovieLens release (:func:`recsim_env.load_movielens`) or any interaction log
(:func:`recsim_env.load_interactions`); both give a :class:`MovieLensData`.

Id conventions (used everywhere in this project):

* Users are remapped to contiguous indices ``0 .. n_users-1`` (sorted by original id).
* Items are remapped to contiguous indices ``0 .. n_items-1`` (sorted by original id,
  only items that have at least one rating). **An item index is the action index** of
  ``MovieLensRec-v0`` and the column of every score matrix.
* In observations an item is written as its *token* ``item + 1``, so that token ``0`` is
  reserved for padding (see :func:`item_to_token`).
* The original ids stay on the dataset (:attr:`MovieLensData.user_raw_ids`,
  :attr:`MovieLensData.item_raw_ids`, :meth:`MovieLensData.item_index`), so a recommended
  item index maps back to the log's id.

Ratings are values of a per-dataset *rating scale* (:attr:`MovieLensData.rating_scale`, sorted,
positive, at most :data:`MAX_RATING_LEVELS` values): whole stars 1..5 (ML-100K, ML-1M), half
stars 0.5..5.0 (ML-10M and later), the values of a log's rating column, or ``(1,)`` for implicit
feedback. The simulator stores a rating as its *level*, its 1-based position in the scale
(:func:`rating_levels`), so that 0 can mean "no rating".

User features are categorical columns, per dataset (:attr:`MovieLensData.user_feature_names`,
:attr:`MovieLensData.user_feature_cardinalities`), possibly none. ML-100K and ML-1M share three:

* ``gender``: 0 = F, 1 = M
* ``age``: ML-1M's 7 age groups, 0..6 = under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
  (ML-100K's exact ages are bucketed into these groups)
* ``occupation``: 0..20 (ML-1M codes; ML-100K's ``u.occupation`` names mapped in file order)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Names of the MovieLens datasets the package loads (the one list: loader, environment and
#: scripts use it).
DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m")
#: Column order of the MovieLens user features (ML-100K and ML-1M).
USER_FEATURES: tuple[str, ...] = ("gender", "age", "occupation")
#: Number of distinct codes of each MovieLens user feature (the ``high`` of its Box is this minus one).
USER_FEATURE_CARDINALITIES: tuple[int, ...] = (2, 7, 21)
#: Age group lower bounds of ML-1M (``users.dat`` stores these numbers).
AGE_GROUP_LOWER_BOUNDS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
#: Whole-star ratings (ML-100K, ML-1M).
STAR_RATINGS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Half-star ratings (ML-10M and later releases).
HALF_STAR_RATINGS: tuple[float, ...] = tuple(k / 2 for k in range(1, 11))
#: Most distinct values a rating scale may have (a level is stored as int8, 0 = no rating).
MAX_RATING_LEVELS = 127
#: ``feedback`` of a dataset: ratings a like threshold applies to, or interactions that are likes.
FEEDBACK: tuple[str, ...] = ("explicit", "implicit")
#: Rating scale of each MovieLens dataset (what ``train_rewards`` and ``reward_map`` are keyed by).
RATING_SCALES: dict[str, tuple[float, ...]] = {
    "ml-100k": STAR_RATINGS, "ml-1m": STAR_RATINGS, "ml-10m": HALF_STAR_RATINGS, "ml-20m": HALF_STAR_RATINGS,
    "ml-25m": HALF_STAR_RATINGS, "ml-32m": HALF_STAR_RATINGS,
}
#: Token used for "no item" in observation sequences.
PAD_TOKEN = 0


def item_to_token(item: np.ndarray | int) -> np.ndarray | int:
    """Observation token of an item index (``item + 1``; 0 is padding)."""
    return item + 1


def token_to_item(token: np.ndarray | int) -> np.ndarray | int:
    """Item index of an observation token (``token - 1``; padding maps to -1)."""
    return token - 1


def check_rating_scale(scale: Sequence[float]) -> tuple[float, ...]:
    """``scale`` as a tuple (ints where every value is whole), or a ``ValueError`` saying why not.

    :param scale: the distinct rating values, increasing, each finite and > 0
    """
    values = tuple(scale)
    if not values or len(values) > MAX_RATING_LEVELS:
        raise ValueError(
            f"a rating scale needs 1 to {MAX_RATING_LEVELS} values, got {len(values)}; "
            f"bin a continuous rating column into at most {MAX_RATING_LEVELS} values"
        )
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"rating scale values must be numbers, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"rating scale values must be finite and > 0 (0 means 'no rating'), got {value!r}"
            )
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"a rating scale must be strictly increasing, got {values}")
    if all(float(v).is_integer() for v in values):
        return tuple(int(v) for v in values)
    return tuple(float(v) for v in values)


def rating_levels(scale: Sequence[float], ratings: np.ndarray, what: str = "ratings") -> np.ndarray:
    """int8 level of each rating: its 1-based position in ``scale`` (``scale[level - 1]``).

    :param scale: the dataset's rating scale (increasing)
    :param ratings: rating values, any numeric dtype
    :param what: the array's name, for the error message
    :raises ValueError: a rating that is not a value of the scale
    """
    ratings = np.asarray(ratings)
    table = np.asarray(scale, dtype=np.float64)
    if ratings.size == 0:
        return np.zeros(ratings.shape, dtype=np.int8)
    if ratings.dtype.kind in "iu" and tuple(scale) == tuple(range(1, len(table) + 1)):
        # Whole-star scales 1..K: the level is the rating (the common case, no search).
        bad = (ratings < 1) | (ratings > len(table))
        levels = ratings
    else:
        values = ratings.astype(np.float64)
        pos = np.minimum(np.searchsorted(table, values), len(table) - 1)
        bad = table[pos] != values
        levels = pos + 1
    if np.any(bad):
        first = ratings.reshape(-1)[np.flatnonzero(bad)[0]].item()
        raise ValueError(f"{what} hold {first!r}, which is not a rating of the scale {tuple(scale)}")
    return levels.astype(np.int8)


@dataclass(frozen=True, eq=False)
class MovieLensData:
    """One dataset (a MovieLens release or an interaction log), parsed and remapped to contiguous ids.

    Rating arrays are parallel, one entry per rating (interaction), in the order of the source.
    The fields after ``genre_names`` describe the dataset; their defaults are those of ML-100K
    and ML-1M, so hand-made MovieLens-like data need not give them.

    :param name: dataset name (``"ml-100k"``, ..., or the name of a log)
    :param user: user index of each rating, int32 in ``[0, n_users)``
    :param item: item index of each rating, int32 in ``[0, n_items)``
    :param rating: rating of each rating, a value of ``rating_scale`` (int8 for whole-star
        scales such as ML-100K's 1..5, float32 for half stars; all 1 for implicit feedback)
    :param timestamp: time of each rating, int64 (Unix seconds; a log without times: its row
        number, so that time order is file order)
    :param user_features: int32 array ``(n_users, len(user_feature_names))`` of category codes
    :param user_raw_ids: original user id of each user index, ``(n_users,)``, sorted: int64, or
        str for a log with string ids
    :param item_raw_ids: original item id of each item index, ``(n_items,)``, sorted (as
        ``user_raw_ids``)
    :param item_titles: title of each item index, object array of str ``(n_items,)`` (a log
        without titles: the item's original id)
    :param item_years: release year of each item index, int32 ``(n_items,)``, -1 if unknown
    :param item_genres: bool ``(n_items, n_genres)`` genre indicator matrix
    :param genre_names: names of the genre columns
    :param user_feature_names: names of the user feature columns (default
        :data:`USER_FEATURES`; empty: no user features)
    :param user_feature_cardinalities: number of codes of each user feature (default
        :data:`USER_FEATURE_CARDINALITIES`)
    :param user_feature_categories: the original value of each code of each feature, as
        strings (``()``: the codes are shown as they are, as for MovieLens)
    :param rating_scale: the possible ratings, increasing, positive (default
        :data:`STAR_RATINGS`; see :func:`check_rating_scale`)
    :param like_threshold: the dataset's default like threshold: a rating ``>=`` it is a like
        (default 4; implicit feedback: the lowest value, every interaction is a like)
    :param feedback: ``"explicit"`` (ratings; the default reward is ``rating / max(scale)`` on a
        like) or ``"implicit"`` (every interaction is a like worth its rating value, 1 unless
        the log has a value column)
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
    user_feature_names: tuple[str, ...] = USER_FEATURES
    user_feature_cardinalities: tuple[int, ...] = USER_FEATURE_CARDINALITIES
    user_feature_categories: tuple[tuple[str, ...], ...] = ()
    rating_scale: tuple[float, ...] = STAR_RATINGS
    like_threshold: float = 4
    feedback: str = "explicit"

    def __post_init__(self) -> None:
        # Only the metadata are checked here (cheap); the simulator checks every rating.
        set_ = object.__setattr__
        set_(self, "rating_scale", check_rating_scale(self.rating_scale))
        set_(self, "user_feature_names", tuple(str(n) for n in self.user_feature_names))
        set_(self, "user_feature_cardinalities", tuple(int(c) for c in self.user_feature_cardinalities))
        names, cards = self.user_feature_names, self.user_feature_cardinalities
        if len(names) != len(cards) or any(c < 1 for c in cards):
            raise ValueError(
                f"user_feature_names {names} and user_feature_cardinalities {cards} must have one "
                f"entry (>= 1) per feature"
            )
        features = np.asarray(self.user_features)
        if features.ndim != 2 or features.shape[1] != len(names):
            raise ValueError(
                f"user_features must be (n_users, {len(names)}) for the features {names}, "
                f"got shape {features.shape}"
            )
        if self.user_feature_categories and (
            len(self.user_feature_categories) != len(names)
            or any(len(c) != k for c, k in zip(self.user_feature_categories, cards))
        ):
            raise ValueError(
                "user_feature_categories must give one label per code of every feature "
                f"(cardinalities {cards}), or be empty"
            )
        if self.feedback not in FEEDBACK:
            raise ValueError(f"feedback must be one of {FEEDBACK}, got {self.feedback!r}")
        threshold = self.like_threshold
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.number)) or not (
            self.rating_scale[0] <= threshold <= self.rating_scale[-1]
        ):
            raise ValueError(
                f"like_threshold must be a number within the rating scale "
                f"[{self.rating_scale[0]}, {self.rating_scale[-1]}], got {threshold!r}"
            )
        set_(self, "like_threshold", int(threshold) if float(threshold).is_integer() else float(threshold))

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

    @property
    def implicit(self) -> bool:
        """Whether every interaction is a like (``feedback == "implicit"``)."""
        return self.feedback == "implicit"

    def user_index(self, raw_ids: object) -> np.ndarray:
        """User indices of original user ids (inverse of ``user_raw_ids[index]``).

        :param raw_ids: one original id or a sequence of them (as in the source: int or str)
        :return: int64 indices, shaped like ``raw_ids``
        :raises KeyError: an id that has no user (names the first one)
        """
        return _index_of(self.user_raw_ids, raw_ids, "user")

    def item_index(self, raw_ids: object) -> np.ndarray:
        """Item indices (actions) of original item ids (inverse of ``item_raw_ids[index]``).

        :param raw_ids: one original id or a sequence of them (as in the source: int or str)
        :return: int64 indices, shaped like ``raw_ids``
        :raises KeyError: an id that has no item (names the first one)
        """
        return _index_of(self.item_raw_ids, raw_ids, "item")


def _index_of(sorted_ids: np.ndarray, raw_ids: object, what: str) -> np.ndarray:
    wanted = np.asarray(raw_ids)
    if sorted_ids.dtype.kind in "US" and wanted.dtype.kind not in "US":
        wanted = wanted.astype(str)
    elif sorted_ids.dtype.kind in "iu" and wanted.dtype.kind not in "iu":
        raise KeyError(f"{what} ids of this dataset are integers, got {raw_ids!r}")
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == wanted if len(sorted_ids) else np.zeros(wanted.shape, dtype=bool)
    if not np.all(found):
        first = wanted.reshape(-1)[np.flatnonzero(~np.asarray(found).reshape(-1))[0]].item()
        raise KeyError(f"no {what} has the original id {first!r}")
    return pos.astype(np.int64)


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
