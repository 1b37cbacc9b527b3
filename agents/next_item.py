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
    (:meth:`recsim_env.user_simulator.UserSimulator.prefix_observations`: user features; the last
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
        self.history_len = int(base.history_len)
        split = base.split
        indptr = np.asarray(split.train_indptr, dtype=np.int64)
        items = np.asarray(split.train_items, dtype=np.int64)
        n_train = np.diff(indptr)
        n_pairs = np.maximum(n_train - 1, 0)  # prefixes 1 .. n_train - 1, each with a next item
        users = np.repeat(np.arange(n_train.size), n_pairs)
        self.users = users
        self.prefixes = np.arange(users.size) - (np.cumsum(n_pairs) - n_pairs)[users] + 1
        self.items = items[indptr[:-1][users] + self.prefixes]
        # Each user's train tokens (item + 1) behind history_len zeros: the history of prefix p
        # is then the slice [pad_lo + p, pad_lo + p + history_len), as in the environment.
        hl = self.history_len
        self._pad_lo = indptr[:-1] + hl * np.arange(n_train.size)
        self._tokens = np.zeros(items.size + hl * n_train.size, dtype=np.int32)
        shift = np.repeat(self._pad_lo + hl - indptr[:-1], n_train)
        self._tokens[shift + np.arange(items.size)] = items + 1
        self._train_lo = indptr[:-1]
        self._train_items = items
        self._train_liked = np.asarray(split.train_ratings) >= base.like_threshold
        self._liked_tokens = np.zeros(self._tokens.size, dtype=np.uint8)  # laid out like _tokens
        self._liked_tokens[shift + np.arange(items.size)] = self._train_liked
        # Window ends e = 1 .. n_train - 2 + history_len per user (see window_batch for the ends
        # past the last train item): every target is covered by exactly history_len of them, the
        # last ones (closest to the test period) as often as the others.
        self._n_train = n_train
        n_ends = np.where(n_train >= 2, n_train - 2 + hl, 0)
        self.window_users = np.repeat(np.arange(n_train.size), n_ends)
        self.window_ends = np.arange(self.window_users.size) - (np.cumsum(n_ends) - n_ends)[self.window_users] + 1
        self.rng = np.random.default_rng(seed)
        self.n_items = int(base.simulator.n_items)
        self._proposal: np.ndarray | None = None  # of negatives(), built on first use
        self._proposal_cdf: np.ndarray | None = None

    def __len__(self) -> int:
        """Number of distinct (state, next item) pairs."""
        return int(self.users.size)

    def observations(self, users: np.ndarray, prefixes: np.ndarray) -> dict[str, np.ndarray]:
        """States of ``users`` after their first ``prefixes`` train items.

        :param users: int ``(B,)`` user indices
        :param prefixes: int ``(B,)`` prefix lengths, ``1 <= p <= n_train(u) - 1``
        :return: ``{"user": (B, F) int32, "history": (B, history_len) int32,
            "liked": (B, ceil(n_items / 8)) uint8, "excluded": (B, ceil(n_items / 8)) uint8}``
        """
        return self.simulator.prefix_observations(users, prefixes)

    def window_batch(self, users: np.ndarray, ends: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Windows of ``history_len`` train items ending at prefix ``ends`` and their next items.

        The window of ``(u, e)`` is the history of the state after the first ``e`` train items
        (the last ``history_len`` of them, front-padded with 0); slot ``t`` holds train item
        ``e - history_len + t`` and its target is the item right after it. An end past the
        data, ``e > n_train(u) - 1`` (at most ``n_train(u) - 2 + history_len``), gives the
        window of ``e = n_train(u) - 1`` with the targets kept only where the window ending at
        ``e`` would have one (its slots after the first ``e - n_train(u) + 1``), so that every
        (prefix, next item) pair is the target of exactly ``history_len`` ends.

        :param users: int ``(B,)`` user indices
        :param ends: int ``(B,)`` window ends, ``1 <= e <= n_train(u) - 2 + history_len``
        :return: ``(windows, targets)``: ``windows`` has ``"user"`` ``(B, F)`` int32,
            ``"history"`` ``(B, n)`` int32 tokens, ``"history_liked"`` ``(B, n)`` uint8 (1 where the
            slot's item is liked), ``"liked_before"`` and ``"excluded_before"`` (packed
            ``(B, ceil(N / 8))`` uint8: the liked and all items of the prefix before the window);
            ``targets`` int64 ``(B, n)``: the next item's index, ``-1`` where there is none to
            learn (padding slots, and the first slots of an end past the data)
        """
        users = np.asarray(users, dtype=np.int64)
        wanted = np.asarray(ends, dtype=np.int64)
        last = self._n_train[users] - 1
        if np.any(wanted < 1) or np.any(wanted > last - 1 + self.history_len):
            raise ValueError(f"window ends must lie in [1, n_train(u) - 2 + history_len = "
                             f"{self.history_len - 2} + n_train(u)] of their users")
        ends = np.minimum(wanted, last)
        slots = (self._pad_lo[users] + ends)[:, None] + np.arange(self.history_len)
        history = self._tokens[slots]
        before = self.observations(users, np.maximum(ends - self.history_len, 0))
        targets = np.where(history > 0, self._tokens[slots + 1].astype(np.int64) - 1, -1)
        targets[np.arange(self.history_len) < (wanted - ends)[:, None]] = -1  # another end's targets
        windows = {
            **({"user": before["user"]} if "user" in before else {}),  # none without user features
            "history": history,
            "history_liked": self._liked_tokens[slots],
            "liked_before": before["liked"],
            "excluded_before": before["excluded"],
        }
        return windows, targets

    def windows(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw ``batch_size`` windows with replacement, for a next-item loss at every position.

        A draw is a user and a window end (see :meth:`window_batch`), uniform over the
        ``n_train(u) - 2 + history_len`` ends of every user, so that every (prefix, next item)
        pair of :meth:`__call__` is equally likely to be a target (``history_len`` ends each).

        :return: :meth:`window_batch` of the drawn windows
        """
        idx = self.rng.integers(0, self.window_users.size, size=int(batch_size))
        return self.window_batch(self.window_users[idx], self.window_ends[idx])

    @property
    def proposal(self) -> np.ndarray:
        """float64 ``(n_items,)``: the probability :meth:`negatives` draws each item with, its
        number of train ratings plus one over the total (popular items are drawn more often, and
        every item, rated or not, has a positive probability)."""
        if self._proposal is None:
            counts = np.bincount(self._train_items, minlength=self.n_items).astype(np.float64) + 1.0
            self._proposal = counts / counts.sum()
            self._proposal_cdf = np.cumsum(self._proposal)
        return self._proposal

    def negatives(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Negatives of the sampled next-item softmax (:mod:`agents.supervised`): ``k`` items
        drawn with replacement from :attr:`proposal` ``q`` (``O(k log n_items)``: a binary search
        of its cumulative sum), and the logQ correction ``log(k q_j)`` of each draw, the log of
        its expected number of draws. With ``k >= n_items`` every item once, with correction 0
        (the full softmax).

        :param k: number of draws
        :return: ``(items int64 (k,), log_expected float64 (k,))`` (``(n_items,)`` each when
            ``k >= n_items``)
        """
        k = int(k)
        if k >= self.n_items:
            return np.arange(self.n_items, dtype=np.int64), np.zeros(self.n_items)
        q = self.proposal
        cdf = self._proposal_cdf
        items = np.minimum(np.searchsorted(cdf, self.rng.random(k) * cdf[-1], side="right"), self.n_items - 1)
        return items.astype(np.int64), np.log(k * q[items])

    def __call__(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw ``batch_size`` pairs with replacement.

        :return: ``(observations, items)``: a Dict observation batch and int64 item indices ``(B,)``
        """
        idx = self.rng.integers(0, len(self), size=int(batch_size))
        return self.observations(self.users[idx], self.prefixes[idx]), self.items[idx]
