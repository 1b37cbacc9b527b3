"""``agents.replay.CompactDictReplayBuffer``: the same samples as SB3's ``DictReplayBuffer`` in a
fraction of the memory, at any catalogue size."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents import make_agent
from agents.config import REPLAY_BUFFERS, make_config
from agents.replay import (
    REPLAY_BUFFER_CLASSES,
    CompactDictReplayBuffer,
    dict_replay_bytes_per_transition,
    replay_bytes_per_transition,
)
from experiments.bench_replay import ML32M_ITEMS, synthetic_split

th.set_num_threads(1)

def assert_same_samples(plain: DictReplayBuffer, compact: CompactDictReplayBuffer, batch: int, seeds=range(4)) -> None:
    """``sample`` of both buffers from the same random state: bit-identical tensors."""
    for seed in seeds:
        np.random.seed(seed)
        ours = compact.sample(batch)
        np.random.seed(seed)
        theirs = plain.sample(batch)
        for field in ("observations", "next_observations"):
            a, b = getattr(ours, field), getattr(theirs, field)
            assert list(a) == list(b)
            for key in b:
                assert a[key].dtype == b[key].dtype and th.equal(a[key], b[key]), (seed, field, key)
        for field in ("actions", "rewards", "dones"):
            a, b = getattr(ours, field), getattr(theirs, field)
            assert a.dtype == b.dtype and th.equal(a, b), (seed, field)


# Identical samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_items", [40, 600])
def test_sb3_collection_gives_the_same_samples_as_dict_replay_buffer(n_items):
    """SB3's own collection loop (terminal observations, timeouts, wrap-around) into both buffers.

    40 items: users rate most of the catalogue and like few items, so random actions often
    consume the last liked target (termination), and start states are dense (packed bases);
    600 items: sparse sets (item ids), every episode truncated.
    """
    dense = n_items == 40
    split = synthetic_split(n_users=10, n_items=n_items, per_user=30, like_share=0.1 if dense else 0.4)
    max_steps = 12 if dense else 6

    def model(buffer_class):
        env = DummyVecEnv([lambda: gym.make("MovieLensRec-v0", split_data=split, max_steps=max_steps)
                           for _ in range(3)])
        # No update before the budget ends: learn() only collects (uniform random actions, seeded).
        dqn = DQN("MultiInputPolicy", env, buffer_size=90, learning_starts=10**6, replay_buffer_class=buffer_class,
                  seed=1, device="cpu", policy_kwargs=dict(net_arch=[8]))
        dqn.learn(300)
        return dqn

    plain, compact = model(DictReplayBuffer).replay_buffer, model(CompactDictReplayBuffer).replay_buffer
    assert type(compact) is CompactDictReplayBuffer and compact.full and plain.full  # wrapped around
    truncated, terminated = plain.timeouts.sum(), (plain.dones * (1 - plain.timeouts)).sum()
    assert truncated >= 3 and (terminated >= 3 if dense else terminated == 0)
    assert_same_samples(plain, compact, batch=256)
    # Both kinds of chain were used: packed bases (dense start states) and logged item ids.
    stores = compact.bitsets.values()
    assert sum(s.live_bases for s in stores) > 0 and sum(s.live_positions for s in stores) > 0


def test_any_uint8_stream_is_stored_exactly():
    """Sets that grow, shrink (a violation of the episode rule), jump to dense, or start an episode
    as a superset of the last one: every sample equals SB3's, after every add."""
    n_items, n_envs = 100, 3
    n_bytes = (n_items + 7) // 8
    space = spaces.Dict({
        "user": spaces.Box(0, 5, (3,), np.int32),
        "history": spaces.Box(0, n_items, (4,), np.int32),
        "liked": spaces.Box(0, 255, (n_bytes,), np.uint8),
        "excluded": spaces.Box(0, 255, (n_bytes,), np.uint8),
    })  # fmt: skip
    action_space = spaces.Discrete(n_items)
    plain = DictReplayBuffer(21, space, action_space, "cpu", n_envs)
    compact = CompactDictReplayBuffer(21, space, action_space, "cpu", n_envs)
    rng = np.random.default_rng(0)

    def bits(p: float) -> np.ndarray:
        return np.packbits(rng.random((n_envs, n_items)) < p, axis=1, bitorder="little")

    state = {"user": rng.integers(0, 5, (n_envs, 3), dtype=np.int32),
             "history": rng.integers(0, n_items, (n_envs, 4), dtype=np.int32),
             "liked": bits(0.05), "excluded": bits(0.1)}
    for step in range(120):
        nxt = copy.deepcopy(state)
        nxt["history"] = rng.integers(0, n_items, (n_envs, 4), dtype=np.int32)
        for key in ("liked", "excluded"):
            nxt[key] |= bits(0.01)  # the usual step: a few new items
            shrink, jump = rng.random(n_envs) < 0.1, rng.random(n_envs) < 0.1
            nxt[key][shrink] = bits(0.3)[shrink]  # items lost
            nxt[key][jump] |= bits(0.6)[jump]  # more new items than a base costs
        done = rng.random(n_envs) < 0.15
        infos = [{"TimeLimit.truncated": bool(rng.random() < 0.5)} for _ in range(n_envs)]
        action, reward = rng.integers(0, n_items, n_envs), rng.random(n_envs).astype(np.float32)
        for buffer in (plain, compact):
            buffer.add(copy.deepcopy(state), copy.deepcopy(nxt), action, reward, done, infos)
        assert_same_samples(plain, compact, batch=32, seeds=[step])
        state = copy.deepcopy(nxt)
        for i in np.flatnonzero(done):  # the next episode: a superset, a sparse or a dense start
            for key in ("liked", "excluded"):
                state[key][i] = [state[key][i] | bits(0.01)[i], bits(0.02)[i], bits(0.5)[i]][rng.integers(3)]


