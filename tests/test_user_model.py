"""The learned user model (``user_model="ease"``): rules, determinism, no test leakage, settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from test_env import make_split  # the hand-made dataset builder

from recsim_env import Split, unpack_bits
from recsim_env.user_model import fit_like_model, load_like_model, train_signature

N_USERS, N_ITEMS = 90, 40


def synthetic_split(seed: int = 0) -> Split:
    """90 users with 12..30 ratings each over 40 items of skewed popularity and quality."""
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(N_ITEMS, 0.5))
    quality = rng.normal(0, 1, N_ITEMS)
    train, test = {}, {}
    for u in range(N_USERS):
        n = int(rng.integers(12, 31))
        items = rng.choice(N_ITEMS, size=n, replace=False, p=popularity)
        ratings = np.clip(np.rint(3.4 + quality[items] + rng.normal(0, 1, n)), 1, 5).astype(int)
        pairs = list(zip(items.tolist(), ratings.tolist()))
        cut = int(round(0.8 * n))
        train[u], test[u] = pairs[:cut], pairs[cut:]
    return make_split(train, test, N_ITEMS)


@pytest.fixture(scope="module")
def synth() -> Split:
    return synthetic_split()


def tampered(split: Split) -> Split:
    """The same train part; a test part with other items (the last half dropped) and ratings."""
    indptr = np.asarray(split.test_indptr)
    keep = np.zeros(indptr[-1], dtype=bool)
    for u in range(split.n_users):
        lo, hi = indptr[u], indptr[u + 1]
        keep[lo : lo + (hi - lo + 1) // 2] = True
    owner = np.repeat(np.arange(split.n_users), np.diff(indptr))[keep]
    new_indptr = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=split.n_users))))
    return dataclasses.replace(
        split,
        test_indptr=new_indptr,
        test_items=split.test_items[keep],
        test_ratings=(6 - split.test_ratings[keep]).astype(np.int8),  # likes become dislikes
        test_timestamps=split.test_timestamps[keep],
    )


def rollout(env: gym.Env, seed: int, n_steps: int) -> list:
    """Seeded episodes of a fixed mixed policy: first allowed item by index, or a random one."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    record = [(obs, info)]
    for _ in range(n_steps):
        mask = env.unwrapped.action_masks()
        action = int(mask.argmax()) if rng.random() < 0.5 else int(rng.integers(mask.size))
        obs, reward, terminated, truncated, info = env.step(action)
        record.append((action, obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset()
            record.append((obs, info))
    return record


def assert_records_equal(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_equal(x, y)


# ------------------------------------------------------------------------------ the fit


def test_fit_is_deterministic_and_cached(synth: Split, tmp_path: Path) -> None:
    first, second = fit_like_model(synth), fit_like_model(synth)
    for field in ("b_all", "b_like", "link", "clip", "user_five", "item_five"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field), err_msg=field)
    assert first.link[1] > 0 and first.link[2] > 0  # P(like) grows with both state scores
    cached = load_like_model(synth, cache_dir=tmp_path)
    files = sorted((tmp_path / "user_models").iterdir())
    assert [f.suffix for f in files] == [".npz"]
    again = load_like_model(synth, cache_dir=tmp_path)  # read back, not refitted
    np.testing.assert_array_equal(again.b_all, first.b_all)
    np.testing.assert_array_equal(cached.link, again.link)
    assert again.five_logit == first.five_logit
    load_like_model(synth, l2=50.0, cache_dir=tmp_path)  # another setting, another file
    assert len(list((tmp_path / "user_models").iterdir())) == 2


def test_fit_reads_the_train_part_only(synth: Split) -> None:
    other = tampered(synth)
    assert train_signature(other, 4, None) == train_signature(synth, 4, None)
    a, b = fit_like_model(synth), fit_like_model(other)
    np.testing.assert_array_equal(a.b_all, b.b_all)
    np.testing.assert_array_equal(a.link, b.link)
    # ...while a different train part does change the key.
    assert train_signature(synthetic_split(1), 4, None) != train_signature(synth, 4, None)


@pytest.mark.parametrize("mode", ["test", "train"])
def test_tampered_test_part_gives_identical_episodes(synth: Split, mode: str) -> None:
    """Rewards, observations and infos never depend on the test part under the user model."""
    kwargs = {"mode": mode, "user_model": "ease", "max_steps": 8}
    env = gym.make("MovieLensRec-v0", split_data=synth, **kwargs)
    other = gym.make("MovieLensRec-v0", split_data=tampered(synth), **kwargs)
    np.testing.assert_array_equal(env.unwrapped.users, other.unwrapped.users)
    a, b = rollout(env, 3, 150), rollout(other, 3, 150)
    assert_records_equal(a, b)
    assert sum(r[2] for r in a if len(r) == 6) > 0  # likes happened
    # Replay, by contrast, does depend on it (its test targets are the test part).
    replay = [rollout(gym.make("MovieLensRec-v0", split_data=s, mode="test"), 3, 150)
              for s in (synth, tampered(synth))]
    assert [r[2] for r in replay[0] if len(r) == 6] != [r[2] for r in replay[1] if len(r) == 6]


# ------------------------------------------------------------------------------ the episode rules


def test_user_model_episode_rules(synth: Split) -> None:
    env = gym.make("MovieLensRec-v0", split_data=synth, mode="test", user_model="ease",
                   user_model_kwargs={"leave_rate": 0.0}, max_steps=30)
    sim = env.unwrapped.simulator
    assert env.unwrapped.user_model == "ease"
    assert np.array_equal(env.unwrapped.users, np.arange(N_USERS))  # every user can start
    obs, info = env.reset(seed=1, options={"user": 4})
    assert set(info) == {"user", "prefix", "rating", "liked", "like_probability", "misses"}
    excluded = unpack_bits(obs["excluded"], N_ITEMS)
    expected = sim.model.like_probabilities(excluded[None], unpack_bits(obs["liked"], N_ITEMS)[None])[0]
    # A consumed item is never liked.
    item = int(np.flatnonzero(excluded)[0])
    obs, reward, terminated, truncated, info = env.step(item)
    assert (reward, info["liked"], info["like_probability"], info["misses"]) == (0.0, False, 0.0, 1)
    likes = steps = 0
    best = int(np.where(excluded, -1.0, expected).argmax())
    for action in [best, *np.argsort(-expected).tolist()]:
        before = obs
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        p_now = info["like_probability"]
        if action == best and steps == 1:
            assert p_now == pytest.approx(expected[best])  # the env uses the model's probability
        if info["liked"]:
            likes += 1
            assert info["rating"] in (4, 5) and reward == info["rating"] / 5 and info["misses"] == 0
            assert obs["history"][-1] == action + 1 and unpack_bits(obs["liked"], N_ITEMS)[action]
        else:
            assert reward == 0.0 and info["rating"] == 0
            np.testing.assert_array_equal(obs["history"], before["history"])
        assert unpack_bits(obs["excluded"], N_ITEMS)[action]  # no repeats
        np.testing.assert_array_equal(env.unwrapped.action_masks(), ~unpack_bits(obs["excluded"], N_ITEMS))
        assert not terminated  # leave_rate 0: the user never leaves
        if truncated:
            break
    assert likes > 0 and truncated and info["misses"] >= 0


def test_leave_rate_one_ends_the_episode_at_the_first_miss(synth: Split) -> None:
    env = gym.make("MovieLensRec-v0", split_data=synth, mode="test", user_model="ease",
                   user_model_kwargs={"leave_rate": 1.0})
    obs, _ = env.reset(seed=0)
    item = int(np.flatnonzero(unpack_bits(obs["excluded"], N_ITEMS))[0])  # never liked
    _, reward, terminated, truncated, info = env.step(item)
    assert terminated and not truncated and reward == 0.0 and info["misses"] == 1


def test_same_seed_same_episodes_and_other_seeds_differ(synth: Split) -> None:
    make = lambda: gym.make("MovieLensRec-v0", split_data=synth, user_model="ease", max_steps=10)  # noqa: E731
    assert_records_equal(rollout(make(), 5, 120), rollout(make(), 5, 120))
    a, b = rollout(make(), 5, 120), rollout(make(), 6, 120)
    assert [r[2] for r in a if len(r) == 6] != [r[2] for r in b if len(r) == 6]


@pytest.mark.parametrize("mode", ["train", "test"])
def test_vector_env_matches_sync_vector_env_under_the_user_model(synth: Split, mode: str) -> None:
    n, seed = 5, 11
    kwargs = {"split_data": synth, "mode": mode, "max_steps": 6, "history_len": 4,
              "user_model": "ease", "user_model_kwargs": {"leave_rate": 0.2}}
    vec = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="sync", **kwargs)
    obs_v, info_v = vec.reset(seed=seed)
    obs_s, info_s = sync.reset(seed=seed)
    rng = np.random.default_rng(0)
    likes = terminated = truncated = 0
    for _ in range(80):
        np.testing.assert_equal((obs_v, info_v), (obs_s, info_s))
        np.testing.assert_array_equal(vec.action_masks(), np.stack(sync.call("action_masks")))
        # Mostly the best-scored allowed items (likes happen), sometimes anything (repeats).
        masks = vec.action_masks()
        actions = np.where(rng.random(n) < 0.8, masks.argmax(axis=1), rng.integers(0, N_ITEMS, n))
        obs_v, reward_v, term_v, trunc_v, info_v = vec.step(actions)
        obs_s, reward_s, term_s, trunc_s, info_s = sync.step(actions)
        np.testing.assert_array_equal(reward_v, reward_s)
        np.testing.assert_array_equal(term_v, term_s)
        np.testing.assert_array_equal(trunc_v, trunc_s)
        likes += int(info_v["liked"].sum())
        terminated += int(term_v.sum())
        truncated += int(trunc_v.sum())
    np.testing.assert_equal((obs_v, info_v), (obs_s, info_s))
    assert likes > 0 and terminated > 0 and truncated > 0  # every path was exercised


def test_user_model_on_real_data_and_its_cache(ml100k_split: Split) -> None:
    """ML-100K: the fit is cached (a second env loads it), probabilities are sane."""
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split, mode="test", user_model="ease")
    again = gym.make("MovieLensRec-v0", split_data=ml100k_split, mode="test", user_model="ease")
    model = env.unwrapped.simulator.model
    np.testing.assert_array_equal(model.b_all, again.unwrapped.simulator.model.b_all)
    users = env.unwrapped.users[:100]
    obs = env.unwrapped.start_observations(users)
    p = model.like_probabilities(unpack_bits(obs["excluded"], model.n_items),
                                 unpack_bits(obs["liked"], model.n_items))
    assert np.all((p >= 0) & (p < 1)) and 0.05 < p.max(axis=1).mean() < 0.6
    # Users' own (held-out) test likes get far higher probabilities than unrated items.
    rated = np.zeros_like(p, dtype=bool)
    liked = np.zeros_like(p, dtype=bool)
    for row, u in enumerate(users):
        items, ratings = ml100k_split.test_of(int(u))
        rated[row, items] = True
        liked[row, items[ratings >= 4]] = True
    unrated = ~rated & (p > 0)
    assert p[liked].mean() > 5 * p[unrated].mean()


