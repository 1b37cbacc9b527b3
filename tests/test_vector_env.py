"""MovieLensRecVectorEnv: same episodes as the single environment, batched; autoreset; errors."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from test_env import TINY_ITEMS, assert_obs_equal, make_split  # the hand-made dataset builder

from recsim_env import MovieLensRecEnv, MovieLensRecVectorEnv, Split, unpack_bits

TINY_TRAIN = {
    0: [(0, 5), (1, 2), (2, 4), (3, 1), (4, 5)],
    1: [(1, 4), (2, 3)],
    2: [(3, 3), (5, 4)],
    3: [(6, 4), (7, 5), (2, 5), (0, 1), (5, 4)],
}
TINY_TEST = {0: [(5, 4), (6, 2)], 1: [(7, 1)], 2: [(0, 5)], 3: [(1, 5), (4, 4)]}


@pytest.fixture(scope="module")
def tiny() -> Split:
    return make_split(TINY_TRAIN, TINY_TEST, TINY_ITEMS)


def assert_info_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)  # SyncVectorEnv's order too: each key, then its "_key" mask
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def oracle_actions(split: Split, info: dict, rng: np.random.Generator, mode: str) -> np.ndarray:
    """Half the time a liked item of the user's episode targets (so likes and terminations happen)."""
    actions = rng.integers(0, split.n_items, size=len(info["user"]))
    for i, (user, prefix) in enumerate(zip(info["user"], info["prefix"])):
        items, ratings = split.train_of(user) if mode == "train" else split.test_of(user)
        if mode == "train":
            items, ratings = items[prefix:], ratings[prefix:]
        liked = items[ratings >= 4]
        if liked.size and rng.random() < 0.5:
            actions[i] = rng.choice(liked)
    return actions


@pytest.mark.parametrize("batch_reset_rows", [1, 10**9], ids=["batched-resets", "row-resets"])
@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("data", ["tiny", "ml-100k"])
def test_vector_matches_single_envs(
    data: str, mode: str, batch_reset_rows: int, tiny: Split, request: pytest.FixtureRequest
) -> None:
    """Sub-env i seeded with seed + i = a single env seeded with seed + i, autoresets included,
    whether the auto-resets are written row by row or batched."""
    split = tiny if data == "tiny" else request.getfixturevalue("ml100k_split")
    n, seed = 5, 11
    kwargs = {"split_data": split, "mode": mode, "max_steps": 6, "history_len": 4}
    vec = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    vec.unwrapped.simulator.batch_reset_rows = batch_reset_rows
    sync = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="sync", **kwargs)
    assert vec.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs_v, info_v = vec.reset(seed=seed)
    obs_s, info_s = sync.reset(seed=seed)
    assert_obs_equal(obs_v, obs_s)
    assert_info_equal(info_v, info_s)
    rng = np.random.default_rng(0)
    n_likes = n_terminated = n_truncated = 0
    for _ in range(60):
        np.testing.assert_array_equal(vec.action_masks(), np.stack(sync.call("action_masks")))
        # The mask is a function of the observation, autoresets included.
        np.testing.assert_array_equal(vec.action_masks(), ~unpack_bits(obs_v["excluded"], split.n_items))
        actions = oracle_actions(split, info_v, rng, mode)
        obs_v, reward_v, term_v, trunc_v, info_v = vec.step(actions)
        obs_s, reward_s, term_s, trunc_s, info_s = sync.step(actions)
        assert_obs_equal(obs_v, obs_s)
        np.testing.assert_array_equal(reward_v, reward_s)
        np.testing.assert_array_equal(term_v, term_s)
        np.testing.assert_array_equal(trunc_v, trunc_s)
        assert_info_equal(info_v, info_s)
        n_likes += int(info_v["liked"].sum())
        n_terminated += int(term_v.sum())
        n_truncated += int(trunc_v.sum())
    assert n_likes > 0 and n_terminated > 0 and n_truncated > 0  # every path was exercised
    if mode == "test":  # nothing that depends on the targets
        assert {k for k in info_v if not k.startswith("_")} == {"user", "prefix", "liked"}


def test_sub_env_follows_single_env_seed(tiny: Split) -> None:
    vec = MovieLensRecVectorEnv(3, split_data=tiny)
    for seed_arg, seeds in ((5, [5, 6, 7]), ([9, 2, 4], [9, 2, 4])):
        _, first = vec.reset(seed=seed_arg)
        _, again = vec.reset()  # no seed: each generator continues
        for i, seed in enumerate(seeds):
            single = MovieLensRecEnv(split_data=tiny)
            for vec_info, (_, info) in ((first, single.reset(seed=seed)), (again, single.reset())):
                assert (vec_info["user"][i], vec_info["prefix"][i]) == (info["user"], info["prefix"])