def test_saved_and_loaded_buffer_samples_the_same(tmp_path):
    split = synthetic_split(n_users=6, n_items=300, per_user=30)
    env = DummyVecEnv([lambda: gym.make("MovieLensRec-v0", split_data=split, max_steps=5) for _ in range(2)])
    model = DQN("MultiInputPolicy", env, buffer_size=40, learning_starts=10**6, seed=0, device="cpu",
                replay_buffer_class=CompactDictReplayBuffer, policy_kwargs=dict(net_arch=[8]))
    model.learn(100)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    before = model.replay_buffer
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    assert model.replay_buffer is not before and model.replay_buffer.nbytes == before.nbytes
    np.random.seed(0)
    a = before.sample(64)
    np.random.seed(0)
    b = model.replay_buffer.sample(64)
    for key in a.observations:
        assert th.equal(a.observations[key], b.observations[key])
        assert th.equal(a.next_observations[key], b.next_observations[key])
    model.learn(40, reset_num_timesteps=False)  # and it keeps filling


# Training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["dqn", "qrdqn"])
def test_training_with_the_compact_buffer_ends_with_identical_weights(algo):
    split = synthetic_split(n_users=20, n_items=150, per_user=40)
    settings = dict(algo=algo, seed=2, n_envs=2, max_steps=6, embed_dim=8, dnn_hidden=(8,), net_arch=(16,),
                    learning_starts=40, batch_size=8, buffer_size=100, target_update_interval=50, next_item_batch=4,
                    pretrain_steps=4, **({"n_quantiles": 4} if algo == "qrdqn" else {}))
    models = {}
    for name in ("compact", "sb3"):  # each built and trained in turn: SB3 seeds the global generators
        models[name] = model = make_agent(split, replay_buffer=name, **settings)
        assert type(model.replay_buffer) is REPLAY_BUFFER_CLASSES[name]
        model.learn(300)  # 150 vector steps into a 50-row buffer: wraps around
    assert models["compact"].replay_buffer.full
    ours, theirs = models["compact"].policy.state_dict(), models["sb3"].policy.state_dict()
    for key in theirs:
        assert th.equal(ours[key], theirs[key]), key


def test_replay_buffer_setting():
    assert make_config("default").replay_buffer == "compact"
    assert tuple(REPLAY_BUFFER_CLASSES) == REPLAY_BUFFERS
    with pytest.raises(ValueError, match="replay_buffer='packed' is unknown; choose one of compact, sb3"):
        make_config("default", replay_buffer="packed")
    with pytest.raises(ValueError, match=r"does not take replay_buffer \(taken by dqn, qrdqn\)"):
        make_config("default", algo="ppo", replay_buffer="sb3")


