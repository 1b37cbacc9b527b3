"""Greedy policies from item scores: how an agent that scores items acts in ``MovieLensRec-v0``.

DQN (Q-values), the non-RL baselines (one score per item) and any other ranking model output
a score per item. :class:`TopKPolicy` turns such a score function into actions for the
environment: the best allowed item in the single-item environment, the ``k`` best allowed
items (a slate, best first) with ``slate_size=k``. It chooses exactly as
:func:`recsim_env.evaluate_greedy` does (:func:`recsim_env.evaluation.greedy_actions`), and
the ranking is the evaluator's (ties to the lower item index), so the first slate of a
test-mode episode holds the top-``k`` items that :func:`recsim_env.evaluate_ranking` scores.
numpy only.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recsim_env.env import unpack_bits
from recsim_env.evaluation import greedy_actions

__all__ = ["TopKPolicy"]


class TopKPolicy:
    """Act greedily on item scores: the ``slate_size`` highest-scoring allowed items.

    Allowed = not set in the observation's ``"excluded"`` field (= ``env.action_masks()``: not in
    the history, not recommended yet in this episode). Use it as a plain callable
    (``policy(obs)``) or through Stable-Baselines3's ``predict`` interface (e.g.
    ``stable_baselines3.common.evaluation.evaluate_policy(policy, venv)``).

    ```python
    >>> env = gym.make("MovieLensRec-v0", mode="test", slate_size=10)  # doctest: +SKIP
    >>> policy = TopKPolicy(lambda obs: popularity[None], slate_size=10)  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(policy(obs))  # doctest: +SKIP

    ```

    :param score_fn: item scores of a batch of Dict observations (leading axis ``B``):
        float ``(B, n_items)``, higher is better (``(n_items,)`` is accepted for ``B = 1``);
        with ``batched=False`` it takes one observation and returns ``(n_items,)``
    :param slate_size: items per action: the environment's ``slate_size`` (default 1: one item,
        for the ``Discrete`` single-item environment)
    :param masked: choose among the allowed items only (default True); ``False`` ranks every item
    :param batched: whether ``score_fn`` takes batches (default True)
    """

    def __init__(
        self,
        score_fn: Callable[[dict[str, np.ndarray]], np.ndarray],
        slate_size: int = 1,
        masked: bool = True,
        batched: bool = True,
    ) -> None:
        if not callable(score_fn):
            raise ValueError(
                f"score_fn must be callable (observations -> item scores), got {score_fn!r}"
            )
        integer = isinstance(slate_size, (int, np.integer)) and not isinstance(slate_size, bool)
        if not integer or slate_size < 1:
            raise ValueError(f"slate_size must be an integer >= 1, got {slate_size!r}")
        self.score_fn = score_fn
        self.slate_size = int(slate_size)
        self.masked = bool(masked)
        self.batched = bool(batched)

    def scores(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """float64 ``(B, n_items)``: ``score_fn`` of a batch of observations, checked.

        :raises ValueError: scores of the wrong shape, or NaN scores
        """
        n = len(observations["excluded"])
        if self.batched:
            scores = np.asarray(self.score_fn(observations), dtype=np.float64)
            if scores.ndim == 1 and n == 1:
                scores = scores[None]
        else:
            rows = ({k: v[i] for k, v in observations.items()} for i in range(n))
            scores = np.stack([np.asarray(self.score_fn(row), dtype=np.float64) for row in rows])
        n_bytes = np.shape(observations["excluded"])[-1]
        if scores.ndim != 2 or scores.shape[0] != n or (scores.shape[1] + 7) // 8 != n_bytes:
            raise ValueError(
                f"score_fn returned shape {scores.shape} for {n} observation(s) whose "
                f"'excluded' field has {n_bytes} bytes: expected ({n}, n_items), one score per item"
            )
        if np.isnan(scores).any():
            raise ValueError("score_fn returned NaN scores")
        return scores

    def __call__(self, observation: dict[str, np.ndarray]) -> Any:
        """The action for one observation (an ``int``, or an int64 ``(slate_size,)`` slate), or
        for a batch (leading axis ``B``: ``(B,)`` items or ``(B, slate_size)`` slates)."""
        single = np.ndim(observation["excluded"]) == 1
        batch = {k: np.asarray(v)[None] for k, v in observation.items()} if single else observation
        scores = self.scores(batch)
        excluded = unpack_bits(batch["excluded"], scores.shape[1], "excluded") if self.masked else None
        actions = greedy_actions(scores, excluded, self.slate_size)
        if not single:
            return actions
        return int(actions[0]) if self.slate_size == 1 else actions[0]

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: ``(actions, None)``; the policy is always greedy.

        :param observation: one observation or a batch (a ``VecEnv``'s)
        :param state: unused (no recurrent state)
        :param episode_start: unused
        :param deterministic: unused: the policy is deterministic
        """
        actions = self(observation)
        return np.asarray(actions), None
