"""Logged transitions: the users' real train sequences replayed as off-policy DQN experience.

Every transition here is an exact transition of ``MovieLensRec-v0`` in train mode: in the
start state "history = the first ``p`` train items" the environment answers the action
"recommend the user's next real item ``x_p``" with reward ``reward_map[r_p]``; on a like the
next state is "history = the first ``p + 1`` items", otherwise the state is unchanged. So they
are ordinary off-policy data (DQN learns from a replay buffer, whatever policy filled it), from
a logging policy that recommends what the user actually watched next. Mixing them into each
mini-batch (:class:`DemoReplayBuffer`) gives the Q-network thousands of rewarded transitions
that epsilon-greedy exploration over 1,682+ items would find only rarely; the online
transitions keep supplying the zero-reward outcomes of the agent's own choices.

This is this project's addition to the paper (preset ``default``); preset ``paper`` does not
use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from recsim_env.dataset import Split
from recsim_env.env import default_reward_map


def logged_transitions(
    split: Split,
    history_len: int = 20,
    like_threshold: int = 4,
    reward_map: Mapping[int, float] | None = None,
    max_transitions: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The train split's sequences as ``MovieLensRec-v0`` transitions ``(s_p, x_p, r, s')``.

    One transition per position ``p >= 1`` of each user's train sequence at which a liked item
    is still ahead (the states a train-mode episode can be in). Observations use the
    environment's encoding (``"user"``, ``"history"`` tokens, packed ``"liked"`` bits).

    :param split: the split whose train part is replayed (never its test part)
    :param history_len: length of the ``"history"`` observation (default 20)
    :param like_threshold: smallest rating that is a like (default 4)
    :param reward_map: rating -> reward (default: rating / 5 on a like, else 0)
    :param max_transitions: keep at most this many, drawn uniformly without replacement
        (``None``: all of them; ML-100K has about 74,000, ML-1M about 760,000)
    :param seed: seed of that draw
    :return: dict with ``observations`` and ``next_observations`` (dicts of arrays),
        ``actions`` int64 ``(N,)``, ``rewards`` float32 ``(N,)``, ``dones`` float32 ``(N,)``
    """
    rewards_by_rating = np.zeros(6, dtype=np.float32)
    for rating, value in (reward_map or default_reward_map(like_threshold)).items():
        rewards_by_rating[int(rating)] = float(value)
    n_items = split.n_items
    features = np.asarray(split.data.user_features, dtype=np.int32)
    obs_parts: dict[str, list[np.ndarray]] = {"user": [], "history": [], "liked": []}
    next_parts: dict[str, list[np.ndarray]] = {"user": [], "history": [], "liked": []}
    actions, rewards, dones = [], [], []
    for user in range(split.n_users):
        items, ratings = split.train_of(user)
        liked = ratings >= like_threshold
        n = items.size
        liked_positions = np.flatnonzero(liked)
        if n < 2 or liked_positions.size == 0 or liked_positions[-1] < 1:
            continue
        last_liked = int(liked_positions[-1])
        # States s_0 .. s_n: history windows and cumulative liked sets.
        padded = np.concatenate([np.zeros(history_len, np.int32), items.astype(np.int32) + 1])
        windows = np.lib.stride_tricks.sliding_window_view(padded, history_len)  # (n + 1, L)
        grow = np.zeros((n + 1, n_items), dtype=np.uint8)
        grow[liked_positions + 1, items[liked_positions]] = 1
        liked_sets = np.packbits(np.cumsum(grow, axis=0, dtype=np.uint8) > 0, axis=1, bitorder="little")
        p = np.arange(1, last_liked + 1)  # states with a liked target ahead
        nxt = np.where(liked[p], p + 1, p)  # a like appends x_p; anything else leaves s_p as is
        obs_parts["history"].append(windows[p])
        obs_parts["liked"].append(liked_sets[p])
        next_parts["history"].append(windows[nxt])
        next_parts["liked"].append(liked_sets[nxt])
        for parts in (obs_parts, next_parts):
            parts["user"].append(np.repeat(features[user][None], p.size, axis=0))
        actions.append(items[p].astype(np.int64))
        rewards.append(rewards_by_rating[ratings[p]])
        dones.append((liked[p] & (p == last_liked)).astype(np.float32))  # the last liked target
    if not actions:
        raise ValueError("the split has no train sequence with a liked item after its first position")
    result = {
        "observations": {k: np.concatenate(v) for k, v in obs_parts.items()},
        "next_observations": {k: np.concatenate(v) for k, v in next_parts.items()},
        "actions": np.concatenate(actions),
        "rewards": np.concatenate(rewards),
        "dones": np.concatenate(dones),
    }
    total = result["actions"].size
    if max_transitions is not None and max_transitions < total:
        keep = np.sort(np.random.default_rng(seed).choice(total, max_transitions, replace=False))
        result = _take(result, keep)
    return result


def _take(transitions: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    return {
        key: ({k: v[index] for k, v in value.items()} if isinstance(value, dict) else value[index])
        for key, value in transitions.items()
    }


class DemoReplayBuffer(DictReplayBuffer):
    """SB3 ``DictReplayBuffer`` whose mini-batches mix in logged transitions.

    A fraction ``demo_fraction`` of every sampled batch comes from the transitions given to
    :meth:`set_demonstrations` (uniformly), the rest from the agent's own experience as usual.
    The logged transitions are kept outside the ring buffer, so online data never overwrite
    them, and are not saved with the buffer (rebuild them from the split).

    :param demo_fraction: share of each batch drawn from the logged transitions, in [0, 1)
    :param args: :class:`~stable_baselines3.common.buffers.DictReplayBuffer` arguments
    """

    def __init__(self, *args: Any, demo_fraction: float = 0.5, **kwargs: Any) -> None:
        if not 0.0 <= demo_fraction < 1.0:
            raise ValueError(f"demo_fraction must be in [0, 1), got {demo_fraction}")
        super().__init__(*args, **kwargs)
        self.demo_fraction = float(demo_fraction)
        self.demonstrations: dict[str, Any] | None = None

    def set_demonstrations(self, transitions: dict[str, Any]) -> None:
        """Use these transitions (from :func:`logged_transitions`) in every batch."""
        assert isinstance(self.observation_space, spaces.Dict)
        for key, space in self.observation_space.spaces.items():
            got = transitions["observations"][key].shape[1:]
            if got != space.shape:
                raise ValueError(f"logged observation {key!r} has shape {got}, the environment's is {space.shape}")
        self.demonstrations = transitions

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> DictReplayBufferSamples:  # type: ignore[override]
        n_demo = int(round(batch_size * self.demo_fraction)) if self.demonstrations is not None else 0
        online = super().sample(batch_size - n_demo, env=env)
        if n_demo == 0:
            return online
        demo = _take(self.demonstrations, np.random.randint(0, self.demonstrations["actions"].size, n_demo))
        as_tensor = lambda a: self.to_torch(np.asarray(a))  # noqa: E731
        cat_obs = lambda mine, logged: {k: th.cat([mine[k], as_tensor(logged[k])]) for k in mine}  # noqa: E731
        return DictReplayBufferSamples(
            observations=cat_obs(online.observations, demo["observations"]),
            actions=th.cat([online.actions, as_tensor(demo["actions"].reshape(-1, 1))]),
            next_observations=cat_obs(online.next_observations, demo["next_observations"]),
            dones=th.cat([online.dones, as_tensor(demo["dones"].reshape(-1, 1))]),
            rewards=th.cat([online.rewards, as_tensor(demo["rewards"].reshape(-1, 1))]),
        )
