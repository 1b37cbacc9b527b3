"""Shared fixtures: the real ML-100K files, loaded and split once per session.

Every test session gets its own cache directory (``$RECSIM_ENV_CACHE``), so tests never read
or write ``~/.cache``. The real data come from ``$MOVIELENS_DATA`` (set by the Makefile), or
from ``../shared/data`` beside the repository as the Makefile does; without them the
real-data tests are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agents.kernel_path import KERNEL_PATHS
from recsim_env.dataset import MovieLensData, Split
from recsim_env.download import CACHE_ENV_VAR
from recsim_env.movielens import DATA_ENV_VAR, load_movielens
from recsim_env.splits import split_ratings

_REPO = Path(__file__).resolve().parents[1]

# The tests run on the kernel path make train pins by default (agents.kernel_path): set before
# PyTorch runs its first operation in this process.
for _name, _value in KERNEL_PATHS["avx2"].items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the per-user cache at a temporary directory for the whole session."""
    path = tmp_path_factory.mktemp("recsim_env_cache")
    previous = os.environ.get(CACHE_ENV_VAR)
    os.environ[CACHE_ENV_VAR] = str(path)
    yield path
    if previous is None:
        os.environ.pop(CACHE_ENV_VAR, None)
    else:
        os.environ[CACHE_ENV_VAR] = previous


@pytest.fixture(scope="session", autouse=True)
def _data_root() -> Iterator[None]:
    """Point ``$MOVIELENS_DATA`` at ``../shared/data`` when unset, as the Makefile does.

    Tests that go through the public lookup (``load_movielens("ml-100k")``, ``train()``) then
    find the real files whether pytest is started by ``make test`` or by hand.
    """
    default = _REPO.parent / "shared" / "data"
    if os.environ.get(DATA_ENV_VAR) or not default.is_dir():
        yield
        return
    os.environ[DATA_ENV_VAR] = str(default)
    yield
    os.environ.pop(DATA_ENV_VAR, None)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """Data root holding the real ``ml-100k/`` folder (``$MOVIELENS_DATA``)."""
    env = os.environ.get(DATA_ENV_VAR)
    root = Path(env) if env else _REPO.parent / "shared" / "data"
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.skip(
            f"real ML-100K not found at {root / 'ml-100k'}: set {DATA_ENV_VAR} to a folder "
            f"holding ml-100k/ (u.data, u.user, u.item, u.occupation)"
        )
    return root


def _freeze(obj: MovieLensData | Split) -> None:
    """Make the arrays of a shared fixture read-only, so no test can alter another's data."""
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> MovieLensData:
    """The real ML-100K, loaded once (arrays read-only)."""
    data = load_movielens(
        "ml-100k", ml100k_dir, download=False, cache_dir=tmp_path_factory.mktemp("ml100k_cache")
    )
    _freeze(data)
    return data


@pytest.fixture(scope="session")
def ml1m(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> MovieLensData:
    """The real (reconstructed) ML-1M, parsed once per session (arrays read-only)."""
    if not (ml100k_dir / "ml-1m" / "ratings.dat").is_file():
        pytest.skip(f"ML-1M ratings.dat not found in {ml100k_dir / 'ml-1m'}")
    data = load_movielens(
        "ml-1m", ml100k_dir, download=False, cache_dir=tmp_path_factory.mktemp("ml1m_cache")
    )
    _freeze(data)
    return data


@pytest.fixture(scope="session")
def ml100k_split(ml100k: MovieLensData) -> Split:
    """Default split of ML-100K: temporal, train_ratio 0.8 (arrays read-only)."""
    split = split_ratings(ml100k, "temporal", train_ratio=0.8)
    _freeze(split)
    return split
