"""MovieLensRec-v0: a Gymnasium recommendation environment on real MovieLens ratings.

Importing this package only registers ``MovieLensRec-v0``; the public names below are loaded
on first use, and nothing here imports torch.

>>> import gymnasium as gym
>>> import recsim_env
>>> env = gym.make("MovieLensRec-v0")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

if TYPE_CHECKING:
    from recsim_env.dataset import DATASETS, MovieLensData, Split, item_to_token, token_to_item
    from recsim_env.env import MovieLensRecEnv, unpack_bits, unpack_liked
    from recsim_env.evaluation import evaluate_greedy, evaluate_ranking
    from recsim_env.interactions import load_interactions
    from recsim_env.model_user import ModelSimulator
    from recsim_env.movielens import load_movielens
    from recsim_env.policies import TopKPolicy
    from recsim_env.replay_user import ReplaySimulator
    from recsim_env.significance import (
        compare_to_reference,
        holm,
        mean_over_seeds,
        paired_bootstrap_ci,
        paired_test,
    )
    from recsim_env.simulator import make_simulator
    from recsim_env.splits import holdout_last, split_ratings
    from recsim_env.user_simulator import UserSimulator
    from recsim_env.vector_env import MovieLensRecVectorEnv
    from recsim_env.wrappers import MultiHotObservation, MultiHotVectorObservation

_EXPORTS: dict[str, str] = {
    "MovieLensRecEnv": "recsim_env.env",
    "unpack_liked": "recsim_env.env",
    "unpack_bits": "recsim_env.env",
    "MovieLensRecVectorEnv": "recsim_env.vector_env",
    "ReplaySimulator": "recsim_env.replay_user",
    "ModelSimulator": "recsim_env.model_user",
    "UserSimulator": "recsim_env.user_simulator",
    "make_simulator": "recsim_env.simulator",
    "DATASETS": "recsim_env.dataset",
    "MovieLensData": "recsim_env.dataset",
    "Split": "recsim_env.dataset",
    "item_to_token": "recsim_env.dataset",
    "token_to_item": "recsim_env.dataset",
    "load_movielens": "recsim_env.movielens",
    "load_interactions": "recsim_env.interactions",
    "split_ratings": "recsim_env.splits",
    "holdout_last": "recsim_env.splits",
    "evaluate_ranking": "recsim_env.evaluation",
    "evaluate_greedy": "recsim_env.evaluation",
    "TopKPolicy": "recsim_env.policies",
    "paired_test": "recsim_env.significance",
    "holm": "recsim_env.significance",
    "paired_bootstrap_ci": "recsim_env.significance",
    "compare_to_reference": "recsim_env.significance",
    "mean_over_seeds": "recsim_env.significance",
    "MultiHotObservation": "recsim_env.wrappers",
    "MultiHotVectorObservation": "recsim_env.wrappers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recsim_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# max_episode_steps=None: the environment truncates itself after `max_steps` (default 50), so
# gym.make adds no TimeLimit and the single and vector environments count steps alike.
if "MovieLensRec-v0" not in registry:  # re-importing (e.g. importlib.reload) must not warn
    register(
        id="MovieLensRec-v0",
        entry_point="recsim_env.env:MovieLensRecEnv",
        vector_entry_point="recsim_env.vector_env:MovieLensRecVectorEnv",
        max_episode_steps=None,
    )
