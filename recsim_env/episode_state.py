"""The per-episode state of the simulated user, preallocated once and updated in place.

An environment allocates it once (:meth:`~recsim_env.user_simulator.UserSimulator.new_state`,
:meth:`~recsim_env.user_simulator.UserSimulator.new_batch`); the simulator writes it on
``reset`` and updates it on ``step``, so that ``reset``/``step`` never touch pandas.
:class:`EpisodeState` is one user's episode, :class:`BatchState` ``num_envs`` users' as 2-D
arrays. Item sets (``"excluded"``, ``"liked"``) are packed bits: item ``i`` is bit ``i % 8``
(least significant first) of byte ``i // 8``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BIT_VALUES", "BatchState", "EpisodeState", "concatenated_ranges"]


class EpisodeState:
    """One user's episode, updated in place by a simulator's ``step``
    (:meth:`~recsim_env.replay_user.ReplaySimulator.step`).

    :param n_items: number of items
    :param history_len: length of the ``"history"`` observation
    :param model: also allocate the learned user model's per-item state scores
    :param n_user_features: length of the ``"user"`` observation (default 3, MovieLens)
    """

    __slots__ = (
        "user", "prefix", "history", "excluded", "liked", "targets", "user_obs", "history_size",
        "steps", "n_targets_left", "n_liked_left", "last_action", "last_rating", "score",
        "score_like", "misses", "like_probability",
    )  # fmt: skip

    def __init__(
        self, n_items: int, history_len: int, model: bool = False, n_user_features: int = 3
    ) -> None:
        n_bytes = (n_items + 7) // 8
        self.user = -1  # -1: not reset yet
        self.prefix = 0
        self.history = np.zeros(history_len, dtype=np.int32)
        # Packed bits of the items in the history or recommended this episode: the "excluded"
        # observation, and action_masks() is its complement (one array, so they always agree).
        self.excluded = np.zeros(n_bytes, dtype=np.uint8)
        self.liked = np.zeros(n_bytes, dtype=np.uint8)
        self.targets = np.zeros(n_items, dtype=np.int8)  # rating level of each remaining target, else 0
        self.user_obs = np.zeros(n_user_features, dtype=np.int32)
        self.history_size = 0
        self.steps = 0
        self.n_targets_left = 0
        self.n_liked_left = 0
        self.last_action = -1
        self.last_rating = 0
        # Learned user model only: the state scores s and s_L of every item, and the run of
        # consecutive misses (see recsim_env.user_model).
        self.score = np.zeros(n_items, dtype=np.float32) if model else None
        self.score_like = np.zeros(n_items, dtype=np.float32) if model else None
        self.misses = 0
        self.like_probability = 0.0


class BatchState:
    """``num_envs`` users' episodes as 2-D arrays, updated in place by a simulator's
    ``step_batch`` (:meth:`~recsim_env.replay_user.ReplaySimulator.step_batch`).

    :param num_envs: number of users stepped together
    :param n_items: number of items
    :param history_len: length of the ``"history"`` observation
    :param model: also allocate the learned user model's per-item state scores
    :param n_user_features: length of the ``"user"`` observation (default 3, MovieLens)
    :param rating_dtype: dtype of the ratings the simulator reports (``last_rating``)
    """

    def __init__(
        self, num_envs: int, n_items: int, history_len: int, model: bool = False, n_user_features: int = 3,
        rating_dtype: Any = np.int64,
    ) -> None:
        n, m = num_envs, n_items
        n_bytes = (n_items + 7) // 8
        self.rows = np.arange(n)
        self.row_offset = self.rows * m  # flat index of (row, item 0)
        self.byte_offset = self.rows * n_bytes
        self.targets = np.zeros((n, m), dtype=np.int8)  # rating level of each remaining target, else 0
        # Packed bits of the items in the history or recommended this episode: the "excluded"
        # observation; action_masks() is its complement.
        self.excluded = np.zeros((n, n_bytes), dtype=np.uint8)
        self.history = np.zeros((n, history_len), dtype=np.int32)
        self.liked = np.zeros((n, n_bytes), dtype=np.uint8)
        self.user_obs = np.zeros((n, n_user_features), dtype=np.int32)
        self.user = np.full(n, -1, dtype=np.int64)
        self.prefix = np.zeros(n, dtype=np.int64)
        self.history_size = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.n_targets_left = np.zeros(n, dtype=np.int64)
        self.n_liked_left = np.zeros(n, dtype=np.int64)
        self.last_flat = self.row_offset.copy()  # flat (row, item) index of the last actions
        self.last_rating = np.zeros(n, dtype=rating_dtype)
        # Flat views, so a step indexes (row, item) pairs with one integer array.
        self.targets_flat = self.targets.reshape(-1)
        self.excluded_flat = self.excluded.reshape(-1)
        self.liked_flat = self.liked.reshape(-1)
        self.score = np.zeros((n, m), dtype=np.float32) if model else None
        self.score_like = np.zeros((n, m), dtype=np.float32) if model else None
        self.misses = np.zeros(n, dtype=np.int64)
        self.like_probability = np.zeros(n, dtype=np.float64)

    def row(self, i: int) -> EpisodeState:
        """Sub-env ``i`` as an :class:`EpisodeState` whose arrays are views of this batch's rows.

        Only the arrays are shared; the scalar fields of the returned object are copies.
        """
        view = EpisodeState.__new__(EpisodeState)
        view.history, view.excluded = self.history[i], self.excluded[i]
        view.liked, view.targets, view.user_obs = self.liked[i], self.targets[i], self.user_obs[i]
        view.score = None if self.score is None else self.score[i]
        view.score_like = None if self.score_like is None else self.score_like[i]
        return view


#: ``BIT_VALUES[j]`` is bit ``j`` of a byte (``1 << j``), the little bit order of the packed-bit
#: observation fields: item ``i`` is ``packed[i >> 3] & BIT_VALUES[i & 7]``. For setting or testing
#: the bits of many items at once.
BIT_VALUES = (1 << np.arange(8)).astype(np.uint8)


def concatenated_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges ``[lo[j], hi[j])`` one after another, and the ``j`` of each element.

    :param lo: int64 ``(k,)`` range starts
    :param hi: int64 ``(k,)`` range ends, ``hi >= lo``
    :return: ``(index, segment)``, int64 ``(sum(hi - lo),)`` each
    """
    lengths = hi - lo
    segment = np.repeat(np.arange(lengths.size), lengths)
    index = np.arange(segment.size) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
    return index, segment
