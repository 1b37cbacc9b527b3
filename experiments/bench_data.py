"""Benchmark the data layer on an ML-1M-sized file (``make bench-data``).

Writes a synthetic 1,000,209-row ``ratings.dat`` in the exact ML-1M format next to copies of
the real ``users.dat`` / ``movies.dat`` (the real ML-1M ratings are not available offline),
then prints: raw parse time (target <= 3 s), first load (parse + cache write), cached load
(target well under 1 s) and the split times.

Usage: ``python -m experiments.bench_data [--ml1m-dir DIR] [--rows N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from recsim_env.movielens import load_movielens, parse_movielens
from recsim_env.splits import split_ratings


def write_ratings(folder: Path, movie_ids: np.ndarray, n_rows: int, n_users: int = 6040, seed: int = 0) -> None:
    """Write ``n_rows`` ratings in ML-1M format (``user::movie::rating::timestamp``)."""
    rng = np.random.default_rng(seed)
    counts = 20 + rng.multinomial(n_rows - 20 * n_users, rng.dirichlet(np.ones(n_users)))
    counts = np.minimum(counts, len(movie_ids))
    counts[0] += n_rows - counts.sum()
    users = np.repeat(np.arange(1, n_users + 1), counts)
    items = np.concatenate([rng.choice(movie_ids, c, replace=False) for c in counts])
    ratings = rng.integers(1, 6, n_rows)
    stamps = 956703932 + rng.integers(0, 90_000_000, n_rows)
    table = np.column_stack([users, items, ratings, stamps])
    np.savetxt(folder / "ratings.dat", table, fmt="%d", delimiter="::")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(os.environ.get("MOVIELENS_DATA", "../shared/data")) / "ml-1m"
    parser.add_argument("--ml1m-dir", type=Path, default=default_dir, help="folder with users.dat and movies.dat")
    parser.add_argument("--rows", type=int, default=1_000_209, help="ratings to generate")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        folder = root / "ml-1m"
        folder.mkdir()
        for name in ("users.dat", "movies.dat"):
            shutil.copy(args.ml1m_dir / name, folder / name)
        movie_ids = np.array([int(line.split(b"::", 1)[0]) for line in (folder / "movies.dat").read_bytes().splitlines()])
        write_ratings(folder, movie_ids, args.rows)
        print(f"ratings.dat: {args.rows:,} rows, {(folder / 'ratings.dat').stat().st_size / 1e6:.1f} MB")
        times = []
        for _ in range(3):
            start = time.perf_counter()
            data = parse_movielens("ml-1m", folder)
            times.append(time.perf_counter() - start)
        print(f"parse (no cache), best of 3: {min(times):.3f} s   target <= 3 s")
        cache = root / "cache"
        start = time.perf_counter()
        load_movielens("ml-1m", root, download=False, cache_dir=cache)
        print(f"first load (parse + cache write): {time.perf_counter() - start:.3f} s")
        start = time.perf_counter()
        load_movielens("ml-1m", root, download=False, cache_dir=cache)
        print(f"cached load: {time.perf_counter() - start:.3f} s   target well under 1 s")
        for method in ("temporal", "random"):
            start = time.perf_counter()
            split_ratings(data, method)
            print(f"split_ratings({method!r}): {time.perf_counter() - start:.3f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
