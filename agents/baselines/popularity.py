"""Most-popular baseline: every user gets the items rated by the most users in train."""

from __future__ import annotations

import numpy as np

from agents.baselines.base import Recommender, interaction_matrix
from recsim_env.dataset import Split


class PopularityRecommender(Recommender):
    """Non-personalised reference: ``score(u, j)`` = number of users who rated ``j`` in train.

    Every rating counts (implicit feedback), each user at most once per item. The evaluator
    removes each user's own train items, so a user gets the most popular items they have
    not rated yet.
    """

    name = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self.counts_: np.ndarray | None = None

    def fit(self, split: Split) -> PopularityRecommender:
        """Count, per item, the users who rated it in the train part of ``split``.

        :param split: the split; only its train part is read
        :return: ``self``
        """
        x = interaction_matrix(split)
        self.counts_ = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
        self.split_ = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """The same popularity row for every user.

        :param users: user indices, int array ``(B,)``
        :return: float32 ``(B, n_items)`` train interaction counts
        """
        self._fitted_split()
        users = np.asarray(users)
        return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()

    def score_states(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """The popularity row for every state (a constant policy).

        :param observations: Dict observation batch (leading axis ``B``)
        :return: float32 ``(B, n_items)``
        """
        self._fitted_split()
        n = len(observations["history"])
        return np.broadcast_to(self.counts_, (n, len(self.counts_))).copy()
