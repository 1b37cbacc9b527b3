"""Logged (state, next item) pairs from the train split: the data of LSRDQN's next-item loss."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class LoggedNextItems:
    """Sampler of real train-sequence prefixes and the item each user rated right after.

    A pair is ``(s, a)``: ``s`` is the train-mode start state of user ``u`` with prefix ``p``
    (the first ``p`` train items, exactly as ``reset(options={"user": u, "prefix": p})`` builds
    it) and ``a`` is the user's train item at position ``p`` (0-based), i.e. the next item of
    the logged sequence, whatever its rating. Pairs are drawn uniformly over every valid
    ``(u, p)`` (``1 <= p <=`` the user's largest train-mode prefix), so long sequences weigh
    more, as in SASRec's training. Only the train part of the split is read: nothing of the
    test items.

    :param env: a ``MovieLensRec-v0`` environment in ``mode="train"`` (the training env)
    :param seed: seed of the sampler's own generator
    """

    def __init__(self, env: gym.Env, seed: int | None = None) -> None:
        base = env.unwrapped
        if getattr(base, "mode", None) != "train" or not hasattr(base, "start_observations"):
            raise ValueError("LoggedNextItems needs a MovieLensRec-v0 environment in mode='train'")
        self._env = base
        max_prefix = np.asarray(base.max_prefixes, dtype=np.int64)
        users = np.repeat(np.arange(max_prefix.size), max_prefix)
        starts = np.cumsum(max_prefix) - max_prefix
        self.users = users
        self.prefixes = np.arange(users.size) - starts[users] + 1
        train_lo = np.asarray(base.split.train_indptr, dtype=np.int64)[:-1]
        self.items = np.asarray(base.split.train_items, dtype=np.int64)[train_lo[users] + self.prefixes]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Number of distinct (state, next item) pairs."""
        return int(self.users.size)

    def __call__(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw ``batch_size`` pairs with replacement.

        :return: ``(observations, items)``: a Dict observation batch and int64 item indices ``(B,)``
        """
        idx = self.rng.integers(0, len(self), size=int(batch_size))
        obs = self._env.start_observations(self.users[idx], self.prefixes[idx])
        return obs, self.items[idx]
