"""Logged (state, next item) pairs from the train split: the data of LSRDQN's next-item loss."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

#: Observation fields the sampler builds (the ``MovieLensRec-v0`` Dict observation).
FIELDS: tuple[str, ...] = ("user", "history", "liked", "excluded")


class LoggedNextItems:
    """Sampler of real train-sequence prefixes and the item each user rated right after.

    A pair is ``(s, a)``: ``s`` is the state of user ``u`` after the first ``p`` train items,
    built by the simulator's observation rules
    (:meth:`recsim_env.simulator.ReplaySimulator.prefix_observations`: user features; the last
    ``history_len`` of those items, front-padded with 0; the liked ones among them as packed
    bits; all of them as the packed ``"excluded"`` bits, since nothing has been recommended at
    a logged state), and ``a`` is the user's train item at position ``p`` (0-based), i.e. the
    next item of the logged sequence, whatever its rating. Every ``1 <= p <= n_train(u) - 1``
    of every user is a pair (79,057 on ML-100K's default split), drawn uniformly, so long
    sequences weigh more, as in SASRec's training. Only the train part of the split is read:
    nothing of the test items.

    A logged state need not be a valid *episode start*: the environment only starts train
    episodes up to the last liked train item (an episode needs a liked target), which would
    drop the pairs after it (1,554 on ML-100K), the ones closest to the test period; the
    simulator's prefix observations have no such limit. For ``p`` up to that limit the states
    equal ``env.unwrapped.start_observations(users, prefixes)`` exactly (tested).

    :param env: a ``MovieLensRec-v0`` environment in ``mode="train"`` (the training env); its
        simulator (split, ``history_len``, ``like_threshold``) and observation space are used
    :param seed: seed of the sampler's own generator
    :raises ValueError: not a train-mode ``MovieLensRec-v0`` env, or its observation has fields
        the sampler does not build (see :data:`FIELDS`)
    """

    def __init__(self, env: gym.Env, seed: int | None = None) -> None:
        base = env.unwrapped
        if getattr(base, "mode", None) != "train" or not hasattr(base, "simulator"):
            raise ValueError("LoggedNextItems needs a MovieLensRec-v0 environment in mode='train'")
        unknown = sorted(set(base.observation_space.spaces) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"LoggedNextItems builds the observation fields {list(FIELDS)}, but the environment "
                f"also has {unknown}; teach agents/next_item.py to build them from the split"
            )
        self.simulator = base.simulator
        split = base.split
        indptr = np.asarray(split.train_indptr, dtype=np.int64)
        items = np.asarray(split.train_items, dtype=np.int64)
        n_train = np.diff(indptr)
        n_pairs = np.maximum(n_train - 1, 0)  # prefixes 1 .. n_train - 1, each with a next item
        users = np.repeat(np.arange(n_train.size), n_pairs)
        self.users = users
        self.prefixes = np.arange(users.size) - (np.cumsum(n_pairs) - n_pairs)[users] + 1
        self.items = items[indptr[:-1][users] + self.prefixes]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Number of distinct (state, next item) pairs."""
        return int(self.users.size)

    def observations(self, users: np.ndarray, prefixes: np.ndarray) -> dict[str, np.ndarray]:
        """States of ``users`` after their first ``prefixes`` train items.

        :param users: int ``(B,)`` user indices
        :param prefixes: int ``(B,)`` prefix lengths, ``1 <= p <= n_train(u) - 1``
        :return: ``{"user": (B, 3) int32, "history": (B, history_len) int32,
            "liked": (B, ceil(n_items / 8)) uint8, "excluded": (B, ceil(n_items / 8)) uint8}``
        """
        return self.simulator.prefix_observations(users, prefixes)

    def __call__(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw ``batch_size`` pairs with replacement.

        :return: ``(observations, items)``: a Dict observation batch and int64 item indices ``(B,)``
        """
        idx = self.rng.integers(0, len(self), size=int(batch_size))
        return self.observations(self.users[idx], self.prefixes[idx]), self.items[idx]
