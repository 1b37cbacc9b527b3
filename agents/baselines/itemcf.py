"""Item-based collaborative filtering (item kNN, cosine on binary implicit interactions)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import Recommender, interaction_matrix, state_items
from agents.baselines.similarity import cosine_similarity
from recsim_env.dataset import Split


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

    Memory (:func:`~agents.baselines.similarity.cosine_similarity`): with ``k`` set the
    similarities are computed block by block and each item keeps ``k`` neighbours (sparse, about
    ``16 * n_items * k`` bytes plus one block of about 400 MB at most), whatever the catalogue;
    ``k = None`` keeps a dense ``n_items x n_items`` float32 matrix (``4 * n_items^2`` bytes: 30.7
    GB at 87,585 items), refused with :class:`~agents.baselines.base.InsufficientMemoryError`
    before it is allocated when the memory is not available.

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
        sim = cosine_similarity(x.T.tocsr(), self.shrinkage, self.k, name=f"ItemCF on {split.n_items:,} items")
        self.sim_ = sim.tocsr() if sp.issparse(sim) else sim
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