def test_reset_options_users_and_prefixes(tiny: Split) -> None:
    vec = MovieLensRecVectorEnv(3, split_data=tiny, history_len=3)
    obs, info = vec.reset(options={"user": [0, 3, 0], "prefix": [4, 2, 1]})
    assert info["user"].tolist() == [0, 3, 0] and info["prefix"].tolist() == [4, 2, 1]
    assert obs["history"].tolist() == [[2, 3, 4], [0, 7, 8], [0, 0, 1]]
    with pytest.raises(ValueError, match="cannot start"):
        vec.reset(options={"user": [0, 1, 0]})
    with pytest.raises(ValueError, match="one value per sub-env"):
        vec.reset(options={"user": [0, 3]})
    with pytest.raises(ValueError, match=r"unknown reset options \['users'\]; allowed keys: 'user', 'prefix'"):
        vec.reset(options={"users": [0, 3, 0]})
    with pytest.raises(ValueError, match=r"\[\"user\"\]=99999 is out of range: user indices are 0\.\.3"):
        vec.reset(options={"user": [0, 99999, 0]})


def test_vector_step_semantics_and_fresh_observations(tiny: Split) -> None:
    vec = MovieLensRecVectorEnv(2, split_data=tiny, history_len=4)
    obs0, _ = vec.reset(options={"user": [0, 0], "prefix": [2, 2]})  # targets 2(4), 3(1), 4(5)
    obs1, reward, term, trunc, info = vec.step(np.array([2, 7]))
    assert reward.tolist() == pytest.approx([0.8, 0.0])
    assert info["liked"].tolist() == [True, False] and info["rating"].tolist() == [4, 0]
    assert obs1["history"].tolist() == [[0, 1, 2, 3], [0, 0, 1, 2]]
    assert obs0["history"].tolist() == [[0, 0, 1, 2], [0, 0, 1, 2]]  # not mutated
    masks = vec.action_masks()
    assert np.flatnonzero(~masks[0]).tolist() == [0, 1, 2]
    assert np.flatnonzero(~masks[1]).tolist() == [0, 1, 7]
    _, _, term, _, _ = vec.step(np.array([4, 3]))
    assert term.tolist() == [True, False]
    obs, reward, term, trunc, info = vec.step(np.array([4, 4]))  # sub-env 0 autoresets
    assert reward[0] == 0.0 and not term[0] and not trunc[0] and info["rating"][0] == 0
    assert reward[1] == pytest.approx(1.0)


def test_make_vec_with_real_data(ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIELENS_DATA", str(ml100k_dir))
    envs = gym.make_vec("MovieLensRec-v0", num_envs=64, vectorization_mode="vector_entry_point")
    assert isinstance(envs.unwrapped, MovieLensRecVectorEnv)
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    assert obs["history"].shape == (64, 20) and obs["liked"].shape == (64, 211)
    assert obs["excluded"].shape == (64, 211)
    assert envs.action_masks().shape == (64, 1682)
    for _ in range(60):  # past max_steps=50: every sub-env truncates and autoresets
        obs, reward, term, trunc, info = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs) and reward.dtype == np.float64
        np.testing.assert_array_equal(envs.action_masks(), ~unpack_bits(obs["excluded"], 1682))
    assert len(set(info["user"].tolist())) > 1


def test_vector_errors(tiny: Split) -> None:
    with pytest.raises(ValueError, match="num_envs"):
        MovieLensRecVectorEnv(0, split_data=tiny)
    vec = MovieLensRecVectorEnv(2, split_data=tiny)
    with pytest.raises(ResetNeeded):
        vec.step(np.array([0, 0]))
    vec.reset(seed=0)
    bad_actions = ([0, 0, 0], [0.0, 1.0], [-1, 0], [0, TINY_ITEMS])
    for bad in map(np.array, bad_actions):
        with pytest.raises(ValueError, match=rf"\[0, {TINY_ITEMS - 1}\]"):
            vec.step(bad)
    with pytest.raises(ValueError, match="seed"):
        vec.reset(seed=[1, 2, 3])


