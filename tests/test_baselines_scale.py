"""The neighbourhood models and EASE at catalogue scale: block-by-block similarities, identical to
the dense computation, and a clear error before a dense matrix that cannot fit is allocated."""

from __future__ import annotations

import contextlib
import os
import tracemalloc
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import scipy.sparse as sp
from test_baselines import make_split, random_split

from agents.baselines import EASERecommender, ItemCFRecommender, UserCFRecommender, interaction_matrix
from agents.baselines import base as baselines_base
from agents.baselines.base import InsufficientMemoryError, available_memory_bytes
from agents.baselines.similarity import cosine_similarity, cosine_similarity_bytes


def dense_reference(x: sp.csr_matrix, shrinkage: float, k: int | None) -> np.ndarray | sp.csr_matrix:
    """The dense computation the models used before the blocked one (verbatim, commit 830ec5b):
    the full ``n x n`` matrix, then a stable argsort per column."""
    co = (x @ x.T).toarray().astype(np.float32)
    norms = np.sqrt(np.diag(co)).copy()
    norms[norms == 0] = 1.0
    if shrinkage:
        co /= np.outer(norms, norms) + np.float32(shrinkage)
    else:
        co /= norms[:, None]
        co /= norms[None, :]
    np.fill_diagonal(co, 0.0)
    n = co.shape[0]
    if k is None or k >= n - 1:
        return co
    rows = np.argsort(-co, axis=0, kind="stable")[:k]
    cols = np.broadcast_to(np.arange(n), rows.shape)
    vals = co[rows, cols]
    keep = vals > 0
    return sp.csr_matrix((vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(n, n))


def assert_identical(got: np.ndarray | sp.spmatrix, want: np.ndarray | sp.spmatrix) -> None:
    """Same kind, same entries, same float32 bits."""
    assert sp.issparse(got) == sp.issparse(want)
    if sp.issparse(want):
        got, want = sp.csr_matrix(got), sp.csr_matrix(want)
        got.sort_indices()
        want.sort_indices()
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        got, want = got.data, want.data
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


@pytest.mark.parametrize("shrinkage", [0.0, 2.5])
@pytest.mark.parametrize("k", [1, 3, 7, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocked_similarity_is_identical_to_the_dense_computation(seed: int, k: int | None, shrinkage: float) -> None:
    # Small random binary data: many ties in similarity, some at the k-th value.
    split, _ = random_split(seed, n_users=14, n_items=11)
    x = interaction_matrix(split)
    for rows in (x, x.T.tocsr()):  # user rows (UserCF) and item rows (ItemCF)
        want = dense_reference(rows, shrinkage, k)
        n = rows.shape[0]
        for block_cells in (1, 2 * n + 1, n * n):  # one column per block, two, all at once
            assert_identical(cosine_similarity(rows, shrinkage, k, block_cells=block_cells), want)


@pytest.mark.parametrize("k", [5, 20, None])
def test_models_keep_the_dense_neighbourhoods_on_movielens(ml100k_split, k: int | None) -> None:
    """Table 1's fits: ItemCF's item-item and UserCF's user-user neighbours, bit for bit."""
    x = interaction_matrix(ml100k_split)
    item_sim = ItemCFRecommender(k=k, shrinkage=3.0).fit(ml100k_split).sim_
    want = dense_reference(x.T.tocsr(), 3.0, k)
    assert_identical(item_sim, want)
    assert isinstance(item_sim, np.ndarray if k is None else sp.csr_matrix)
    neighbours = UserCFRecommender(k=k).fit(ml100k_split).neighbours_  # row u: user u's neighbours
    assert_identical(neighbours.T, dense_reference(x, 0.0, k))
    # the blocked path with many blocks, as a catalogue too large for one block is computed
    assert_identical(cosine_similarity(x.T.tocsr(), 3.0, k, block_cells=50 * x.shape[1]), want)


def test_top_k_memory_stays_within_its_estimate_far_below_the_dense_matrix() -> None:
    rng = np.random.default_rng(0)
    n, m = 2_000, 300
    x = sp.csr_matrix((rng.random((n, m)) < 0.05).astype(np.float32))
    block_cells = 16 * n
    with traced_peak() as peak:
        sim = cosine_similarity(x, 0.0, 10, block_cells=block_cells)
    assert 0 < sim.nnz <= 10 * n
    assert peak() <= cosine_similarity_bytes(n, 10, x.nnz, block_cells)
    assert peak() < 4 * n * n / 8  # an n x n float32 matrix would be 16 MB: the peak is under 2 MB
    # every neighbour: the dense result itself, and one block beside it
    with traced_peak() as peak:
        cosine_similarity(x, 0.0, None, block_cells=block_cells)
    assert 4 * n * n <= peak() <= cosine_similarity_bytes(n, None, x.nnz, block_cells)


@contextlib.contextmanager
def traced_peak() -> Iterator[Callable[[], int]]:
    """Trace Python and NumPy allocations in the block; yields a function of their peak, bytes."""
    tracemalloc.start()
    peak = 0
    try:
        yield lambda: peak
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch):
    """Set the memory the models see as available, bytes."""

    def set_available(n_bytes: int) -> None:
        monkeypatch.setattr(baselines_base, "available_memory_bytes", lambda: n_bytes)

    return set_available


def wide_split(n_users: int, n_items: int) -> object:
    """A few interactions over a huge catalogue (or many users): fitting would need n^2 memory."""
    return make_split([[u % n_items, (7 * u + 3) % n_items] for u in range(n_users)], [[]] * n_users, n_items)


def test_dense_neighbourhoods_that_do_not_fit_fail_before_allocating(memory) -> None:
    memory(8 * 10**9)
    split = wide_split(20, 100_000)  # 100,000 x 100,000 float32 = 40 GB
    with pytest.raises(InsufficientMemoryError) as err, traced_peak() as peak:
        ItemCFRecommender(k=None).fit(split)
    assert peak() < 10**8  # refused before the matrix (or a block of it) is allocated
    message, needed = str(err.value), err.value.needed_bytes
    assert isinstance(err.value, MemoryError) and err.value.available_bytes == 8 * 10**9
    assert 4 * 10**10 < needed < 4.1 * 10**10  # the dense matrix and one block
    for part in ("ItemCF on 100,000 items", "k=None", "100,000 x 100,000 float32", f"{needed / 1e9:.1f} GB",
                 "8.0 GB is available", "Set k"):
        assert part in message, (part, message)

    with pytest.raises(InsufficientMemoryError, match=r"UserCF on 60,000 users with every neighbour.*Set k") as err:
        UserCFRecommender(k=None).fit(wide_split(60_000, 50))
    assert 4 * 60_000**2 < err.value.needed_bytes < 4 * 60_000**2 + 10**9
    # a k so large that its neighbours alone do not fit: the fix is a smaller k
    with pytest.raises(InsufficientMemoryError, match=r"ItemCF on 100,000 items with k=50000: .*Set a smaller k"):
        ItemCFRecommender(k=50_000).fit(split)


def test_a_bounded_neighbourhood_fits_where_the_dense_matrix_does_not(memory) -> None:
    split, _ = random_split(0, n_users=30, n_items=40)
    dense_bytes = cosine_similarity_bytes(40, None, interaction_matrix(split).nnz)
    memory(dense_bytes - 1)  # one byte short of every neighbour, enough for 3
    with pytest.raises(InsufficientMemoryError):
        ItemCFRecommender(k=None).fit(split)
    assert 0 < ItemCFRecommender(k=3).fit(split).sim_.nnz <= 3 * 40
    memory(dense_bytes)
    assert ItemCFRecommender(k=None).fit(split).sim_.shape == (40, 40)


def test_ease_refuses_a_catalogue_whose_inverse_does_not_fit(memory) -> None:
    memory(16 * 10**9)
    split = wide_split(20, 100_000)
    with pytest.raises(InsufficientMemoryError) as err, traced_peak() as peak:
        EASERecommender().fit(split)
    assert peak() < 10**8
    message = str(err.value)
    for part in ("EASE on 100,000 items", "float64", "320.0 GB", "16.0 GB is available", "smaller catalogue",
                 "ItemCFRecommender(k=100)"):
        assert part in message, (part, message)
    memory(32 * 6 * 6)  # exactly what 6 items need
    assert EASERecommender(l2=1.0).fit(wide_split(5, 6)).weights_.shape == (6, 6)


def test_available_memory_is_positive_and_at_most_the_physical_memory() -> None:
    available = available_memory_bytes()
    assert isinstance(available, int) and 0 < available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"k": 0}, ValueError, "k must be an integer >= 1"),
        ({"k": 2.5}, ValueError, "k must be an integer >= 1"),
        ({"shrinkage": -1.0}, ValueError, "shrinkage must be >= 0"),
        ({"block_cells": 0}, ValueError, "block_cells must be an integer >= 1"),
    ],
)
def test_similarity_settings_are_checked(kwargs: dict, error: type, match: str) -> None:
    x = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(error, match=match):
        cosine_similarity(x, **kwargs)


def test_similarity_needs_a_binary_sparse_matrix() -> None:
    with pytest.raises(ValueError, match="x must be binary"):
        cosine_similarity(sp.csr_matrix(np.array([[2.0, 0.0], [1.0, 1.0]], dtype=np.float32)))
    with pytest.raises(TypeError, match="scipy sparse matrix"):
        cosine_similarity(np.eye(3, dtype=np.float32))
