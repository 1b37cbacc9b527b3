"""Shrunk cosine similarity of the rows of a binary matrix, block by block, for ItemCF and UserCF.

The similarity is computed for :data:`BLOCK_CELLS` cells at a time (a block of columns, from
sparse co-occurrences), so its memory is bounded: ``k`` nearest neighbours per row cost
``O(n * B + n * k)`` for ``B`` columns per block, never ``n^2``. Every neighbour (``k=None``) is
kept as a dense ``n x n`` float32 matrix (a sparse one holding every pair would take twice the
memory: a value and an index per pair), checked against the available memory before it is
allocated.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import require_memory

#: Cells of the similarity computed per block: 2**24 (a block of 191 columns at 87,585 rows).
BLOCK_CELLS: int = 1 << 24

#: Peak bytes per cell of a block, at most: per stored co-occurrence (at most one per cell) its
#: float32 value, int32 index and int32 column and the float32 temporaries of the normalisation
#: (20 bytes measured with tracemalloc at full density), plus the dense float32 copy of the block
#: when every neighbour is kept; rounded up.
BLOCK_BYTES_PER_CELL: int = 24

#: Bytes per kept neighbour of the sparse result (float32 value + int32 index), held twice while
#: the result is assembled.
NEIGHBOUR_BYTES: int = 16


def block_columns(n: int, block_cells: int = BLOCK_CELLS) -> int:
    """Columns of the ``n x n`` similarity computed per block: ``block_cells // n``, between one
    and ``n``.

    :param n: number of rows of the input
    :param block_cells: cells per block (default :data:`BLOCK_CELLS`)
    """
    return min(max(n, 1), max(1, block_cells // max(n, 1)))


def cosine_similarity_bytes(n: int, k: int | None, nnz: int = 0, block_cells: int = BLOCK_CELLS) -> int:
    """Estimated peak memory of :func:`cosine_similarity` on ``n`` rows, bytes, beyond its input.

    One block, ``BLOCK_BYTES_PER_CELL * n * B`` with ``B`` = :func:`block_columns` ``(n)``, the
    transposed input (``8 * nnz``) and a few per-row vectors (``64 * n``), plus the result:
    ``k`` neighbours per row take ``NEIGHBOUR_BYTES * n * k``; every neighbour (``k=None`` or
    ``k >= n - 1``) the dense float32 ``4 * n^2``.

    :param n: number of rows of the input
    :param k: neighbours kept per row, or ``None`` for all
    :param nnz: stored values of the input (default 0: leave its transposed copy out)
    :param block_cells: cells per block (default :data:`BLOCK_CELLS`)
    """
    work = BLOCK_BYTES_PER_CELL * n * block_columns(n, block_cells) + 8 * nnz + 64 * n
    if k is None or k >= n - 1:
        return work + 4 * n * n
    return work + NEIGHBOUR_BYTES * n * k


def cosine_similarity(
    x: sp.spmatrix,
    shrinkage: float = 0.0,
    k: int | None = None,
    *,
    block_cells: int = BLOCK_CELLS,
    name: str = "cosine_similarity",
) -> np.ndarray | sp.csc_matrix:
    """Cosine similarity of the rows of a binary matrix, zero diagonal, optionally shrunk, keeping
    in every column its ``k`` largest entries.

    ``sim[a, b] = |row_a ∩ row_b| / (sqrt(|row_a| |row_b|) + lambda)`` (an empty row has no
    similarity). Column ``b`` keeps its ``k`` largest **positive** entries; ties go to the lower
    row index (the order of a stable sort), so the neighbourhood is deterministic. Computed for a
    block of :func:`block_columns` columns at a time: the result (neighbours and float32 values)
    does not depend on ``block_cells`` and is that of the full dense matrix, bit for bit.

    Memory (:func:`cosine_similarity_bytes`) is checked against
    :func:`~agents.baselines.base.available_memory_bytes` before anything large is allocated:
    :class:`~agents.baselines.base.InsufficientMemoryError` when it does not fit.

    :param x: binary sparse ``(n, m)`` (every stored value 1)
    :param shrinkage: ``lambda >= 0`` added to the denominator (default 0: plain cosine), so that
        pairs with few common non-zeros count less (Koren's shrunk similarity)
    :param k: neighbours kept per column, ``>= 1``; ``None`` (default) or ``>= n - 1`` keeps
        every entry and returns a dense matrix
    :param block_cells: cells of the similarity computed per block (default :data:`BLOCK_CELLS`)
    :param name: what the similarity is for, named in the memory error (e.g. ``"ItemCF on 3,706
        items"``)
    :return: float32 ``(n, n)``: CSC (column ``b`` holds its at most ``k`` neighbours, sorted by
        row) when ``k < n - 1``, else a dense C-ordered array
    """
    if not shrinkage >= 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be an integer >= 1 (or None for all neighbours), got {k!r}.")
    if not isinstance(block_cells, (int, np.integer)) or block_cells < 1:
        raise ValueError(f"block_cells must be an integer >= 1, got {block_cells!r}.")
    if not sp.issparse(x):
        raise TypeError(f"x must be a scipy sparse matrix, got {type(x).__name__}.")
    x = sp.csr_matrix(x, dtype=np.float32)
    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()
    if x.nnz and not np.all(x.data == 1):
        raise ValueError("x must be binary (every stored value 1, no duplicates): see interaction_matrix.")

    n = x.shape[0]
    dense = k is None or k >= n - 1
    width = block_columns(n, block_cells)
    needed = cosine_similarity_bytes(n, None if dense else k, x.nnz, block_cells)
    if dense:
        require_memory(
            needed,
            f"{name} with every neighbour (k={k}): the dense {n:,} x {n:,} float32 similarity matrix",
            f"Set k (the number of neighbours kept, e.g. k=100: about "
            f"{cosine_similarity_bytes(n, 100, x.nnz, block_cells) / 1e9:.2f} GB, computed block by block).",
        )
    else:
        require_memory(
            needed,
            f"{name} with k={k}: the {k:,} nearest neighbours of each of {n:,} rows (sparse float32, computed in "
            f"blocks of {width:,} columns)",
            "Set a smaller k.",
        )

    counts = np.diff(x.indptr).astype(np.float32)  # |row| = its own co-occurrence count
    norms = np.sqrt(counts)
    norms[norms == 0] = 1.0  # an empty row has no common non-zeros: its similarities stay 0
    xt = x.T.tocsr()
    out = np.empty((n, n), dtype=np.float32) if dense else None
    pieces = []
    for start in range(0, n, width):
        stop = min(n, start + width)
        # Row j - start of the block holds column j of the similarity: its sparse co-occurrences
        # (exact integers in float32) with every row i = block.indices.
        block = x[start:stop] @ xt
        column = np.repeat(np.arange(start, stop, dtype=np.int32), np.diff(block.indptr))
        values = block.data
        if shrinkage:
            denom = norms[column] * norms[block.indices]
            denom += np.float32(shrinkage)
            values /= denom
            del denom
        else:  # divided by row i's norm, then by column j's: the rounding of the full matrix
            values /= norms[block.indices]
            values /= norms[column]
        values[block.indices == column] = 0.0  # the diagonal
        if dense:
            out[:, start:stop] = block.toarray().T
            continue
        keep = _top_k_per_row(block, k)
        kept_per_column = np.bincount(column[keep] - start, minlength=stop - start)
        pieces.append((block.indices[keep], values[keep], kept_per_column))
        del block, column, values, keep
    if dense:
        return out
    indptr = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.concatenate([p[2] for p in pieces]), out=indptr[1:])
    sim = sp.csc_matrix(
        (np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.float32),
         np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int32), indptr),
        shape=(n, n),
    )
    sim.sort_indices()  # each column's neighbours by row: the order of the dense path's result
    return sim


def _top_k_per_row(block: sp.csr_matrix, k: int) -> np.ndarray:
    """Which stored entries of ``block`` are their row's ``k`` largest positive values, ties to
    the lower column: the first ``k`` of a stable descending sort, then the positive ones.

    :param block: float32 CSR ``(b, n)`` of non-negative values, indices in any order within a row
    :param k: entries kept per row
    :return: boolean mask over ``block.data``
    """
    values, indptr = block.data, block.indptr
    keep = values > 0
    zero_rows = np.searchsorted(indptr, np.flatnonzero(~keep), side="right") - 1  # few: the diagonal
    positive = np.diff(indptr) - np.bincount(zero_rows, minlength=block.shape[0])
    for row in np.flatnonzero(positive > k):  # more than k candidates: cut at the k-th value
        a, b = indptr[row], indptr[row + 1]
        v = values[a:b]
        kth = np.partition(v, b - a - k)[b - a - k]  # > 0: the row has more than k positives
        above = v > kth
        ties = np.flatnonzero(v == kth)
        need = k - np.count_nonzero(above)
        if ties.size > need:  # the ties of the lowest columns
            ties = ties[np.argsort(block.indices[a:b][ties], kind="stable")[:need]]
        above[ties] = True
        keep[a:b] = above
    return keep
