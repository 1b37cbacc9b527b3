"""MultiHotObservation / MultiHotVectorObservation on the real ML-100K: encoding, spaces, SB3.

Every test drives the wrappers through the public API (``gym.make``, ``gym.make_vec``,
``recsim_env.MultiHotObservation``) and compares with the environment's own packed
observation, decoded independently (``recsim_env.unpack_bits``, the item tokens).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import recsim_env
from recsim_env import MultiHotObservation, MultiHotVectorObservation, Split, unpack_bits

REPO = Path(__file__).resolve().parents[1]
N_ITEMS = 1682  # ML-100K
USER_CARDS = (2, 7, 21)  # gender, age group, occupation


class Spy(gym.ObservationWrapper):
    """Keeps the last raw (packed) observation that passes through it."""

    def observation(self, observation):
        self.last = {k: v.copy() for k, v in observation.items()}
        return observation


def make(split: Split, **kwargs) -> gym.Env:
    return gym.make("MovieLensRec-v0", split_data=split, **kwargs)


def assert_encodes(wrapped: dict, raw: dict, n_items: int = N_ITEMS) -> None:
    """``wrapped`` is the multi-hot encoding of the packed observation ``raw`` (any batch axes)."""
    np.testing.assert_array_equal(wrapped["liked"], unpack_bits(raw["liked"], n_items))
    np.testing.assert_array_equal(wrapped["excluded"], unpack_bits(raw["excluded"], n_items))
    tokens = np.asarray(raw["history"]).reshape(-1, raw["history"].shape[-1])
    hist = np.asarray(wrapped["history"]).reshape(-1, n_items)
    for row, toks in zip(hist, tokens):
        assert set(np.flatnonzero(row).tolist()) == set((toks[toks > 0] - 1).tolist())
    user = np.asarray(wrapped["user"]).reshape(-1, sum(USER_CARDS))
    codes = np.asarray(raw["user"]).reshape(-1, len(USER_CARDS))
    assert (user.sum(axis=1) == len(USER_CARDS)).all()
    blocks = np.split(user, np.cumsum(USER_CARDS)[:-1], axis=1)
    for j, block in enumerate(blocks):
        assert (block.sum(axis=1) == 1).all()
        np.testing.assert_array_equal(block.argmax(axis=1), codes[:, j])


def test_spaces_dtypes_and_shapes(ml100k_split: Split) -> None:
    env = MultiHotObservation(make(ml100k_split))
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert list(space) == ["excluded", "history", "liked", "user"]
    expected = {"excluded": N_ITEMS, "history": N_ITEMS, "liked": N_ITEMS, "user": 30}
    for key, size in expected.items():
        box = space[key]
        assert box.shape == (size,) and box.dtype == np.uint8, key
        assert (box.low == 0).all() and (box.high == 1).all(), key
    assert env.n_items == env.unwrapped.n_items == N_ITEMS
    obs, _ = env.reset(seed=0)
    assert sum(v.nbytes for v in obs.values()) == 3 * N_ITEMS + 30 == 5076

    recency = MultiHotObservation(make(ml100k_split), history="recency")
    assert recency.observation_space["history"].dtype == np.float32
    assert recency.observation_space["liked"].dtype == np.uint8
    flat = MultiHotObservation(make(ml100k_split), flatten=True)
    assert flat.observation_space == gym.spaces.Box(0, 1, (5076,), np.uint8)
    assert flat.field_slices["user"] == slice(5046, 5076)


def test_fields_equal_the_decoded_packed_observation(ml100k_dir: Path) -> None:
    # Plain gym.make: the ml-100k default. Recommending the user's next train items gives
    # likes, so the history outgrows its 20-slot window; random allowed items give misses.
    spy = Spy(gym.make("MovieLensRec-v0"))
    env = MultiHotObservation(spy)
    base = env.unwrapped
    user = int(base.users[np.argmax([base.split.train_of(u)[0].size for u in base.users])])
    items, ratings = base.split.train_of(user)
    obs, _ = env.reset(seed=0, options={"user": user, "prefix": 5})
    rng = np.random.default_rng(0)
    never_rated = np.ones(N_ITEMS, bool)
    never_rated[items] = False  # recommending these is a sure miss
    n_liked = 0
    for t in range(41):
        assert env.observation_space.contains(obs)
        assert_encodes(obs, spy.last)
        mask = env.action_masks()
        np.testing.assert_array_equal(mask, base.action_masks())
        np.testing.assert_array_equal(mask, obs["excluded"] == 0)
        miss = rng.choice(np.flatnonzero(mask & never_rated))
        action = int(items[5 + t // 2]) if t % 2 == 0 else int(miss)
        obs, reward, terminated, truncated, info = env.step(action)
        n_liked += int(info["liked"])
        assert not (terminated or truncated)
    assert_encodes(obs, spy.last)
    assert n_liked == (ratings[5:26] >= 4).sum() > 15  # the history window moved on
    assert obs["history"].sum() == 20 < obs["liked"].sum() < obs["excluded"].sum()


def test_recency_history_weights(ml100k_split: Split) -> None:
    spy = Spy(make(ml100k_split))
    env = MultiHotObservation(spy, history="recency", recency_decay=0.5)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        tokens = spy.last["history"]
        expected = np.zeros(N_ITEMS, np.float32)
        for age, token in enumerate(tokens[::-1]):  # most recent last: age 0
            if token:
                expected[token - 1] = 0.5**age
        np.testing.assert_array_equal(obs["history"], expected)
        assert obs["history"][tokens[-1] - 1] == 1.0
        np.testing.assert_array_equal(obs["liked"], unpack_bits(spy.last["liked"], N_ITEMS))


def test_flatten_equals_gymnasium_flatten(ml100k_split: Split) -> None:
    dict_env = MultiHotObservation(make(ml100k_split))
    flat_env = MultiHotObservation(make(ml100k_split), flatten=True)
    chained = gym.wrappers.FlattenObservation(MultiHotObservation(make(ml100k_split)))
    assert flat_env.observation_space == chained.observation_space
    flat, _ = flat_env.reset(seed=3)
    obs, _ = dict_env.reset(seed=3)
    chained_obs, _ = chained.reset(seed=3)
    assert flat.dtype == np.uint8 and flat_env.observation_space.contains(flat)
    np.testing.assert_array_equal(flat, gym.spaces.flatten(dict_env.observation_space, obs))
    np.testing.assert_array_equal(flat, chained_obs)
    for key, part in flat_env.field_slices.items():
        np.testing.assert_array_equal(flat[part], obs[key])


def test_batched_and_vector_observations_match_single(ml100k_split: Split) -> None:
    single = MultiHotObservation(make(ml100k_split, mode="test"))
    users = single.unwrapped.users[:6]
    batch = single.observation(single.unwrapped.start_observations(users))
    for i, u in enumerate(users):
        obs, _ = single.reset(options={"user": int(u)})
        for key in obs:
            np.testing.assert_array_equal(batch[key][i], obs[key], err_msg=key)

    n = 4
    envs = MultiHotVectorObservation(
        gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="vector_entry_point",
                     split_data=ml100k_split)
    )  # fmt: skip
    single_space = MultiHotObservation(make(ml100k_split)).observation_space
    assert envs.single_observation_space == single_space
    assert envs.call("observation_space")[0] == envs.single_observation_space
    singles = [MultiHotObservation(make(ml100k_split)) for _ in range(n)]
    vobs, _ = envs.reset(seed=10)
    sobs = [e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]
    rng = np.random.default_rng(1)
    for _ in range(4):
        assert envs.observation_space.contains(vobs)
        masks = envs.action_masks()
        assert masks.shape == (n, N_ITEMS)
        for i in range(n):
            for key in vobs:
                np.testing.assert_array_equal(vobs[key][i], sobs[i][key], err_msg=key)
            np.testing.assert_array_equal(masks[i], singles[i].action_masks())
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        vobs, _, term, trunc, _ = envs.step(actions)
        sobs = [e.step(int(a))[0] for e, a in zip(singles, actions)]
        assert not (term.any() or trunc.any())

    # Wrapping the sub-envs of a SyncVectorEnv instead gives the same spaces and observations.
    sync = gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="sync",
                        wrappers=[MultiHotObservation], split_data=ml100k_split)  # fmt: skip
    flat = MultiHotVectorObservation(
        gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     split_data=ml100k_split), flatten=True,
    )  # fmt: skip
    assert sync.single_observation_space == envs.single_observation_space
    sync_obs, _ = sync.reset(seed=10)
    flat_obs, _ = flat.reset(seed=10)
    assert flat_obs.shape == (2, 5076) and flat.observation_space.contains(flat_obs)
    for i in range(2):
        for key in sync_obs:
            np.testing.assert_array_equal(sync_obs[key][i], singles[i].reset(seed=10 + i)[0][key])
            np.testing.assert_array_equal(flat_obs[i, flat.field_slices[key]], sync_obs[key][i])


def test_reset_seed_is_deterministic(ml100k_split: Split) -> None:
    a = MultiHotObservation(make(ml100k_split), history="recency")
    b = MultiHotObservation(make(ml100k_split), history="recency")
    first, _ = a.reset(seed=42)
    for env in (a, b):
        obs, _ = env.reset(seed=42)
        for key in obs:
            np.testing.assert_array_equal(obs[key], first[key])
    rng = np.random.default_rng(0)
    for _ in range(10):
        action = int(rng.choice(np.flatnonzero(a.action_masks())))
        oa, ra, *_ = a.step(action)
        ob, rb, *_ = b.step(action)
        assert ra == rb
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key])
    other, _ = a.reset(seed=43)
    assert any((other[k] != first[k]).any() for k in first)


def test_gymnasium_and_sb3_checkers_pass(ml100k_split: Split) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for kwargs in ({}, {"flatten": True}, {"history": "recency"}):
        env = MultiHotObservation(make(ml100k_split), **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gym_check_env(env, skip_render_check=True)
            sb3_check_env(env, warn=True)
        messages = [str(w.message) for w in caught]
        # The only complaint: checking a wrapped environment, which is the point here.
        assert all("different from the unwrapped version" in m for m in messages), messages
        remade = gym.make(env.spec)  # the wrapper is recorded in the spec
        assert isinstance(remade, MultiHotObservation)
        assert remade.observation_space == env.observation_space


def test_action_masks_through_wrapper_chains(ml100k_split: Split) -> None:
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.vec_env import DummyVecEnv

    def chain() -> gym.Env:
        inner = gym.wrappers.TimeLimit(make(ml100k_split), max_episode_steps=50)
        return gym.wrappers.RecordEpisodeStatistics(MultiHotObservation(inner))

    env = chain()
    obs, _ = env.reset(seed=5)
    env.step(int(np.flatnonzero(env.get_wrapper_attr("action_masks")())[0]))
    mask = env.get_wrapper_attr("action_masks")()
    np.testing.assert_array_equal(mask, env.unwrapped.action_masks())
    assert is_masking_supported(env)
    np.testing.assert_array_equal(get_action_masks(env), mask)

    venv = DummyVecEnv([chain, chain])
    venv.seed(5)
    venv.reset()
    assert is_masking_supported(venv)
    masks = get_action_masks(venv)
    assert masks.shape == (2, N_ITEMS)
    for i, e in enumerate(venv.envs):
        np.testing.assert_array_equal(masks[i], e.unwrapped.action_masks())

    slate = MultiHotObservation(make(ml100k_split, slate_size=3))
    obs, _ = slate.reset(seed=0)
    np.testing.assert_array_equal(slate.action_masks(), np.tile(obs["excluded"] == 0, 3))


def test_sb3_stores_bytes_and_feeds_exact_zero_one(ml100k_split: Split) -> None:
    import torch as th
    from stable_baselines3.common.buffers import DictReplayBuffer
    from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs

    env = MultiHotObservation(make(ml100k_split))
    obs, _ = env.reset(seed=0)
    batch = {k: th.as_tensor(v[None]) for k, v in obs.items()}
    features = preprocess_obs(batch, env.observation_space)
    for key, value in features.items():
        assert not is_image_space(env.observation_space[key])
        assert value.dtype == th.float32
        np.testing.assert_array_equal(value[0].numpy(), obs[key].astype(np.float32))  # no / 255

    def bytes_per_transition(e: gym.Env) -> float:
        buf = DictReplayBuffer(8, e.observation_space, e.action_space, device="cpu")
        arrays = [*buf.observations.values(), *buf.next_observations.values(), buf.actions,
                  buf.rewards, buf.dones, buf.timeouts]  # fmt: skip
        return sum(a.nbytes for a in arrays) / buf.buffer_size

    assert bytes_per_transition(env) == 6 * N_ITEMS + 80 == 10_172
    assert bytes_per_transition(make(ml100k_split)) == 1048  # unwrapped, for comparison


def test_ppo_and_maskable_ppo_learn(ml100k_split: Split) -> None:
    import torch as th
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    th.set_num_threads(1)
    kwargs = dict(n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu",
                  policy_kwargs=dict(net_arch=[32]))  # fmt: skip
    venv = make_vec_env("MovieLensRec-v0", n_envs=2, seed=0, wrapper_class=MultiHotObservation,
                        env_kwargs=dict(split_data=ml100k_split))  # fmt: skip
    model = PPO("MultiInputPolicy", venv, **kwargs).learn(256)
    assert model.num_timesteps == 256
    assert model.policy.features_extractor.features_dim == 3 * N_ITEMS + 30

    venv = make_vec_env("MovieLensRec-v0", n_envs=2, seed=0, wrapper_class=MultiHotObservation,
                        env_kwargs=dict(split_data=ml100k_split))  # fmt: skip
    model = MaskablePPO("MultiInputPolicy", venv, **kwargs).learn(256)
    assert model.num_timesteps == 256
    obs = venv.reset()
    masks = get_action_masks(venv)
    actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
    assert masks[np.arange(2), actions].all()


def test_invalid_arguments_and_torch_free_import(ml100k_split: Split) -> None:
    env = make(ml100k_split)
    with pytest.raises(ValueError, match="history must be one of"):
        MultiHotObservation(env, history="tokens")
    with pytest.raises(ValueError, match="recency_decay"):
        MultiHotObservation(env, history="recency", recency_decay=0.0)
    with pytest.raises(ValueError, match="Dict observation space of MovieLensRec-v0"):
        MultiHotObservation(gym.wrappers.FlattenObservation(env))
    vec = gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="vector_entry_point",
                       split_data=ml100k_split)  # fmt: skip
    with pytest.raises(TypeError, match="MultiHotVectorObservation"):
        MultiHotObservation(vec)
    assert recsim_env.MultiHotObservation is MultiHotObservation
    subprocess.run(
        [sys.executable, "-c",
         "import sys, recsim_env; recsim_env.MultiHotObservation; "
         "recsim_env.MultiHotVectorObservation; assert 'torch' not in sys.modules"],
        cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
