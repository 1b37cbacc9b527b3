"""Per-user train/test splits: temporal and random, counts, ordering, validation holdout."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_env.dataset import MovieLensData, Split
from recsim_env.splits import holdout_last, split_ratings, train_counts


def make_data(user: list[int], item: list[int], timestamp: list[int]) -> MovieLensData:
    """A tiny hand-made dataset (ratings 1..5 cycling, one genre, neutral features)."""
    n_users, n_items = max(user) + 1, max(item) + 1
    return MovieLensData(
        name="tiny",
        user=np.asarray(user, dtype=np.int32),
        item=np.asarray(item, dtype=np.int32),
        rating=(np.arange(len(user)) % 5 + 1).astype(np.int8),
        timestamp=np.asarray(timestamp, dtype=np.int64),
        user_features=np.zeros((n_users, 3), dtype=np.int32),
        user_raw_ids=np.arange(1, n_users + 1),
        item_raw_ids=np.arange(1, n_items + 1),
        item_titles=np.array([f"movie {i}" for i in range(n_items)], dtype=object),
        item_years=np.full(n_items, -1, dtype=np.int32),
        item_genres=np.zeros((n_items, 1), dtype=bool),
        genre_names=("Drama",),
    )


def _parts(split: Split, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tr = slice(split.train_indptr[user], split.train_indptr[user + 1])
    te = slice(split.test_indptr[user], split.test_indptr[user + 1])
    return (split.train_items[tr], split.train_timestamps[tr],
            split.test_items[te], split.test_timestamps[te])  # fmt: skip


def _expected_train(counts: np.ndarray, ratio: float) -> np.ndarray:
    """Reference count rule, written out per user: round half up, within [1, n-1]."""
    out = []
    for n in counts.tolist():
        k = int(np.floor(n * ratio + 0.5 + 1e-9))
        out.append(0 if n == 0 else 1 if n == 1 else min(max(k, 1), n - 1))
    return np.array(out)


def _check_partition(split: Split) -> None:
    """Train + test of each user together are exactly that user's ratings, each chronological."""
    data = split.data
    assert split.train_indptr[-1] + split.test_indptr[-1] == data.n_ratings
    for part in ("train", "test"):
        indptr = getattr(split, f"{part}_indptr")
        assert indptr.shape == (data.n_users + 1,) and indptr[0] == 0
        assert (np.diff(indptr) >= 0).all()
    owners_train = np.repeat(np.arange(data.n_users), np.diff(split.train_indptr))
    owners_test = np.repeat(np.arange(data.n_users), np.diff(split.test_indptr))
    got = np.concatenate([owners_train * data.n_items + split.train_items,
                          owners_test * data.n_items + split.test_items])  # fmt: skip
    want = data.user.astype(np.int64) * data.n_items + data.item
    np.testing.assert_array_equal(np.sort(got), np.sort(want))
    for owners, stamps in ((owners_train, split.train_timestamps),
                           (owners_test, split.test_timestamps)):  # fmt: skip
        same_user = owners[1:] == owners[:-1]
        assert (stamps[1:][same_user] >= stamps[:-1][same_user]).all()


# ------------------------------------------------------------------------------ ML-100K


def test_temporal_split_of_ml100k(ml100k: MovieLensData, ml100k_split: Split) -> None:
    split = ml100k_split
    assert (split.method, split.train_ratio) == ("temporal", 0.8)
    n_train = np.diff(split.train_indptr)
    assert (n_train >= 1).all()  # no user with an empty train part
    counts = np.bincount(ml100k.user, minlength=ml100k.n_users)
    np.testing.assert_array_equal(n_train, _expected_train(counts, 0.8))
    assert np.abs(n_train - 0.8 * counts).max() <= 0.5
    _check_partition(split)
    for user in range(ml100k.n_users):
        _, train_ts, test_items, test_ts = _parts(split, user)
        assert len(test_items) >= 1
        assert test_ts.min() >= train_ts.max()  # every test rating at or after all train ones
    # Ratings and timestamps travel with their items.
    pairs = list(zip(ml100k.user.tolist(), ml100k.item.tolist()))
    lookup = dict(zip(pairs, ml100k.rating.tolist()))
    stamps = dict(zip(pairs, ml100k.timestamp.tolist()))
    for part in ("train", "test"):
        owners = np.repeat(np.arange(ml100k.n_users), np.diff(getattr(split, f"{part}_indptr")))
        items = getattr(split, f"{part}_items")
        ratings, times = getattr(split, f"{part}_ratings"), getattr(split, f"{part}_timestamps")
        for u, i, r, t in zip(owners.tolist(), items.tolist(), ratings.tolist(), times.tolist()):
            assert lookup[(u, i)] == r and stamps[(u, i)] == t


