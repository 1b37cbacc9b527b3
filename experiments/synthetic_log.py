"""A synthetic ratings log with a larger MovieLens release's shape, for benchmarks only.

``python -m experiments.synthetic_log --out /tmp/synthetic-ml-32m`` writes
``<out>/ml-32m/ratings.csv`` (``userId,movieId,rating,timestamp``, the official ML-32M format)
and ``movies.csv`` with ML-32M's shape: 200,948 users, 87,585 items and 32,000,204 ratings
(``--shape ml-25m`` etc. for the others). The numbers are invented; only the shape is real:

* **user lengths** follow ML-1M's (every user's number of ratings, as quantiles: at least 20,
  a long right tail), stretched to the target's user count and rescaled to its mean;
* **item popularity** follows ML-1M's rank-popularity curve (the share of ratings of the item
  at each popularity quantile) stretched to the target's catalogue, so the long tail of the
  real data is kept; each user rates distinct items, drawn by popularity;
* **ratings** are half stars: ML-1M's star distribution with a third of each star's mass moved
  half a star down (ML-10M and later releases rate in half stars);
* **timestamps** increase within each user from a uniform start in 2000-2023.

ML-1M's files must be available (``MOVIELENS_DATA`` or the download cache): the shape is
taken from them, not typed. The result is seeded (``--seed``) and deterministic for a given
ML-1M; it is not MovieLens data and must not be used for any accuracy figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

#: Target shapes: (users, items, ratings), from the official release notes.
SHAPES: dict[str, tuple[int, int, int]] = {
    "ml-10m": (71_567, 10_681, 10_000_054),
    "ml-20m": (138_493, 27_278, 20_000_263),
    "ml-25m": (162_541, 62_423, 25_000_095),
    "ml-32m": (200_948, 87_585, 32_000_204),
}
MIN_USER_RATINGS = 20


def _stretch(sorted_values: np.ndarray, n: int) -> np.ndarray:
    """``sorted_values``'s quantile function read at ``n`` evenly spaced quantiles."""
    source = np.linspace(0.0, 1.0, sorted_values.size)
    return np.interp(np.linspace(0.0, 1.0, n), source, sorted_values.astype(np.float64))


