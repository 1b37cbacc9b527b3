"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), a strong linear reference."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from agents.baselines.base import Recommender, interaction_matrix, require_memory, state_items
from recsim_env.dataset import Split

#: Peak bytes of a fit per cell of the ``n_items x n_items`` matrix: :func:`numpy.linalg.inv`
#: holds the float64 Gram matrix, its float64 output and LAPACK's two float64 work copies at once
#: (measured: 33-34 bytes per cell at 2,500-3,500 items).
PEAK_BYTES_PER_CELL: int = 32


class EASERecommender(Recommender):
    """EASE^R: closed-form item-item regression with a zero diagonal.

    With ``X`` the binary train matrix (every rating an interaction) and
    ``P = (X^T X + lambda I)^-1``, the item weights are ``B = I - P diag(1 / diag(P))``
    (so ``B_jj = 0``) and ``score(u, :) = X_u B``. Not in the paper's Table 1; kept as the
    strong non-neural reference.

    Memory: the fit inverts a dense ``n_items x n_items`` float64 matrix, about
    :data:`PEAK_BYTES_PER_CELL` ``* n_items^2`` bytes at its peak (0.44 GB at ML-1M's 3,706 items, 245
    GB at ML-32M's 87,585), and keeps ``B`` as float32 (``4 * n_items^2``). There is no sparse form: a
    catalogue whose peak exceeds the available memory is refused with
    :class:`~agents.baselines.base.InsufficientMemoryError` before anything is allocated.

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
        n = split.n_items
        require_memory(
            PEAK_BYTES_PER_CELL * n * n,
            f"EASE on {n:,} items: inverting the dense {n:,} x {n:,} float64 Gram matrix "
            f"({PEAK_BYTES_PER_CELL} bytes x n_items^2 at the peak)",
            "Use a smaller catalogue (e.g. drop the items with few ratings before building the split; the memory "
            "grows with n_items^2) or an item model that scales, e.g. ItemCFRecommender(k=100).",
        )
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