# ------------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user_model": "mf"}, "user_model must be one of"),
        ({"user_model": "replay", "user_model_kwargs": {"leave_rate": 0.1}}, "replay user has none"),
        ({"user_model": "ease", "user_model_kwargs": {"lambda": 5}}, "unknown user_model_kwargs"),
        ({"user_model": "ease", "user_model_kwargs": {"l2": 0}}, r"l2'\] must be a number > 0"),
        ({"user_model": "ease", "user_model_kwargs": {"l2": float("nan")}}, "must be a number > 0"),
        ({"user_model": "ease", "user_model_kwargs": {"leave_rate": 1.5}}, r"in \[0, 1\]"),
        ({"user_model": "ease", "user_model_kwargs": {"leave_rate": True}}, r"in \[0, 1\]"),
        ({"user_model": "ease", "user_model_kwargs": [("l2", 5)]}, "must be a dict"),
    ],
)
def test_bad_user_model_settings_are_clear_errors(synth: Split, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("MovieLensRec-v0", split_data=synth, **kwargs)
    with pytest.raises(ValueError, match=match):
        gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     split_data=synth, **kwargs)


def test_user_model_env_passes_the_gymnasium_and_sb3_checkers(synth: Split) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for mode in ("train", "test"):
        env = gym.make("MovieLensRec-v0", split_data=synth, mode=mode, user_model="ease")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


