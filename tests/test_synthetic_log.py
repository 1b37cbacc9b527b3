"""The benchmark-only synthetic log: exact shape, the official ML-32M format, seeded."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from experiments import synthetic_log


@pytest.fixture
def reference():
    rng = np.random.default_rng(1)
    user = np.repeat(np.arange(50), rng.integers(20, 80, size=50))
    item = (rng.zipf(1.6, size=user.size) - 1) % 300
    rating = rng.integers(1, 6, size=user.size)
    return SimpleNamespace(user=user, item=item, rating=rating, n_users=50, n_items=300)


def test_the_log_has_the_exact_shape_distinct_pairs_and_ordered_times(reference, tmp_path):
    frame = synthetic_log.generate((120, 400, 6_000), reference, seed=3)
    assert len(frame) == 6_000 and frame.userId.nunique() == 120
    assert frame.movieId.between(1, 400).all()
    assert not frame.duplicated(["userId", "movieId"]).any()
    assert frame.groupby("userId").size().min() >= synthetic_log.MIN_USER_RATINGS
    assert set(frame.rating.unique()) <= set(np.arange(1, 11) / 2.0)
    assert (frame.groupby("userId").timestamp.diff().dropna() > 0).all()
    # Popularity is long-tailed like the reference: the top tenth of items hold well over a tenth.
    counts = np.sort(frame.movieId.value_counts().to_numpy())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.2 * counts.sum()

    synthetic_log.write(frame, tmp_path / "ml-32m", 400)
    assert (tmp_path / "ml-32m" / "ratings.csv").read_text().startswith("userId,movieId,rating,timestamp\n")
    back = pd.read_csv(tmp_path / "ml-32m" / "ratings.csv")
    assert list(back.columns) == ["userId", "movieId", "rating", "timestamp"]
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True), check_dtype=False)
    movies = pd.read_csv(tmp_path / "ml-32m" / "movies.csv")
    assert list(movies.columns) == ["movieId", "title", "genres"] and len(movies) == 400


def test_same_seed_same_log_and_impossible_shapes_are_refused(reference):
    a = synthetic_log.generate((60, 200, 2_000), reference, seed=0)
    b = synthetic_log.generate((60, 200, 2_000), reference, seed=0)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="cannot give"):
        synthetic_log.generate((60, 200, 100), reference, seed=0)
