"""Shrunk cosine similarity of the rows of a binary matrix, block by block, for ItemCF and UserCF.

The similarity is computed for :data:`BLOCK_CELLS` cells at a time (a block of columns), so
its memory is bounded: ``k`` nearest neighbours per row cost ``O(n * B + n * k)`` for ``B``
columns per block, never ``n^2``. Every neighbour (``k=None``) is a dense ``n x n`` float32
matrix, checked against the free memory before it is allocated.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import require_memory

#: Cells of one dense block of similarities: 2**25 float32 = 128 MiB. With its temporaries (the
#: sparse co-occurrence product, the partitioned copy, the masks) a block takes about
#: :data:`BLOCK_BYTES_PER_CELL` bytes per cell at its peak.
BLOCK_CELLS: int = 1 << 25

#: Peak bytes per cell of a block: the sparse co-occurrence block (float32 value + int32 index)
#: beside its dense float32 copy; the top-k selection needs less (a float32 copy for the k-th
#: values, then two boolean masks and the int32 tie ranks of :data:`TIE_ROWS` rows).
BLOCK_BYTES_PER_CELL: int = 12

#: Rows of a block whose ties at the k-th value are ranked at once (an int32 rank per cell).
TIE_ROWS: int = 64

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
    transposed input (``8 * nnz``) and a few per-row vectors (``64 * n``), plus the result: ``k`` neighbours per row take
    ``NEIGHBOUR_BYTES * n * k``; every neighbour (``k=None`` or ``k >= n - 1``) the dense float32
    ``4 * n^2``.

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
    block of :func:`block_columns` columns at a time: the result (values and neighbours) does not
    depend on ``block_cells``.

    Memory (:func:`cosine_similarity_bytes`) is checked against
    :func:`~agents.baselines.base.available_memory_bytes` before anything large is allocated:
    :class:`~agents.baselines.base.InsufficientMemoryError` when it does not fit.

    :param x: binary sparse ``(n, m)`` (every stored value 1)
    :param shrinkage: ``lambda >= 0`` added to the denominator (default 0: plain cosine), so that
        pairs with few common non-zeros count less (Koren's shrunk similarity)
    :param k: neighbours kept per column, ``>= 1``; ``None`` (default) or ``>= n - 1`` keeps
        every entry and returns a dense matrix
    :param block_cells: cells of the similarity computed per block (default :data:`BLOCK_CELLS`)
    :param name: what the similarity is for, named in the memory error (e.g. ``"ItemCF"``)
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
            f"Set k (the neighbours kept per row, e.g. k=100: about "
            f"{cosine_similarity_bytes(n, 100, x.nnz, block_cells) / 1e9:.2f} GB, computed block by block).",
        )
    else:
        require_memory(
            needed,
            f"{name} with k={k}: the {k} nearest of {n:,} rows, in blocks of {width:,} columns",
            "Set a smaller k.",
        )

    counts = np.diff(x.indptr).astype(np.float32)  # |row| = its own co-occurrence count
    norms = np.sqrt(counts)
    norms[norms == 0] = 1.0  # an empty row has no common non-zeros: its similarities stay 0
    xt = x.T.tocsr()
    out = np.empty((n, n), dtype=np.float32) if dense else None
    indices, values, counts_per_column = [], [], []
    for start in range(0, n, width):
        stop = min(n, start + width)
        # blk[j - start, i] = sim[i, j]: one row per column of the result, contiguous.
        blk = (x[start:stop] @ xt).toarray()  # common non-zeros (exact integers in float32)
        if shrinkage:
            denom = np.outer(norms[start:stop], norms)
            denom += np.float32(shrinkage)
            blk /= denom
            del denom
        else:  # divided by row i's norm, then by column j's: the rounding of the full matrix
            blk /= norms[None, :]
            blk /= norms[start:stop, None]
        blk[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if dense:
            out[:, start:stop] = blk.T
            continue
        cols, rows = _top_k_per_row(blk, k)
        values.append(blk[cols, rows])
        indices.append(rows.astype(np.int32))
        counts_per_column.append(np.bincount(cols, minlength=stop - start))
    if dense:
        return out
    indptr = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.concatenate(counts_per_column), out=indptr[1:])
    return sp.csc_matrix(
        (np.concatenate(values) if values else np.zeros(0, np.float32),
         np.concatenate(indices) if indices else np.zeros(0, np.int32), indptr),
        shape=(n, n),
    )


def _top_k_per_row(blk: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(row, column)``, row-major, of each row's ``k`` largest positive entries, ties
    to the lower column: the first ``k`` of a stable descending sort, then the positive ones.

    :param blk: float32 ``(b, n)`` with ``k < n``
    :param k: entries kept per row
    """
    n = blk.shape[1]
    kth = np.partition(blk, n - k, axis=1)[:, n - k, None].copy()  # each row's k-th largest value
    keep = blk > kth  # fewer than k per row: all of them are kept
    tie = blk == kth
    tie[kth[:, 0] <= 0] = False  # a zero is never a neighbour
    need = k - keep.sum(axis=1)  # ties to keep per row, the lowest columns first
    crowded = np.flatnonzero(tie.sum(axis=1) > need)
    for start in range(0, crowded.size, TIE_ROWS):  # a few rows at a time: int32 ranks
        chunk = crowded[start : start + TIE_ROWS]
        t = tie[chunk]
        t &= np.cumsum(t, axis=1, dtype=np.int32) <= need[chunk, None]
        tie[chunk] = t
    keep |= tie
    return np.nonzero(keep)