def test_random_split_is_seeded(ml100k: MovieLensData, ml100k_split: Split) -> None:
    a = split_ratings(ml100k, "random", seed=1)
    b = split_ratings(ml100k, "random", seed=1)
    c = split_ratings(ml100k, "random", seed=2)
    for field in ("train_indptr", "train_items", "train_timestamps", "test_items", "test_ratings"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.method, a.seed) == ("random", 1)
    assert not np.array_equal(a.train_items, c.train_items)
    assert not np.array_equal(a.train_items, ml100k_split.train_items)
    np.testing.assert_array_equal(a.train_indptr, ml100k_split.train_indptr)  # same counts
    _check_partition(a)
    _check_partition(c)
    # Random really is random: some user's test part contains one of its earliest ratings.
    _, train_ts, _, test_ts = _parts(a, 0)
    assert test_ts.min() < train_ts.max()


# ------------------------------------------------------------------------------ hand-made


def test_ties_follow_file_order() -> None:
    # user 0: four ratings at the same second, then one later; train_ratio 0.6 -> 3 train
    data = make_data([0, 0, 0, 0, 0], [4, 2, 3, 0, 1], [5, 5, 5, 5, 9])
    split = split_ratings(data, train_ratio=0.6)
    train_items, _, test_items, _ = _parts(split, 0)
    assert train_items.tolist() == [4, 2, 3] and test_items.tolist() == [0, 1]


def test_counts_for_short_histories() -> None:
    # users with 1, 2, 3 and 5 ratings, out of file order
    user = [3, 1, 2, 0, 3, 1, 2, 3, 2, 3, 3]
    data = make_data(user, list(range(len(user))), list(range(100, 100 + len(user)))[::-1])
    for ratio in (0.1, 0.5, 0.8, 0.99):
        split = split_ratings(data, train_ratio=ratio)
        n_train = np.diff(split.train_indptr).tolist()
        n_test = np.diff(split.test_indptr).tolist()
        assert n_train == _expected_train(np.array([1, 2, 3, 5]), ratio).tolist()
        assert n_train[0] == 1 and n_test[0] == 0  # a single rating stays in train
        assert all(t >= 1 for t in n_test[1:])  # two or more ratings: at least one test item
        _check_partition(split)
    assert np.diff(split_ratings(data, train_ratio=0.8).train_indptr).tolist() == [1, 1, 2, 4]


def test_train_counts_rounding() -> None:
    assert train_counts(np.array([5, 10, 20, 21, 3]), 0.7).tolist() == [4, 7, 14, 15, 2]
    assert train_counts(np.array([0, 1, 2]), 0.5).tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "chronological"}, ValueError, "temporal"),
        ({"train_ratio": 0.0}, ValueError, "strictly between 0 and 1"),
        ({"train_ratio": 1.0}, ValueError, "strictly between 0 and 1"),
        ({"train_ratio": float("nan")}, ValueError, "strictly between 0 and 1"),
        ({"train_ratio": True}, TypeError, "train_ratio"),
        ({"train_ratio": "0.8"}, TypeError, "train_ratio"),
        ({"method": "random", "seed": -1}, ValueError, "seed"),
        ({"method": "random", "seed": 1.5}, ValueError, "seed"),
    ],
)
def test_split_argument_errors(kwargs: dict, error: type, match: str) -> None:
    data = make_data([0, 0, 1, 1], [0, 1, 0, 1], [1, 2, 3, 4])
    with pytest.raises(error, match=match):
        split_ratings(data, **kwargs)


def test_split_rejects_non_dataset() -> None:
    with pytest.raises(TypeError, match="MovieLensData"):
        split_ratings({"user": []})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ holdout_last


def test_holdout_last(ml100k_split: Split) -> None:
    val = holdout_last(ml100k_split, fraction=0.25)
    assert val.method == "temporal+holdout_last" and val.train_ratio == 0.75
    assert val.data is ml100k_split.data
    lengths = np.diff(ml100k_split.train_indptr)
    np.testing.assert_array_equal(np.diff(val.train_indptr), _expected_train(lengths, 0.75))
    assert val.train_indptr[-1] + val.test_indptr[-1] == ml100k_split.train_indptr[-1]
    for user in range(ml100k_split.n_users):
        items, ratings = ml100k_split.train_of(user)
        val_train, val_train_r = val.train_of(user)
        val_test, val_test_r = val.test_of(user)
        # the train sequence, cut in two in chronological order
        np.testing.assert_array_equal(np.concatenate([val_train, val_test]), items)
        np.testing.assert_array_equal(np.concatenate([val_train_r, val_test_r]), ratings)
        assert len(val_test) >= 1
        assert not set(val_test.tolist()) & set(ml100k_split.test_of(user)[0].tolist())


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, float("inf")])
def test_holdout_last_validates_fraction(ml100k_split: Split, fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        holdout_last(ml100k_split, fraction)
