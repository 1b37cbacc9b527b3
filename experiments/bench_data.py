"""Benchmark the data layer on ML-1M (``make bench-data``), or on an ML-32M-sized release.

Copies the ML-1M folder (``users.dat``, ``movies.dat`` and ``ratings.dat``; in this workplace
the reconstructed ``ratings.dat``, so figures are "measured on the reconstructed ML-1M") into a
temporary folder, or, with ``--synthetic`` or without a ``ratings.dat``, writes a synthetic
``ratings.dat`` of ``--rows`` rows in the exact ML-1M format beside copies of the metadata (loaded
with ``expect_official=False``: it is not the official release). Then prints: the content hash
of the source files that keys the parsed cache (SHA-256, with SHA-1 and BLAKE2b for comparison),
raw parse time (target <= 3 s), first load (parse + cache write), cached load (hash + ``.npz``
read + the official-figures check; target well under 1 s) and the split times.

``--release ml-32m`` instead writes a synthetic release in ML-32M's format and shape
(:mod:`experiments.synthetic_log`: ``ratings.csv`` of 32,000,204 rows over 200,948 users and
87,585 movies of ``movies.csv``, shaped like ML-1M; the
real files may not be redistributed) and times the same steps on it: the ratings CSV is read
vectorised, and its load must stay in seconds.

Usage: ``python -m experiments.bench_data [--ml1m-dir DIR] [--synthetic] [--rows N]`` or
``python -m experiments.bench_data --release ml-32m [--rows N]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments import synthetic_log
from recsim_env.download import dataset_source
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


#: ML-32M's shape (its README): ratings, users, movies listed.
def bench_release(release: str, n_rows: int, repeats: int) -> None:
    """Time the steps of :func:`main` on a synthetic release of ``release``'s format and shape."""
    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        folder = root / release
        folder.mkdir()
        n_users, n_movies, _ = synthetic_log.SHAPES[release]
        start = time.perf_counter()
        reference = load_movielens("ml-1m", download=False)  # the shape's source (synthetic_log)
        synthetic_log.write(synthetic_log.generate((n_users, n_movies, n_rows), reference), folder, n_movies)
        ratings = folder / "ratings.csv"
        print(f"ratings.csv (synthetic, {release} format and shape): {n_rows:,} rows, "
              f"{ratings.stat().st_size / 1e6:.1f} MB, written in {time.perf_counter() - start:.1f} s")
        files = [folder / f for f in dataset_source(release).files]
        print(f"sha256 hash of the source files (the cache key): {best_of(repeats, lambda: hash_files(files, 'sha256')):.3f} s")
        t_parse = best_of(min(repeats, 2), lambda: parse_movielens(release, folder))
        print(f"parse (no cache), best of {min(repeats, 2)}: {t_parse:.3f} s")
        kwargs = dict(download=False, cache_dir=root / "cache", expect_official=False)
        start = time.perf_counter()
        data = load_movielens(release, root, **kwargs)
        print(f"first load (hash + parse + cache write): {time.perf_counter() - start:.3f} s "
              f"({data.n_users:,} users, {data.n_items:,} items)")
        t_cached = best_of(repeats, lambda: load_movielens(release, root, **kwargs))
        print(f"cached load (hash + .npz read), best of {repeats}: {t_cached:.3f} s")
        start = time.perf_counter()
        split_ratings(data)
        print(f"split_ratings('temporal'): {time.perf_counter() - start:.3f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hash_files(paths: list[Path], algorithm: str) -> list[str]:
    """Hex digests of ``paths``, read in 1 MiB chunks (as the cache key does)."""
    digests = []
    for path in paths:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digests.append(digest.hexdigest())
    return digests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(os.environ.get("MOVIELENS_DATA") or "../shared/data") / "ml-1m"
    parser.add_argument("--ml1m-dir", type=Path, default=default_dir,
                        help="ML-1M folder (users.dat, movies.dat, ratings.dat if present)")
    parser.add_argument("--synthetic", action="store_true",
                        help="benchmark a synthetic ratings.dat even when the real one is there")
    parser.add_argument("--rows", type=int, default=None,
                        help="synthetic ratings to generate (default: the release's, 1,000,209 for ml-1m)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (best is printed)")
    parser.add_argument("--release", choices=("ml-1m", "ml-32m"), default="ml-1m",
                        help="ml-1m (default; the real ratings.dat when present) or a synthetic ml-32m")
    args = parser.parse_args(argv)
    if args.release == "ml-32m":
        bench_release("ml-32m", args.rows or synthetic_log.SHAPES["ml-32m"][2], min(args.repeats, 3))
        return
    args.rows = args.rows or 1_000_209

    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        folder = root / "ml-1m"
        folder.mkdir()
        for name in ("users.dat", "movies.dat"):
            shutil.copy(args.ml1m_dir / name, folder / name)
        real = (args.ml1m_dir / "ratings.dat").is_file() and not args.synthetic
        if real:
            shutil.copy(args.ml1m_dir / "ratings.dat", folder / "ratings.dat")
        else:
            movie_ids = np.array([int(line.split(b"::", 1)[0]) for line in (folder / "movies.dat").read_bytes().splitlines()])
            write_ratings(folder, movie_ids, args.rows)
        ratings = folder / "ratings.dat"
        kind = f"copy of {args.ml1m_dir / 'ratings.dat'}" if real else "synthetic, ML-1M format"
        n_rows = sum(1 for _ in open(ratings, "rb"))
        print(f"ratings.dat ({kind}): {n_rows:,} rows, {ratings.stat().st_size / 1e6:.1f} MB")

        files = [folder / f for f in dataset_source("ml-1m").files]
        for algorithm in ("sha256", "sha1", "blake2b"):
            t_ratings = best_of(args.repeats, lambda a=algorithm: hash_files([ratings], a))
            t_all = best_of(args.repeats, lambda a=algorithm: hash_files(files, a))
            key = "   <- the cache key" if algorithm == "sha256" else ""
            print(f"{algorithm:8s} hash: ratings.dat {t_ratings:.3f} s, all 3 source files {t_all:.3f} s{key}")

        t_parse = best_of(min(args.repeats, 3), lambda: parse_movielens("ml-1m", folder))
        print(f"parse (no cache), best of {min(args.repeats, 3)}: {t_parse:.3f} s   target <= 3 s")
        cache = root / "cache"
        kwargs = dict(download=False, cache_dir=cache, expect_official=real)
        start = time.perf_counter()
        data = load_movielens("ml-1m", root, **kwargs)
        print(f"first load (hash + parse + cache write + check): {time.perf_counter() - start:.3f} s")
        t_cached = best_of(args.repeats, lambda: load_movielens("ml-1m", root, **kwargs))
        print(f"cached load (hash + .npz read + check), best of {args.repeats}: {t_cached:.3f} s   "
              f"target well under 1 s")
        for method in ("temporal", "random"):
            start = time.perf_counter()
            split_ratings(data, method)
            print(f"split_ratings({method!r}): {time.perf_counter() - start:.3f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