def test_bad_settings_are_refused_with_the_fix():
    space = spaces.Dict({"history": spaces.Box(0, 9, (4,), np.int32), "liked": spaces.Box(0, 1, (9,), np.float32)})
    with pytest.raises(ValueError, match="'liked' must be a 1-D uint8 Box.*replay_buffer='sb3'"):
        CompactDictReplayBuffer(10, space, spaces.Discrete(9))
    ok = spaces.Dict({"liked": spaces.Box(0, 255, (2,), np.uint8), "excluded": spaces.Box(0, 255, (2,), np.uint8)})
    with pytest.raises(ValueError, match="optimize_memory_usage=True"):
        CompactDictReplayBuffer(10, ok, spaces.Discrete(9), optimize_memory_usage=True,
                                handle_timeout_termination=False)


# Memory --------------------------------------------------------------------------------------


def test_bytes_per_transition_at_ml32m_catalogue_is_under_2_kib():
    split = synthetic_split(n_users=8, n_items=ML32M_ITEMS, per_user=80)
    n_envs = 4
    env = DummyVecEnv([lambda: gym.make("MovieLensRec-v0", split_data=split, max_steps=10) for _ in range(n_envs)])
    buffer = CompactDictReplayBuffer(2_000, env.observation_space, env.action_space, "cpu", n_envs)
    plain = dict_replay_bytes_per_transition(env.observation_space, env.action_space)
    assert plain > 40_000  # SB3's DictReplayBuffer: two packed sets of 10,949 bytes, twice
    assert buffer.fixed_bytes_per_transition < 400
    rng = np.random.default_rng(0)
    env.seed(0)
    obs = env.reset()
    for _ in range(600):  # 2,400 transitions: 40 episodes per slot, the buffer wraps around
        actions = rng.integers(0, ML32M_ITEMS, n_envs)
        new_obs, rewards, dones, infos = env.step(actions)
        next_obs = copy.deepcopy(new_obs)
        for i in np.flatnonzero(dones):
            for key in next_obs:
                next_obs[key][i] = infos[i]["terminal_observation"][key]
        buffer.add(obs, next_obs, actions, rewards, dones, infos)
        obs = new_obs
    assert buffer.full
    assert buffer.bytes_per_transition <= 2_048
    assert buffer.bytes_per_transition == replay_bytes_per_transition(buffer) == buffer.nbytes / 2_000


def test_eviction_frees_item_logs_and_bases():
    """A long stream through a small buffer: memory stays what the stored transitions need."""
    n_items, n_envs, capacity = 200, 2, 20
    n_bytes = (n_items + 7) // 8
    space = spaces.Dict({"liked": spaces.Box(0, 255, (n_bytes,), np.uint8),
                         "excluded": spaces.Box(0, 255, (n_bytes,), np.uint8)})
    buffer = CompactDictReplayBuffer(capacity, space, spaces.Discrete(n_items), "cpu", n_envs)
    empty = buffer.nbytes
    rng = np.random.default_rng(0)

    def start() -> np.ndarray:  # half of the episodes start dense (a packed base), half sparse
        p = 0.5 if rng.random() < 0.5 else 0.02
        return np.packbits(rng.random(n_items) < p, bitorder="little")

    state = {key: np.stack([start() for _ in range(n_envs)]) for key in space}
    sizes = []
    for step in range(4_000):  # 400 times the capacity, an episode ending every 5 steps per slot
        nxt = {key: value.copy() for key, value in state.items()}
        for key in nxt:
            items = rng.integers(0, n_items, n_envs)
            nxt[key][np.arange(n_envs), items >> 3] |= (1 << (items & 7)).astype(np.uint8)
        done = rng.random(n_envs) < 0.2
        buffer.add(state, nxt, np.zeros(n_envs), np.zeros(n_envs), done, [{}] * n_envs)
        state = {key: value.copy() for key, value in nxt.items()}
        for key in state:
            for i in np.flatnonzero(done):
                state[key][i] = start()
        sizes.append(buffer.nbytes)
        if step % 500 == 499:
            for store in buffer.bitsets.values():
                # Exactly the bases the stored transitions (and the current chains) reference are kept.
                referenced = np.union1d(store.base[store.base >= 0], store.tip_base[store.tip_base >= 0])
                assert store.live_bases == referenced.size <= 2 * capacity + n_envs
    # Without eviction the logs and pools would grow with the stream; they stop at what 20 rows need.
    assert max(sizes) <= 2 * max(sizes[:400])
    buffer.reset()
    assert buffer.nbytes == empty and buffer.size() == 0
