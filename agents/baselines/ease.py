"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), a strong linear reference."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import Recommender, interaction_matrix, state_items
from recsim_env.dataset import Split


class EASERecommender(Recommender):
    """EASE^R: closed-form item-item regression with a zero diagonal.

    With ``X`` the binary train matrix (every rating an interaction) and
    ``P = (X^T X + lambda I)^-1``, the item weights are ``B = I - P diag(1 / diag(P))``
    (so ``B_jj = 0``) and ``score(u, :) = X_u B``. Not in the paper's Table 1; kept as the
    strong non-neural reference.

    :param l2: L2 regularisation ``lambda`` (default 200.0; tuned on the validation slice)
    """

    name = "ease"

    def __init__(self, l2: float = 200.0) -> None:
        super().__init__()
        self.l2 = l2
        self.weights_: np.ndarray | None = None
        self.x_: sp.csr_matrix | None = None

    def fit(self, split: Split) -> EASERecommender:
        """Solve EASE in closed form (one dense ``n_items x n_items`` inverse).

        :param split: the split; only its train part is read
        :return: ``self``
        """
        if self.l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {self.l2}.")
        x = interaction_matrix(split)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.weights_ = b.astype(np.float32)
        self.x_ = x
        self.split_ = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """``X_u B`` for each user.

        :param users: user indices, int array ``(B,)``
        :return: float32 ``(B, n_items)``
        """
        self._fitted_split()
        return np.asarray(self.x_[np.asarray(users)] @ self.weights_, dtype=np.float32)

    def score_states(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """``x_s B`` with ``x_s`` the state's items (liked set and history window,
        :func:`~agents.baselines.base.state_items`).

        :param observations: Dict observation batch (leading axis ``B``)
        :return: float32 ``(B, n_items)``
        """
        split = self._fitted_split()
        # Sparse state rows: a state holds tens of items out of thousands.
        x = sp.csr_matrix(state_items(observations, split.n_items))
        return np.asarray(x @ self.weights_, dtype=np.float32)
