"""User-based collaborative filtering (user kNN, cosine on binary implicit interactions)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import Recommender, interaction_matrix, state_items
from agents.baselines.similarity import cosine_similarity
from recsim_env.dataset import Split


class UserCFRecommender(Recommender):
    """User-based kNN collaborative filtering.

    Neighbour rule: with ``r(v, j) = 1`` when user ``v`` rated item ``j`` in train (every
    rating is an interaction), ``sim(u, v) = |I_u ∩ I_v| / sqrt(|I_u| |I_v|)`` (cosine of the
    user rows, ``sim(u, u) = 0``) and ``kNN(u)`` the ``k`` users most similar to ``u``::

        score(u, j) = sum over v in kNN(u) of sim(u, v) * r(v, j)

    Ties in similarity go to the lower user index. ``k = None`` uses all users. With
    ``shrinkage = lambda > 0`` the similarity is ``|I_u ∩ I_v| / (sqrt(|I_u| |I_v|) + lambda)``:
    users with few items in common count less.

    Memory (:func:`~agents.baselines.similarity.cosine_similarity`): with ``k`` set the
    similarities are computed block by block and each user keeps ``k`` neighbours (sparse, about
    ``16 * n_users * k`` bytes plus one block of about 400 MB at most); ``k = None`` keeps a dense
    ``n_users x n_users`` float32 matrix (``4 * n_users^2`` bytes: 161.5 GB at 200,948 users),
    refused with :class:`~agents.baselines.base.InsufficientMemoryError` before it is allocated
    when the memory is not available.

    :param k: number of neighbours per user (default 50; tuned on the validation slice)
    :param shrinkage: ``lambda >= 0`` of the shrunk cosine (default 0.0: plain cosine)
    """

    name = "usercf"

    def __init__(self, k: int | None = 50, shrinkage: float = 0.0) -> None:
        super().__init__()
        if not shrinkage >= 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
        self.k = k
        self.shrinkage = shrinkage
        self.neighbours_: sp.csr_matrix | np.ndarray | None = None
        self.x_: sp.csr_matrix | None = None

    def fit(self, split: Split) -> UserCFRecommender:
        """Compute user-user (shrunk) cosine similarities and keep each user's ``k`` nearest.

        :param split: the split; only its train part is read
        :return: ``self``
        """
        x = interaction_matrix(split)
        # column u of the similarity holds user u's neighbours: transposed, one row per user
        # (CSR, or a view of the dense matrix for k = None: no copy of n_users^2 values)
        self.neighbours_ = cosine_similarity(x, self.shrinkage, self.k, name=f"UserCF on {split.n_users:,} users").T
        self.x_ = x
        self.split_ = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """Similarity-weighted votes of each user's neighbours.

        :param users: user indices, int array ``(B,)``
        :return: float32 ``(B, n_items)``
        """
        self._fitted_split()
        scores = self.neighbours_[np.asarray(users)] @ self.x_
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def score_states(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """The state (liked set and history window, :func:`~agents.baselines.base.state_items`)
        as a new user: (shrunk) cosine similarity to every train user, votes of its ``k`` nearest
        (ties to the lower user index). The state carries no user id, so the user's own train
        row may be among the neighbours.

        :param observations: Dict observation batch (leading axis ``B``)
        :return: float32 ``(B, n_items)``
        """
        self._fitted_split()
        items = sp.csr_matrix(state_items(observations, self.x_.shape[1]))
        common = (items @ self.x_.T).toarray().astype(np.float32)  # (B, n_users)
        norms = np.sqrt(np.asarray(items.sum(axis=1), dtype=np.float32)) * np.sqrt(
            np.asarray(self.x_.sum(axis=1), dtype=np.float32).T
        )
        sim = np.divide(common, norms + np.float32(self.shrinkage), out=np.zeros_like(common), where=norms > 0)
        k = self.k
        if k is not None and k < sim.shape[1]:
            top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
            keep = np.zeros_like(sim, dtype=bool)
            np.put_along_axis(keep, top, True, axis=1)
            sim = np.where(keep, sim, 0.0)
        return np.asarray((sp.csr_matrix(sim) @ self.x_).toarray(), dtype=np.float32)