def test_evaluate_greedy_with_a_seed_is_reproducible_under_the_user_model(synth: Split) -> None:
    from recsim_env import evaluate_greedy

    popularity = np.bincount(synth.train_items, minlength=N_ITEMS).astype(float)
    score = lambda obs: np.tile(popularity, (len(obs["user"]), 1))  # noqa: E731
    vec = gym.make_vec("MovieLensRec-v0", num_envs=8, vectorization_mode="vector_entry_point",
                       split_data=synth, mode="test", user_model="ease")
    first = evaluate_greedy(score, vec, seed=0)
    assert evaluate_greedy(score, vec, seed=0) == first
    assert first["n_episodes"] == N_USERS and first["mean_likes"] > 0
    others = [evaluate_greedy(score, vec, seed=s)["mean_return"] for s in (1, 2, 3)]
    assert any(r != first["mean_return"] for r in others)  # the likes are random draws


def test_slates_need_the_replayed_user(synth: Split) -> None:
    """Slate responses are defined for replay only: a learned user with slate_size > 1 is an error."""
    with pytest.raises(ValueError, match="slate_size=3 needs user_model='replay'"):
        gym.make("MovieLensRec-v0", split_data=synth, user_model="ease", slate_size=3)
    with pytest.raises(ValueError, match="slate_size=3 needs user_model='replay'"):
        gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     split_data=synth, user_model="ease", slate_size=3)  # fmt: skip
    assert gym.make("MovieLensRec-v0", split_data=synth, user_model="ease", slate_size=1).unwrapped.slate_size == 1
