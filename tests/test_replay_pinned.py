"""Replay episodes pinned bit for bit: the simulator refactor and the user model change nothing.

``tests/data/replay_pinned.json`` was recorded from the code as it was before the simulator
moved to :mod:`recsim_env.simulator` (commit 78edd0e). Each step's observation, action mask,
reward, flags and ``info`` of seeded ML-100K episodes (single env and native vector env, train
and test mode) are digested; a changed digest means replay episodes changed. Regenerate the
file (``python tests/test_replay_pinned.py``) only for an intended, documented change of the
replay rules.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from recsim_env import Split

PINNED = Path(__file__).parent / "data" / "replay_pinned.json"
#: (mode, env kwargs, seed): the recorded configurations.
CASES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("train", {}, 0),
    ("train", {"history_len": 5, "max_steps": 12}, 7),
    ("test", {}, 3),
    ("test", {"history_len": 5, "max_steps": 12, "reward_map": {5: 1.0, 4: 0.5, 2: -0.1}}, 11),
)
N_STEPS = 60  # single env: steps over possibly several episodes
N_ENVS, VEC_STEPS = 4, 40


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _obs_digest(obs: dict[str, np.ndarray]) -> str:
    return _digest(*(obs[k] for k in sorted(obs)))


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v).tolist() for k, v in sorted(info.items())}


def _pick(split: Split, mode: str, user: int, prefix: int, mask: np.ndarray,
          rng: np.random.Generator) -> int:
    """Half the time a liked target of the user (so likes and terminations happen), else any item."""
    items, ratings = split.train_of(user) if mode == "train" else split.test_of(user)
    if mode == "train":
        items, ratings = items[prefix:], ratings[prefix:]
    liked = items[(ratings >= 4) & mask[items]]
    if liked.size and rng.random() < 0.5:
        return int(rng.choice(liked))
    return int(rng.integers(0, split.n_items))  # sometimes an excluded item: a repeat


def record(split: Split) -> dict[str, Any]:
    """Digests of the pinned episodes of ``split`` (single and vector env)."""
    out: dict[str, Any] = {}
    for mode, kwargs, seed in CASES:
        key = f"{mode}-{seed}"
        env = gym.make("MovieLensRec-v0", split_data=split, mode=mode, **kwargs)
        rng = np.random.default_rng(seed)
        obs, info = env.reset(seed=seed)
        steps = [[_obs_digest(obs), _digest(env.unwrapped.action_masks()), _jsonable(info)]]
        for _ in range(N_STEPS):
            mask = env.unwrapped.action_masks()
            action = _pick(split, mode, info["user"], info["prefix"], mask, rng)
            obs, reward, terminated, truncated, info = env.step(action)
            steps.append([action, float(reward), bool(terminated), bool(truncated),
                          _obs_digest(obs), _digest(env.unwrapped.action_masks()), _jsonable(info)])
            if terminated or truncated:
                obs, info = env.reset()
                steps.append([_obs_digest(obs), _digest(env.unwrapped.action_masks()), _jsonable(info)])
        out[f"single/{key}"] = steps

        vec = gym.make_vec("MovieLensRec-v0", num_envs=N_ENVS,
                           vectorization_mode="vector_entry_point", split_data=split, mode=mode, **kwargs)
        rng = np.random.default_rng(seed)
        obs, info = vec.reset(seed=seed)
        steps = [[_obs_digest(obs), _digest(vec.action_masks()), _jsonable(info)]]
        for _ in range(VEC_STEPS):
            masks = vec.action_masks()
            actions = np.array([
                _pick(split, mode, int(u), int(p), masks[i], rng)
                for i, (u, p) in enumerate(zip(info["user"], info["prefix"]))
            ])
            obs, reward, terminated, truncated, info = vec.step(actions)
            steps.append([actions.tolist(), np.asarray(reward).tolist(), terminated.tolist(),
                          truncated.tolist(), _obs_digest(obs), _digest(vec.action_masks()),
                          _jsonable(info)])
        out[f"vector/{key}"] = steps
    return out


def test_replay_episodes_unchanged_bit_for_bit(ml100k_split: Split) -> None:
    """Seeded ML-100K replay episodes: the same observations, masks, rewards and infos as pinned."""
    pinned = json.loads(PINNED.read_text())
    now = json.loads(json.dumps(record(ml100k_split)))  # the same JSON round trip as the file
    assert now.keys() == pinned.keys()
    for key in pinned:
        for i, (a, b) in enumerate(zip(now[key], pinned[key])):
            assert a == b, f"{key}: step record {i} differs"
        assert len(now[key]) == len(pinned[key]), key
    # The pinned episodes do exercise likes, misses and episode ends.
    single = [s for key in pinned if key.startswith("single/") for s in pinned[key] if len(s) == 7]
    assert any(s[1] > 0 for s in single) and any(s[1] == 0 for s in single)
    assert any(s[2] for s in single) and any(s[3] for s in single)


if __name__ == "__main__":  # regenerate the pinned file (only for an intended change)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's recsim_env
    from recsim_env import load_movielens, split_ratings

    root = sys.argv[1] if len(sys.argv) > 1 else None
    split = split_ratings(load_movielens("ml-100k", root), "temporal", 0.8)
    PINNED.write_text(json.dumps(record(split), separators=(",", ":")) + "\n")
    print(f"wrote {PINNED}")
