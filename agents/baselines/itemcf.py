"""Item-based collaborative filtering (item kNN, cosine on binary implicit interactions)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import Recommender, interaction_matrix, state_items
from recsim_env.dataset import Split


def cosine_similarity(x: sp.csr_matrix, shrinkage: float = 0.0) -> np.ndarray:
    """Cosine similarity of the rows of a binary matrix, with a zero diagonal, optionally shrunk.

    :param x: binary CSR ``(n, m)``
    :param shrinkage: ``lambda >= 0`` added to the denominator (default 0: plain cosine), so
        that pairs with few common non-zeros count less (Koren's shrunk similarity)
    :return: dense float32 ``(n, n)``: ``|row_a ∩ row_b| / (sqrt(|row_a| |row_b|) + lambda)``
    """
    if not shrinkage >= 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
    co = (x @ x.T).toarray().astype(np.float32)  # common non-zeros
    norms = np.sqrt(np.diag(co)).copy()
    norms[norms == 0] = 1.0  # an empty row has no common non-zeros: its similarities stay 0
    if shrinkage:
        co /= np.outer(norms, norms) + np.float32(shrinkage)
    else:
        co /= norms[:, None]
        co /= norms[None, :]
    np.fill_diagonal(co, 0.0)
    return co


def top_k_per_column(sim: np.ndarray, k: int | None) -> np.ndarray | sp.csr_matrix:
    """Keep, in every column of a dense similarity matrix, only its ``k`` largest entries
    (ties go to the lower row index, so the neighbourhood is deterministic).

    :param sim: dense ``(n, n)`` similarity matrix with a zero diagonal
    :param k: neighbourhood size; ``None`` or ``>= n - 1`` keeps every column whole
    :return: CSR ``(n, n)`` float32, or the dense float32 matrix itself when nothing is cut
    """
    n = sim.shape[0]
    if k is None or k >= n - 1:
        return sim.astype(np.float32, copy=False)
    if k < 1:
        raise ValueError(f"k must be >= 1 (or None for all neighbours), got {k}.")
    rows = np.argsort(-sim, axis=0, kind="stable")[:k]  # (k, n): row ids of each column's top k
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
    that the user has rated (ties in similarity go to the lower item index). ``k = None`` uses
    all items. With ``shrinkage = lambda > 0`` the similarity is
    ``|U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + lambda)``: pairs seen together by few users count less.

    :param k: neighbourhood size per candidate item (default 100; tuned on the validation slice)
    :param shrinkage: ``lambda >= 0`` of the shrunk cosine (default 0.0: plain cosine)
    """

    name = "itemcf"

    def __init__(self, k: int | None = 100, shrinkage: float = 0.0) -> None:
        super().__init__()
        if not shrinkage >= 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
        self.k = k
        self.shrinkage = shrinkage
        self.sim_: np.ndarray | sp.csr_matrix | None = None
        self.x_: sp.csr_matrix | None = None

    def fit(self, split: Split) -> ItemCFRecommender:
        """Compute the item-item (shrunk) cosine similarities and keep each item's ``k`` neighbours.

        :param split: the split; only its train part is read
        :return: ``self``
        """
        x = interaction_matrix(split)
        self.sim_ = top_k_per_column(cosine_similarity(x.T.tocsr(), self.shrinkage), self.k)
        self.x_ = x
        self.split_ = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """Sum of neighbour similarities over each user's train items.

        :param users: user indices, int array ``(B,)``
        :return: float32 ``(B, n_items)``
        """
        self._fitted_split()
        scores = self.x_[np.asarray(users)] @ self.sim_
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def score_states(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """Neighbour similarities summed over the state's items (liked set and history window,
        :func:`~agents.baselines.base.state_items`) instead of the user's train items.

        :param observations: Dict observation batch (leading axis ``B``)
        :return: float32 ``(B, n_items)``
        """
        split = self._fitted_split()
        # Sparse state rows: a state holds tens of items out of thousands.
        scores = sp.csr_matrix(state_items(observations, split.n_items)) @ self.sim_
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)
