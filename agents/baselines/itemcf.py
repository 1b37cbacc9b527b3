"""Item-based collaborative filtering (item kNN, cosine on binary implicit interactions)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import Recommender, interaction_matrix
from recsim_env.dataset import Split


def top_k_per_column(sim: np.ndarray, k: int | None) -> sp.csr_matrix:
    """Keep, in every column of a dense similarity matrix, only its ``k`` largest entries.

    :param sim: dense ``(n, n)`` similarity matrix with a zero diagonal
    :param k: neighbourhood size; ``None`` or ``>= n - 1`` keeps every column whole
    :return: CSR ``(n, n)`` float32
    """
    n = sim.shape[0]
    if k is None or k >= n - 1:
        return sp.csr_matrix(sim.astype(np.float32))
    if k < 1:
        raise ValueError(f"k must be >= 1 (or None for all neighbours), got {k}.")
    rows = np.argpartition(-sim, k - 1, axis=0)[:k]  # (k, n): row ids of each column's top k
    cols = np.broadcast_to(np.arange(n), rows.shape)
    vals = sim[rows, cols]
    keep = vals > 0
    return sp.csr_matrix(
        (vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(n, n)
    )


class ItemCFRecommender(Recommender):
    """Item-based kNN collaborative filtering.

    Neighbour rule: with ``R`` the binary train matrix (every rating is an interaction),
    ``sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)`` (cosine of the item columns, ``sim(j, j)
    = 0``) and ``N_k(j)`` the ``k`` items most similar to ``j``::

        score(u, j) = sum over i in train(u) ∩ N_k(j) of sim(i, j)

    i.e. each candidate ``j`` collects the similarities of its own ``k`` nearest neighbours
    that the user has rated. ``k = None`` uses all items.

    :param k: neighbourhood size per candidate item (default 100; tuned on the validation slice)
    """

    name = "itemcf"

    def __init__(self, k: int | None = 100) -> None:
        super().__init__()
        self.k = k
        self.sim_: sp.csr_matrix | None = None
        self.x_: sp.csr_matrix | None = None

    def fit(self, split: Split) -> ItemCFRecommender:
        """Compute the item-item cosine similarities and keep each item's ``k`` neighbours.

        :param split: the split; only its train part is read
        :return: ``self``
        """
        x = interaction_matrix(split)
        co = (x.T @ x).toarray()  # co-occurrence counts, (n_items, n_items)
        norms = np.sqrt(np.diag(co)).astype(np.float64)
        norms[norms == 0] = 1.0
        sim = co / norms[:, None] / norms[None, :]
        np.fill_diagonal(sim, 0.0)
        self.sim_ = top_k_per_column(sim, self.k)
        self.x_ = x
        self.split_ = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """Sum of neighbour similarities over each user's train items.

        :param users: user indices, int array ``(B,)``
        :return: float32 ``(B, n_items)``
        """
        self._fitted_split()
        return np.asarray((self.x_[np.asarray(users)] @ self.sim_).toarray(), dtype=np.float32)
