"""Item scores from a trained model: what the ranking evaluator and the greedy policy use.

The score of item ``a`` in state ``s`` is

* DQN: ``Q(s, a)``;
* QR-DQN: the mean of the ``n_quantiles`` quantiles of ``Z(s, a)`` (= its Q-value);
* PPO / A2C / MaskablePPO: the policy logit of ``a`` (SB3 stores normalised log-probabilities,
  which rank identically).

For a model built with ``mask_excluded=True`` the items the observation excludes (history and
already recommended) score :data:`agents.masking.MASKED_VALUE`. A DQN with
``item_compute="sparse"`` writes its Q-values into one matrix
(:func:`agents.policies.item_q_values`; equal up to float rounding). In every case
``argmax_a score(s, a)`` is the model's own deterministic action. A model trained on
:class:`recsim_env.MultiHotObservation`-wrapped environments (``policy="multi_hot"``) is fed
the encoded observations (:func:`observation_encoder`).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import QRDQN
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from agents.masking import acting_values
from agents.policies import item_q_values
from recsim_env.evaluation import evaluate_greedy

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
        if isinstance(model, DQN) and getattr(model, "item_compute", "dense") == "sparse":
            net = model.q_net
            scores = item_q_values(net, net.extract_features(obs_tensor, net.features_extractor), obs_tensor)
        elif isinstance(model, DQN):
            scores = acting_values(model.q_net, model.q_net(obs_tensor), obs_tensor)
        elif isinstance(model, QRDQN):
            quantiles = model.quantile_net(obs_tensor)  # (B, n_quantiles, n)
            scores = acting_values(model.quantile_net, quantiles.mean(dim=1), obs_tensor)
        elif isinstance(policy, (ActorCriticPolicy, MaskableActorCriticPolicy)):  # PPO, A2C, MaskablePPO
            scores = policy.get_distribution(obs_tensor).distribution.logits  # masked by the policy
        else:
            raise TypeError(f"cannot score items with a {type(model).__name__} model")
    return scores.float().cpu().numpy()


def observation_encoder(model: BaseAlgorithm, raw_space: gym.Space) -> Callable[[dict], dict]:
    """What turns raw ``MovieLensRec-v0`` observations into the ones ``model`` reads.

    The identity for a model trained on raw observations; :func:`recsim_env.wrappers.multi_hot_encoder`
    for one trained on :class:`recsim_env.MultiHotObservation`-wrapped environments.

    :param model: the model
    :param raw_space: the raw single observation space
    :raises TypeError: the model reads another observation space
    """
    if model.observation_space == raw_space:
        return lambda observations: observations
    from recsim_env.wrappers import multi_hot_encoder

    encoder = multi_hot_encoder(raw_space)
    if encoder.space == model.observation_space:
        return encoder
    raise TypeError(f"the model reads observations of {model.observation_space}, neither the environment's "
                    "raw ones nor MultiHotObservation's: score observations encoded as in its training")


def make_score_fn(model: BaseAlgorithm, env: gym.Env, batch_size: int = 1024) -> ScoreFn:
    """``score_fn(users) -> (B, n_items)`` for :func:`recsim_env.evaluation.evaluate_ranking`.

    Each user is scored in its start state of ``env``'s mode, built by the env's simulator
    (``env.unwrapped.simulator.start_observations(users)``, :mod:`recsim_env.user_simulator`); for
    a test-mode env that is the user's whole train history, which is what the ranking
    protocol scores from.

    :param model: trained model (see :func:`score_observations`)
    :param env: a ``MovieLensRec-v0`` environment, normally in ``mode="test"``
    :param batch_size: users per forward pass (memory bound; default 1024)
    :return: the scoring function
    """
    base = env.unwrapped
    if not hasattr(base, "simulator"):
        raise TypeError(
            f"{type(base).__name__} has no simulator to build start_observations from; "
            f"pass a MovieLensRec-v0 env"
        )
    simulator = base.simulator
    encode = observation_encoder(model, base.observation_space)

    def score_fn(users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        parts = []
        for start in range(0, max(len(users), 1), batch_size):
            chunk = users[start : start + batch_size]
            parts.append(score_observations(model, encode(simulator.start_observations(chunk))))
        return np.concatenate(parts, axis=0) if len(users) else parts[0]

    return score_fn


def greedy_return(
    model: BaseAlgorithm,
    vec_env: gym.vector.VectorEnv,
    users: np.ndarray | None = None,
    use_masks: bool = True,
    seed: int | None = None,
) -> dict[str, float]:
    """Simulated return of the model's greedy policy: one episode per user, all users in batches.

    :func:`recsim_env.evaluate_greedy` with the model's item scores (:func:`score_observations`):
    each step takes the argmax over the items the observation allows when ``use_masks`` (no
    repeats, nothing already in the history), over all items otherwise. In slate mode
    (``slate_size=k > 1``) each step shows the ``k`` best of them instead, so a Q-network
    trained on single items acts in a slate environment.

    :param model: trained model
    :param vec_env: a ``MovieLensRecVectorEnv`` (e.g. ``gym.make_vec("MovieLensRec-v0",
        num_envs=64, vectorization_mode="vector_entry_point", mode="test")``) or a single env
    :param users: users to simulate (default: ``vec_env.unwrapped.users``, every user that can
        start an episode in this mode)
    :param use_masks: restrict the argmax to the allowed items
    :param seed: reset ``vec_env`` with this seed first (the cascade response's draws, or a
        stochastic user model's, ``user_model="ease"``); default None: leave its generators as
        they are
    :return: ``{"mean_return", "mean_length", "mean_likes", "mean_liked_items",
        "n_episodes"}`` (likes = steps with a positive reward; liked items: a slate can hold
        several)
    """
    raw_space = getattr(vec_env.unwrapped, "single_observation_space", vec_env.unwrapped.observation_space)
    encode = observation_encoder(model, raw_space)
    return evaluate_greedy(
        lambda obs: score_observations(model, encode(obs)), vec_env, users, masked=use_masks, seed=seed
    )
