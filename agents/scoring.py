"""Item scores from a trained model: what the ranking evaluator and the greedy policy use.

The score of item ``a`` in state ``s`` is

* DQN: ``Q(s, a)``;
* QR-DQN: the mean of the ``n_quantiles`` quantiles of ``Z(s, a)`` (= its Q-value);
* PPO / A2C / MaskablePPO: the policy logit of ``a`` (SB3 stores normalised log-probabilities,
  which rank identically).

In every case ``argmax_a score(s, a)`` is the model's own deterministic action.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

ScoreFn = Callable[[np.ndarray], np.ndarray]


def score_observations(model: BaseAlgorithm, observations: dict[str, np.ndarray]) -> np.ndarray:
    """Item scores of a batch of observations (no exploration, dropout off).

    :param model: a trained DQN, QR-DQN, PPO, A2C or MaskablePPO model
    :param observations: Dict observation with leading batch dimension ``B``
    :return: float32 ``(B, n_items)``
    :raises TypeError: unsupported model type
    """
    policy = model.policy
    policy.set_training_mode(False)
    obs_tensor, _ = policy.obs_to_tensor(observations)
    with th.no_grad():
        if isinstance(model, DQN):
            scores = model.q_net(obs_tensor)
        elif isinstance(model, QRDQN):
            scores = model.quantile_net(obs_tensor).mean(dim=1)  # (B, n_quantiles, n) -> (B, n)
        elif isinstance(policy, ActorCriticPolicy):  # PPO, A2C, MaskablePPO
            scores = policy.get_distribution(obs_tensor).distribution.logits
        else:
            raise TypeError(f"cannot score items with a {type(model).__name__} model")
    return scores.float().cpu().numpy()


def make_score_fn(model: BaseAlgorithm, env: gym.Env, batch_size: int = 1024) -> ScoreFn:
    """``score_fn(users) -> (B, n_items)`` for :func:`recsim_env.evaluation.evaluate_ranking`.

    Each user is scored in its start state of ``env``'s mode, built by
    ``env.unwrapped.start_observations(users)``; for a test-mode env that is the user's whole
    train history, which is what the ranking protocol scores from.

    :param model: trained model (see :func:`score_observations`)
    :param env: a ``MovieLensRec-v0`` environment, normally in ``mode="test"``
    :param batch_size: users per forward pass (memory bound; default 1024)
    :return: the scoring function
    """
    base = env.unwrapped
    if not hasattr(base, "start_observations"):
        raise TypeError(f"{type(base).__name__} has no start_observations(); pass a MovieLensRec-v0 env")

    def score_fn(users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        parts = []
        for start in range(0, max(len(users), 1), batch_size):
            chunk = users[start : start + batch_size]
            parts.append(score_observations(model, base.start_observations(chunk)))
        return np.concatenate(parts, axis=0) if len(users) else parts[0]

    return score_fn


def greedy_return(
    model: BaseAlgorithm,
    make_env: Callable[[], gym.Env],
    users: np.ndarray | None = None,
    n_parallel: int = 64,
    use_masks: bool = True,
) -> dict[str, float]:
    """Simulated return of the greedy policy: one episode per user, ``reset(options={"user": u})``.

    The action is ``argmax`` of the item scores, over the items ``action_masks()`` allows when
    ``use_masks`` (no repeats, nothing already in the history), over all items otherwise.
    ``n_parallel`` environments step in lockstep so that one forward pass serves them all.

    :param model: trained model
    :param make_env: builds one environment (normally test mode; it must accept
        ``reset(options={"user": u})``)
    :param users: users to simulate (default: ``env.unwrapped.users``)
    :param n_parallel: environments stepped together
    :param use_masks: restrict the argmax to ``env.action_masks()``
    :return: ``{"mean_return", "mean_length", "mean_likes", "n_episodes"}`` (likes = positive
        rewards per episode)
    """
    envs = [make_env() for _ in range(max(1, n_parallel))]
    queue = deque(np.asarray(envs[0].unwrapped.users if users is None else users, dtype=np.int64))
    returns, lengths, likes = [], [], []
    active: dict[int, list] = {}  # env slot -> [obs, return, length, likes]

    def start(slot: int) -> None:
        if queue:
            obs, _ = envs[slot].reset(options={"user": int(queue.popleft())})
            active[slot] = [obs, 0.0, 0, 0]

    for slot in range(len(envs)):
        start(slot)
    while active:
        slots = sorted(active)
        batch = {k: np.stack([active[s][0][k] for s in slots]) for k in active[slots[0]][0]}
        scores = score_observations(model, batch)
        if use_masks:
            masks = np.stack([envs[s].unwrapped.action_masks() for s in slots])
            scores = np.where(masks, scores, -np.inf)
        actions = scores.argmax(axis=1)
        for s, action in zip(slots, actions):
            obs, reward, terminated, truncated, _ = envs[s].step(int(action))
            rec = active[s]
            rec[0], rec[1], rec[2], rec[3] = obs, rec[1] + float(reward), rec[2] + 1, rec[3] + int(reward > 0)
            if terminated or truncated:
                returns.append(rec[1]), lengths.append(rec[2]), likes.append(rec[3])
                del active[s]
                start(s)
    for env in envs:
        env.close()
    return {
        "mean_return": float(np.mean(returns)) if returns else 0.0,
        "mean_length": float(np.mean(lengths)) if lengths else 0.0,
        "mean_likes": float(np.mean(likes)) if likes else 0.0,
        "n_episodes": len(returns),
    }
