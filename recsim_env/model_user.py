"""The learned user of ``MovieLensRec-v0`` (``user_model="ease"``).

Its rules are in the docstring of :class:`ModelSimulator`; the like model it draws from is
:mod:`recsim_env.user_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from recsim_env.episode_state import BIT_VALUES, BatchState, EpisodeState
from recsim_env.user_simulator import UserSimulator

__all__ = ["ModelSimulator"]


class ModelSimulator(UserSimulator):
    """A learned user (``user_model="ease"``): any recommended item can be liked.

    The like model (:mod:`recsim_env.user_model`) is fitted on the train part of the split
    only, deterministically, and cached; the test part is never read.

    * **Start states**: as replay (train mode: a user and a prefix of their train sequence;
      test mode: the whole train history), but every user with a train rating can start, and
      a train-mode prefix is uniform in ``[1, n_train]``: no targets are needed.
    * **Like**: recommending item ``a`` draws ``u ~ U(0, 1)`` from the episode's generator;
      the user likes ``a`` when ``u < P(like | state, a)``. An item in ``"excluded"``
      (consumed, or already recommended this episode) is never liked: the model would
      otherwise let a policy repeat its best guess until it is liked. No item keeps a logged
      rating: the outcome of a logged item is drawn like any other, so the episode depends on
      the train part only.
    * **Rating and reward**: a like gets the top rating of the dataset's scale (5 on MovieLens)
      with the model's top-rating probability, else the rating just below it (4), or the top
      one when that rating is no like (:func:`recsim_env.user_model.like_ratings`); reward
      ``reward_map[rating]``. A miss has no rating
      (``info["rating"] = 0``) and reward 0, whatever ``reward_map`` gives ratings below
      ``like_threshold`` (those apply to replay only).
    * **Transition**: as replay. A like appends the item to the history and the liked set (and
      updates the state scores); every recommended item joins ``"excluded"``.
    * **Episode end**: after ``k`` consecutive misses the user leaves (``terminated``) with
      probability ``min(1, leave_rate * k)``; truncated after ``max_steps``.

    Each step draws exactly three uniforms (like, rating, leave) from the episode's generator,
    so a sub-env of the vector env and a single env with the same seed agree.

    :param user_model: the model's name (``"ease"``)
    :param user_model_kwargs: its settings (:class:`recsim_env.user_model.UserModelSettings`:
        ``l2``, ``leave_rate``)
    :param kwargs: the arguments of :class:`~recsim_env.user_simulator.UserSimulator`
    """

    user_model = "ease"
    max_prefix_reason = "its train length"

    def __init__(
        self,
        *,
        user_model: str = "ease",
        user_model_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from recsim_env.user_model import UserModelSettings, like_ratings, load_like_model

        settings = UserModelSettings.from_kwargs(user_model, user_model_kwargs)
        if user_model == "replay":
            raise ValueError("ModelSimulator needs a learned user_model; use ReplaySimulator")
        super().__init__(**kwargs)
        self.user_model = user_model
        self.settings = settings
        self.leave_rate = settings.leave_rate
        self.model = load_like_model(self.split, self.like_threshold, settings.l2)
        # A like gets the top rating or the one below it (when that is a like): 5 or 4 on MovieLens.
        low, _top = like_ratings(self.rating_scale, self.like_threshold)
        self.top_level = len(self.rating_scale)
        self.low_like_level = self.rating_scale.index(low) + 1
        n_train = self.n_train
        self._set_starts(n_train.copy(), n_train >= 1, "at least one train rating")

    def new_state(self) -> EpisodeState:
        return EpisodeState(self.n_items, self.history_len, model=True, n_user_features=self.user_features.shape[1])

    def new_batch(self, num_envs: int) -> BatchState:
        return BatchState(
            num_envs, self.n_items, self.history_len, model=True, n_user_features=self.user_features.shape[1],
            rating_dtype=self.rating_value_table.dtype,
        )

    def reset(self, state: EpisodeState, user: int, prefix: int, scratch: np.ndarray) -> None:
        """Write the start state and the state scores ``s``, ``s_L`` of its items."""
        self._write_history(state, user, prefix, scratch)
        lo = self.hist_lo[user]
        consumed = self.hist_items[lo : lo + prefix]
        liked = self.liked_items[self._liked_cum[lo] : self._liked_cum[lo + prefix]]
        state.score[:] = self.model.b_all[consumed].sum(axis=0)
        state.score_like[:] = self.model.b_like[liked].sum(axis=0)
        state.targets.fill(0)
        state.n_targets_left = state.n_liked_left = -1  # no targets: not a replay episode

    def _outcome(
        self, users: np.ndarray, items: np.ndarray, score: np.ndarray, score_like: np.ndarray,
        n_consumed: np.ndarray, excluded: np.ndarray, misses: np.ndarray, draws: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rule, on arrays (one entry per stepping user), shared by :meth:`step` and
        :meth:`step_batch` so that both compute bit-identical outcomes."""
        p = self.model.probability(score, score_like, n_consumed)
        p = np.where(excluded, 0.0, p)
        liked = draws[:, 0] < p
        five = draws[:, 1] < self.model.five_probability(users, items)
        rating = np.where(liked, np.where(five, self.top_level, self.low_like_level), 0)
        misses = np.where(liked, 0, misses + 1)
        leave = ~liked & (draws[:, 2] < np.minimum(1.0, self.leave_rate * misses))
        return p, liked, rating, misses, leave

    def step(
        self, state: EpisodeState, action: int, rng: np.random.Generator
    ) -> tuple[float, bool, bool, int, bool]:
        """Recommend item ``action``: draw the like, the rating and the leave (class docstring).

        :return: ``(reward, terminated, truncated, rating, liked)``; ``rating`` is 0 on a miss
        """
        draws = rng.random(3)[None]
        excluded = bool((state.excluded[action >> 3] >> (action & 7)) & 1)
        items = np.array([action])
        p, liked_a, rating_a, misses_a, leave_a = self._outcome(
            np.array([state.user]), items, state.score[items], state.score_like[items],
            np.array([state.history_size]), np.array([excluded]), np.array([state.misses]), draws,
        )  # fmt: skip
        liked, level = bool(liked_a[0]), int(rating_a[0])
        rating = self.rating_values[level]
        state.excluded[action >> 3] |= 1 << (action & 7)
        if liked:
            history = state.history
            history[:-1] = history[1:]
            history[-1] = action + 1
            state.liked[action >> 3] |= 1 << (action & 7)
            state.history_size += 1
            state.score += self.model.b_all[action]
            state.score_like += self.model.b_like[action]
        state.misses = int(misses_a[0])
        state.like_probability = float(p[0])
        state.steps += 1
        state.last_action = action
        state.last_rating = rating
        terminated = bool(leave_a[0])
        truncated = not terminated and state.steps >= self.max_steps
        return self.reward_list[level], terminated, truncated, rating, liked

    def step_batch(
        self,
        batch: BatchState,
        actions: np.ndarray,
        rngs: list[np.random.Generator],
        active: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = actions.size
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        rating = np.zeros(n, dtype=self.rating_value_table.dtype)
        liked = np.zeros(n, dtype=bool)
        rows = active.nonzero()[0]
        if rows.size == 0:
            return reward, terminated, truncated, rating, liked
        a = actions[rows]
        draws = np.stack([rngs[i].random(3) for i in rows.tolist()])
        byte = batch.excluded[rows, a >> 3]
        excluded = ((byte >> (a & 7).astype(np.uint8)) & 1).astype(bool)
        p, liked_r, rating_r, misses_r, leave_r = self._outcome(
            batch.user[rows], a, batch.score[rows, a], batch.score_like[rows, a],
            batch.history_size[rows], excluded, batch.misses[rows], draws,
        )  # fmt: skip
        batch.excluded_flat[batch.byte_offset[rows] + (a >> 3)] |= BIT_VALUES[a & 7]
        hit = rows[liked_r]
        if hit.size:
            item = actions[hit]
            history = batch.history
            history[hit, :-1] = history[hit, 1:]
            history[hit, -1] = item + 1
            batch.liked_flat[batch.byte_offset[hit] + (item >> 3)] |= BIT_VALUES[item & 7]
            batch.history_size[hit] += 1
            batch.score[hit] += self.model.b_all[item]
            batch.score_like[hit] += self.model.b_like[item]
        batch.misses[rows] = misses_r
        batch.like_probability[rows] = p
        batch.steps[rows] += 1
        batch.last_flat[rows] = batch.row_offset[rows] + a
        batch.last_rating[rows] = rating[rows] = self.rating_value_table[rating_r]
        liked[rows] = liked_r
        reward[rows] = self.reward_table[rating_r]
        terminated[rows] = leave_r
        truncated[rows] = ~leave_r & (batch.steps[rows] >= self.max_steps)
        return reward, terminated, truncated, rating, liked

    def info(self, state: EpisodeState, rating: int, liked: bool) -> dict[str, Any]:
        # Nothing here depends on the test part (the model never reads it), so both modes
        # report the drawn rating and the probability it was drawn with.
        return {
            "user": state.user,
            "prefix": state.prefix,
            "rating": rating,
            "liked": liked,
            "like_probability": state.like_probability,
            "misses": state.misses,
        }

    def batch_info(self, batch: BatchState, rating: np.ndarray, liked: np.ndarray) -> dict[str, Any]:
        return {
            "user": batch.user.copy(),
            "prefix": batch.prefix.copy(),
            "rating": rating,
            "liked": liked,
            "like_probability": batch.like_probability.copy(),
            "misses": batch.misses.copy(),
        }