def user_lengths(reference_lengths: np.ndarray, n_users: int, n_ratings: int, n_items: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: the reference's length quantiles stretched, summing to ``n_ratings``."""
    shape = _stretch(np.sort(reference_lengths), n_users)
    lengths = np.maximum(MIN_USER_RATINGS, np.round(shape * n_ratings / shape.sum())).astype(np.int64)
    lengths = np.minimum(lengths, n_items // 2)
    # Spread the rounding remainder over random users above the minimum, one rating each.
    diff = n_ratings - int(lengths.sum())
    while diff != 0:
        can = np.flatnonzero(lengths > MIN_USER_RATINGS) if diff < 0 else np.flatnonzero(lengths < n_items // 2)
        pick = rng.choice(can, size=min(abs(diff), can.size), replace=False)
        lengths[pick] += np.sign(diff)
        diff = n_ratings - int(lengths.sum())
    return rng.permutation(lengths)


def item_probabilities(reference_counts: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Popularity of each item: the reference's rank-popularity curve stretched to ``n_items``."""
    curve = _stretch(np.sort(reference_counts)[::-1], n_items)
    curve = np.maximum(curve, curve[curve > 0].min() if (curve > 0).any() else 1.0)
    return rng.permutation(curve / curve.sum())


def distinct_items(lengths: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) pairs: ``lengths[u]`` distinct items per user, drawn by popularity ``p``.

    Each round draws, for every user still short of its length, twice the missing count plus 8
    items with replacement, and keeps the first new distinct ones in draw order; a few rounds
    fill every user.
    """
    n_items = p.size
    n_users = lengths.size
    keys = np.empty(0, dtype=np.int64)
    for _ in range(100):
        missing = lengths - np.bincount(keys // n_items, minlength=n_users)
        if not missing.any():
            return keys // n_items, keys % n_items
        draws = np.where(missing > 0, 2 * missing + 8, 0)
        users = np.repeat(np.arange(n_users, dtype=np.int64), draws)
        candidates = users * n_items + rng.choice(n_items, size=users.size, p=p)
        pool = np.concatenate([keys, candidates])
        unique, first = np.unique(pool, return_index=True)  # first = earliest draw (kept keys first)
        user = unique // n_items
        order = np.lexsort((first, user))
        unique, user = unique[order], user[order]
        starts = np.concatenate([[0], np.cumsum(np.bincount(user, minlength=n_users))])[:-1]
        rank = np.arange(unique.size) - starts[user]
        keys = np.sort(unique[rank < lengths[user]])
    raise RuntimeError("could not draw distinct items for every user in 100 rounds")


def half_star_probabilities(reference_ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values 0.5..5.0, probabilities): the reference's stars, a third of each moved down by 0.5."""
    stars = np.bincount(reference_ratings.astype(np.int64), minlength=6)[1:6].astype(np.float64)
    stars /= stars.sum()
    values = np.arange(1, 11) / 2.0
    probs = np.zeros(10)
    probs[1::2] = stars * 2 / 3      # 1.0, 2.0, ..., 5.0
    probs[0::2] = stars / 3          # 0.5, 1.5, ..., 4.5
    return values, probs


def generate(shape: str | tuple[int, int, int], reference, seed: int = 0):
    """The synthetic log as a pandas DataFrame (``userId, movieId, rating, timestamp``).

    :param shape: a key of :data:`SHAPES` or ``(users, items, ratings)``
    :param reference: the dataset whose shape is copied (``user``, ``item``, ``rating`` arrays,
        ``n_users``, ``n_items``): ML-1M's :class:`~recsim_env.dataset.MovieLensData`
    :param seed: random seed
    """
    import pandas as pd

    n_users, n_items, n_ratings = SHAPES[shape] if isinstance(shape, str) else shape
    if n_ratings < MIN_USER_RATINGS * n_users or n_ratings > n_users * (n_items // 2):
        raise ValueError(f"{n_ratings:,} ratings cannot give {n_users:,} users between {MIN_USER_RATINGS} "
                         f"and {n_items // 2:,} distinct items each")
    rng = np.random.default_rng(seed)
    lengths = user_lengths(np.bincount(reference.user, minlength=reference.n_users), n_users, n_ratings,
                           n_items, rng)
    p = item_probabilities(np.bincount(reference.item, minlength=reference.n_items), n_items, rng)
    user, item = distinct_items(lengths, p, rng)
    values, probs = half_star_probabilities(reference.rating)
    rating = values[rng.choice(values.size, size=user.size, p=probs)]
    start = rng.integers(946_684_800, 1_696_118_400, size=n_users)  # 2000-01-01 .. 2023-10-01
    gaps = rng.exponential(3_600.0, size=user.size).astype(np.int64) + 1
    order = np.lexsort((rng.random(user.size), user))  # a random order within each user
    user, item, rating = user[order], item[order], rating[order]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[indptr[:-1]] - gaps[indptr[:-1]], lengths)
    timestamp = start[user] + within
    return pd.DataFrame({"userId": user + 1, "movieId": item + 1, "rating": rating, "timestamp": timestamp})


def write(frame, folder: Path, n_items: int) -> None:
    """``ratings.csv`` and ``movies.csv`` (items ``1..n_items``) in the official ML-20M..32M format."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    tmp = folder / "ratings.csv.tmp"
    with pa.OSFile(str(tmp), "wb") as sink:  # the official header, unquoted, then the rows
        sink.write((",".join(frame.columns) + "\n").encode())
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    tmp.replace(folder / "ratings.csv")
    movies = pd.DataFrame({"movieId": np.arange(1, n_items + 1),
                           "title": [f"Synthetic movie {i} (2000)" for i in range(1, n_items + 1)],
                           "genres": "(no genres listed)"})
    movies.to_csv(folder / "movies.csv.tmp", index=False)
    (folder / "movies.csv.tmp").replace(folder / "movies.csv")


def main(argv: list[str] | None = None) -> int:
    from recsim_env import load_movielens

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ml-32m")
    parser.add_argument("--out", required=True, help="folder; the log goes to <out>/<shape>/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    reference = load_movielens("ml-1m", download=False)
    frame = generate(args.shape, reference, args.seed)
    t1 = time.perf_counter()
    write(frame, Path(args.out) / args.shape, SHAPES[args.shape][1])
    print(f"{len(frame):,} ratings, {frame.userId.nunique():,} users, {frame.movieId.nunique():,} items rated "
          f"of {SHAPES[args.shape][1]:,}: generated in {t1 - t0:.1f} s, written in {time.perf_counter() - t1:.1f} s "
          f"to {Path(args.out) / args.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