def test_call_get_attr_set_attr_agree_with_sync_vector_env(tiny: Split) -> None:
    n, seed = 3, 4
    kwargs = {"split_data": tiny, "max_steps": 4, "history_len": 3}
    vec = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="sync", **kwargs)
    info_v = vec.reset(seed=seed)[1]
    sync.reset(seed=seed)
    rng = np.random.default_rng(1)
    for _ in range(12):  # through terminations, truncations and autoresets
        masks_v, masks_s = vec.call("action_masks"), sync.call("action_masks")
        assert isinstance(masks_v, tuple) and len(masks_v) == n
        for mv, ms in zip(masks_v, masks_s):
            assert mv.shape == (TINY_ITEMS,) and mv.dtype == bool
            np.testing.assert_array_equal(mv, ms)
        actions = oracle_actions(tiny, info_v, rng, "train")
        info_v = vec.step(actions)[4]
        sync.step(actions)

    for name in ("mode", "users", "max_prefixes", "n_items", "history_len", "like_threshold",
                 "reward_map", "max_steps", "render_mode", "split"):  # fmt: skip
        got, want = vec.get_attr(name), sync.get_attr(name)
        assert isinstance(got, tuple) and len(got) == n, name
        for g, w in zip(got, want):
            if isinstance(w, np.ndarray):
                np.testing.assert_array_equal(g, w, err_msg=name)
            else:
                assert g is w or g == w, name
    assert vec.get_attr("action_space") == sync.get_attr("action_space")
    assert vec.get_attr("observation_space") == sync.get_attr("observation_space")
    # Each sub-env's generator is where the single env's generator is after the same resets.
    states = [r.bit_generator.state for r in vec.get_attr("np_random")]
    assert states == [r.bit_generator.state for r in sync.get_attr("np_random")]
    assert len({str(state) for state in states}) == n

    users = np.array([0, 3])
    for obs_v, obs_s in zip(vec.call("start_observations", users), sync.call("start_observations", users)):
        assert_obs_equal(obs_v, obs_s)
    first, second = vec.call("start_observations", users)[:2]
    assert first["history"] is not second["history"]  # one independent result per sub-env
    with pytest.warns(UserWarning, match="without a render mode"):
        assert vec.call("render") == sync.call("render") == (None,) * n

    # Fresh generators set on both: the next resets (no seed) draw the same users.
    vec.set_attr("np_random", [np.random.default_rng(s) for s in (7, 8, 9)])
    sync.set_attr("np_random", [np.random.default_rng(s) for s in (7, 8, 9)])
    assert_info_equal(vec.reset()[1], sync.reset()[1])
    shared = np.random.default_rng(5)
    vec.set_attr("np_random", shared)  # one generator for all, as SyncVectorEnv allows
    assert all(r is shared for r in vec.get_attr("np_random"))

    with pytest.raises(AttributeError, match="cannot set 'max_steps'.*gym.make_vec"):
        vec.set_attr("max_steps", 10)
    with pytest.raises(AttributeError, match="cannot set 'users'"):
        vec.set_attr("users", [np.array([0])] * n)
    with pytest.raises(AttributeError, match="no settable attribute 'speed'"):
        vec.set_attr("speed", 1)
    with pytest.raises(ValueError, match="length equal to the number of environments"):
        vec.set_attr("np_random", [np.random.default_rng(0)])
    with pytest.raises(ValueError, match="Generator"):
        vec.set_attr("np_random", [0, 1, 2])
    with pytest.raises(AttributeError, match="no method or attribute 'step_all'.*action_masks"):
        vec.call("step_all")
    with pytest.raises(AttributeError):
        sync.call("step_all")  # the same kind of error


def test_vector_render_rgb_array_matches_sync(tiny: Split) -> None:
    """render() gives one frame per sub-env, equal to the single environments' frames."""
    n = 3
    kwargs = {"split_data": tiny, "max_steps": 5, "history_len": 4, "render_mode": "rgb_array"}
    vec = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="sync", **kwargs)
    assert "rgb_array" in vec.metadata["render_modes"]
    with pytest.raises(ResetNeeded):
        vec.render()
    info = vec.reset(seed=2)[1]
    sync.reset(seed=2)
    rng = np.random.default_rng(3)
    n_done = 0
    for _ in range(15):  # through autoresets: a restarted sub-env's picture starts clean
        frames_v, frames_s = vec.render(), sync.render()
        assert isinstance(frames_v, tuple) and len(frames_v) == n
        for fv, fs in zip(frames_v, frames_s):
            assert fv.dtype == np.uint8 and fv.shape == (5 * 16, 400, 3)
            np.testing.assert_array_equal(fv, fs)
        for fv, fs in zip(vec.call("render"), frames_s):
            np.testing.assert_array_equal(fv, fs)
        actions = oracle_actions(tiny, info, rng, "train")
        _, _, term, trunc, info = vec.step(actions)
        sync.step(actions)
        n_done += int(term.sum() + trunc.sum())
    assert n_done > 0


def test_vector_render_ansi(tiny: Split) -> None:
    vec = MovieLensRecVectorEnv(2, split_data=tiny, render_mode="ansi")
    vec.reset(options={"user": [0, 2]})
    vec.step(np.array([1, 0]))
    texts = vec.render()
    assert len(texts) == 2
    assert 'recommended item 1 "Movie 1 (1999)"' in texts[0] and "raw id 102" in texts[1]
