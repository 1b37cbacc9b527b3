"""Slate mode of MovieLensRec-v0: spaces, masks, both response models, errors, vector env, agents."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils import seeding
from test_env import assert_obs_equal, excluded_items, liked_items, make_split, tokens

from recsim_env import (
    MovieLensRecEnv,
    MovieLensRecVectorEnv,
    Split,
    TopKPolicy,
    evaluate_greedy,
    evaluate_ranking,
    unpack_bits,
)
from recsim_env.slates import DEFAULT_EXAMINE, SlateResponse

# user -> chronological [(item, rating), ...]
SLATE_TRAIN = {
    # prefix 2: history [0, 1], targets {2: 5, 3: 2, 4: 4, 5: 1}
    0: [(0, 5), (1, 4), (2, 5), (3, 2), (4, 4), (5, 1)],
    1: [(6, 4), (7, 5)],  # prefix 1: history [6], target {7: 5}
    2: [(8, 4), (9, 5), (1, 5), (0, 1), (5, 4)],
}
SLATE_TEST = {0: [(8, 5), (9, 3)], 1: [(0, 4)], 2: [(2, 5), (4, 4), (3, 1)]}
N_ITEMS = 10
#: Rewards that make every consumption visible: a disliked target costs something.
VISIBLE_REWARDS = {1: -1.0, 2: -0.5, 4: 0.8, 5: 1.0}


@pytest.fixture(scope="module")
def tiny() -> Split:
    return make_split(SLATE_TRAIN, SLATE_TEST, N_ITEMS)


def start(split: Split, **kwargs) -> tuple[MovieLensRecEnv, dict]:
    """User 0 of the tiny data, train mode, prefix 2: history [0, 1], targets {2:5, 3:2, 4:4, 5:1}."""
    env = MovieLensRecEnv(split_data=split, history_len=3, reward_map=VISIBLE_REWARDS, **kwargs)
    obs, _ = env.reset(options={"user": 0, "prefix": 2})
    return env, obs


# ----------------------------------------------------------------------------- spaces, masks
def test_action_space_and_masks(tiny: Split, ml100k_split: Split) -> None:
    env, obs = start(tiny, slate_size=4)
    assert env.action_space == gym.spaces.MultiDiscrete([N_ITEMS] * 4)
    mask = env.action_masks()
    assert mask.shape == (4 * N_ITEMS,) and mask.dtype == bool
    # The concatenated per-position masks: each position gets the observation's mask.
    np.testing.assert_array_equal(mask.reshape(4, N_ITEMS), np.tile(~unpack_bits(obs["excluded"], N_ITEMS), (4, 1)))
    assert set(np.flatnonzero(~mask[:N_ITEMS]).tolist()) == {0, 1}  # the history
    obs, *_ = env.step([9, 8, 7, 6])
    assert excluded_items(obs, N_ITEMS) == {0, 1, 6, 7, 8, 9}  # every shown item counts as recommended
    np.testing.assert_array_equal(env.action_masks()[:N_ITEMS], ~unpack_bits(obs["excluded"], N_ITEMS))

    vec = MovieLensRecVectorEnv(3, split_data=ml100k_split, slate_size=5)
    assert vec.single_action_space == gym.spaces.MultiDiscrete([1682] * 5)
    assert vec.action_space.shape == (3, 5)
    obs, _ = vec.reset(seed=0)
    masks = vec.action_masks()
    assert masks.shape == (3, 5 * 1682)
    np.testing.assert_array_equal(masks, np.tile(~unpack_bits(obs["excluded"], 1682), (1, 5)))
    assert [m.shape for m in vec.call("action_masks")] == [(5 * 1682,)] * 3


def test_slate_size_one_is_the_single_item_env_bit_for_bit(ml100k_split: Split) -> None:
    """slate_size=1 (any response) is today's environment: same spaces, episodes and info."""
    default = gym.make("MovieLensRec-v0", split_data=ml100k_split, max_steps=8)
    one = gym.make("MovieLensRec-v0", split_data=ml100k_split, max_steps=8, slate_size=1,
                   response="cascade", examine=0.3)
    assert one.action_space == default.action_space == gym.spaces.Discrete(1682)
    for env in (default, one):
        env.action_space.seed(5)
    runs = []
    for env in (default, one):
        obs, info = env.reset(seed=3)
        trace = [(obs, info)]
        for _ in range(40):
            step = env.step(env.action_space.sample())
            trace.append(step)
            if step[2] or step[3]:
                trace.append(env.reset())
        runs.append(trace)
    for a, b in zip(*runs):
        assert len(a) == len(b)
        assert_obs_equal(a[0], b[0])
        for x, y in zip(a[1:], b[1:]):
            if isinstance(x, dict):
                assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
            else:
                assert x == y


# ----------------------------------------------------------------------------- response models
def test_independent_response_known_answer(tiny: Split) -> None:
    env, before = start(tiny, slate_size=4)
    obs, reward, terminated, truncated, info = env.step(np.array([3, 9, 4, 2]))
    # item 3 (rating 2: consumed, -0.5), 9 (not a target), 4 (4: liked, 0.8), 2 (5: liked, 1.0)
    assert reward == pytest.approx(-0.5 + 0.8 + 1.0)
    assert info["consumed"].tolist() == [True, False, True, True]
    assert info["rating"].tolist() == [2, 0, 4, 5]
    assert info["liked"].tolist() == [False, False, True, True]
    assert info["invalid"].tolist() == [False] * 4 and info["n_examined"] == 4
    assert tokens(obs) == [1, 4, 2]  # the liked items joined the history in slate order
    assert liked_items(obs, N_ITEMS) == {0, 1, 2, 4}
    assert excluded_items(obs, N_ITEMS) == {0, 1, 2, 3, 4, 9}
    assert (info["n_targets_left"], info["n_liked_left"]) == (1, 0)  # item 5 (rating 1) is left
    assert terminated and not truncated


def test_cascade_stops_at_the_first_like_and_loses_what_it_did_not_examine(tiny: Split) -> None:
    env, _ = start(tiny, slate_size=4, response="cascade", examine=1.0)
    obs, reward, terminated, _, info = env.step([3, 9, 4, 2])
    # Examines 3 (rating 2, consumed), 9, 4 (liked: stop); item 2 is shown but never examined.
    assert reward == pytest.approx(-0.5 + 0.8)
    assert info["rating"].tolist() == [2, 0, 4, 0] and info["n_examined"] == 3
    assert tokens(obs) == [0, 1, 4]
    assert 2 in excluded_items(obs, N_ITEMS) and 2 not in liked_items(obs, N_ITEMS)
    # Item 2 was the last liked target: shown, excluded from now on, so it is lost: the end.
    assert (info["n_targets_left"], info["n_liked_left"]) == (1, 0) and terminated

    # examine=0: only the first position is looked at.
    env, before = start(tiny, slate_size=3, response="cascade", examine=0.0)
    obs, reward, terminated, _, info = env.step([9, 2, 8])
    assert reward == 0.0 and info["n_examined"] == 1 and not info["consumed"].any()
    for key in ("user", "history", "liked"):  # no consumption: the interest state is unchanged
        np.testing.assert_array_equal(obs[key], before[key])
    assert excluded_items(obs, N_ITEMS) == {0, 1, 2, 8, 9}
    assert info["n_liked_left"] == 1 and not terminated  # item 2 lost, item 4 left
    # Item 2 again (excluded: never consumed), item 4 unexamined: lost too, nothing can be liked.
    obs, reward, terminated, _, info = env.step([2, 4, 7])
    assert reward == 0.0 and info["invalid"].tolist() == [True, False, False]
    assert info["n_liked_left"] == 0 and terminated


def test_cascade_examination_depth_is_seeded_and_geometric(tiny: Split) -> None:
    examine, k = 0.5, 4
    depths = []
    for seed in range(20):
        env, _ = start(tiny, slate_size=k, response="cascade", examine=examine)
        env.reset(seed=seed, options={"user": 0, "prefix": 2})  # fixed start: no draw at reset
        u = seeding.np_random(seed)[0].random()
        _, _, _, _, info = env.step([6, 7, 8, 9])  # no target: the user looks as deep as drawn
        expected = int(np.count_nonzero(u < examine ** np.arange(k)))
        assert info["n_examined"] == expected
        depths.append(expected)
    assert len(set(depths)) > 2
    # P(position i is examined) = examine ** (i - 1).
    rng = np.random.default_rng(0)
    response = SlateResponse(k, "cascade", examine, N_ITEMS)
    draws = np.array([response.depth(rng) for _ in range(20_000)])
    reached = [(draws >= i).mean() for i in range(1, k + 1)]
    np.testing.assert_allclose(reached, examine ** np.arange(k), atol=0.015)
    assert SlateResponse(k, "cascade", None, N_ITEMS).examine == DEFAULT_EXAMINE


def test_history_keeps_the_last_items_when_a_slate_brings_more_likes_than_it_holds(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, history_len=2, slate_size=3)
    obs, _ = env.reset(options={"user": 2, "prefix": 1})  # history [8]; targets 9:5, 1:5, 0:1, 5:4
    obs, reward, *_ = env.step([9, 1, 5])
    assert reward == pytest.approx(1.0 + 1.0 + 0.8)
    assert tokens(obs) == [1, 5] and liked_items(obs, N_ITEMS) == {8, 9, 1, 5}


def test_repeated_and_masked_items_are_wasted_positions_not_errors(tiny: Split) -> None:
    env, _ = start(tiny, slate_size=4)
    # 4 twice (counted once), 0 in the history (never consumed), 2 liked.
    _, reward, _, _, info = env.step([4, 4, 0, 2])
    assert reward == pytest.approx(0.8 + 1.0)
    assert info["invalid"].tolist() == [False, True, True, False]
    assert info["rating"].tolist() == [4, 0, 0, 5]


@pytest.mark.parametrize(
    "action, match",
    [
        ([1, 2, 3], r"slate of 4 integer item indices in \[0, 9\]"),
        (5, r"slate of 4"),
        (np.array([1.0, 2.0, 3.0, 4.0]), r"slate of 4 integer"),
        ([1, 2, 3, 10], r"item indices in \[0, 9\], got \[1, 2, 3, 10\]"),
        ([-1, 2, 3, 4], r"item indices in \[0, 9\]"),
        ([True, False, True, False], r"slate of 4 integer"),
    ],
)
def test_bad_slates(tiny: Split, action: object, match: str) -> None:
    env, _ = start(tiny, slate_size=4)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    vec = MovieLensRecVectorEnv(2, split_data=tiny, slate_size=4)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        vec.step(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"item indices in \[0, 9\]"):
        vec.step(np.full((2, 4), 10))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"slate_size": 0}, r"slate_size must be >= 1 and <= 10, got 0"),
        ({"slate_size": 11}, r"slate_size must be >= 1 and <= 10, got 11"),
        ({"slate_size": 2.0}, r"slate_size must be an integer"),
        ({"slate_size": 2, "response": "dbn"}, r"response must be one of \['independent', 'cascade'\]"),
        ({"slate_size": 2, "examine": 0.5}, r"examine only applies to response='cascade'"),
        ({"slate_size": 2, "response": "cascade", "examine": 1.5}, r"examine must be a probability in \[0, 1\]"),
        ({"slate_size": 2, "response": "cascade", "examine": "0.5"}, r"examine must be a probability"),
    ],
)
def test_bad_slate_arguments(tiny: Split, kwargs: dict, match: str) -> None:
    for make in (MovieLensRecEnv, MovieLensRecVectorEnv):
        with pytest.raises(ValueError, match=match):
            make(split_data=tiny, **kwargs)


def test_test_mode_info_reveals_nothing_about_targets(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, mode="test", slate_size=3)
    _, info = env.reset(options={"user": 0})
    assert set(info) == {"user", "prefix", "liked", "invalid", "n_examined"}
    _, reward, _, _, info = env.step([9, 8, 7])  # 9: a test item rated 3 (consumed, not liked)
    assert set(info) == {"user", "prefix", "liked", "invalid", "n_examined"}
    assert info["liked"].tolist() == [False, True, False] and reward == 1.0


# ----------------------------------------------------------------------------- determinism, vector env
def test_same_seed_same_cascade_episodes(ml100k_split: Split) -> None:
    def run(seed: int) -> list:
        env = gym.make("MovieLensRec-v0", split_data=ml100k_split, slate_size=10, response="cascade")
        env.action_space.seed(0)
        obs, _ = env.reset(seed=seed)
        out = []
        for _ in range(120):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out.append((reward, info["n_examined"], info["user"], obs["history"].tobytes()))
            if terminated or truncated:
                env.reset()
        return out

    first = run(1)
    assert first == run(1)
    assert first != run(2)


def slate_oracle(split: Split, info: dict, rng: np.random.Generator, mode: str, k: int) -> np.ndarray:
    """Random slates that, most of the time, hold some of the user's remaining targets."""
    n = len(info["user"])
    slates = rng.integers(0, split.n_items, size=(n, k))
    for i, (user, prefix) in enumerate(zip(info["user"], info["prefix"])):
        items, _ = split.train_of(user) if mode == "train" else split.test_of(user)
        if mode == "train":
            items = items[prefix:]
        if items.size and rng.random() < 0.7:
            m = min(k, items.size)
            slates[i, rng.choice(k, m, replace=False)] = rng.choice(items, m, replace=False)
    return slates


@pytest.mark.parametrize("response", ["independent", "cascade"])
@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("data", ["tiny", "ml-100k"])
def test_vector_matches_sync_vector_env(
    data: str, mode: str, response: str, tiny: Split, request: pytest.FixtureRequest
) -> None:
    """Sub-env i seeded with seed + i = a single env seeded with seed + i, for slates too."""
    split = tiny if data == "tiny" else request.getfixturevalue("ml100k_split")
    k = 3 if data == "tiny" else 10  # k = 10: rewards summed over more positions than 8
    kwargs = {"split_data": split, "mode": mode, "max_steps": 6, "history_len": 2, "slate_size": k,
              "response": response, "examine": 0.6 if response == "cascade" else None}
    vec = gym.make_vec("MovieLensRec-v0", num_envs=5, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("MovieLensRec-v0", num_envs=5, vectorization_mode="sync", **kwargs)
    obs_v, info_v = vec.reset(seed=3)
    obs_s, info_s = sync.reset(seed=3)
    rng = np.random.default_rng(0)
    n_likes = n_multi = n_done = 0
    for _ in range(60):
        assert_obs_equal(obs_v, obs_s)
        assert info_v.keys() == info_s.keys()
        for key in info_v:
            np.testing.assert_array_equal(info_v[key], info_s[key], err_msg=key)
        np.testing.assert_array_equal(vec.action_masks(), np.stack(sync.call("action_masks")))
        slates = slate_oracle(split, info_v, rng, mode, k)
        obs_v, reward_v, term_v, trunc_v, info_v = vec.step(slates)
        obs_s, reward_s, term_s, trunc_s, info_s = sync.step(slates)
        np.testing.assert_array_equal(reward_v, reward_s)
        np.testing.assert_array_equal(term_v, term_s)
        np.testing.assert_array_equal(trunc_v, trunc_s)
        n_likes += int(info_v["liked"].sum())
        n_multi += int((info_v["liked"].sum(axis=1) > 1).sum())
        n_done += int((term_v | trunc_v).sum())
    assert n_likes > 0 and n_done > 0
    if response == "independent":
        assert n_multi > 0  # slates with several likes: the history takes them in order
    else:
        assert n_multi == 0


# ----------------------------------------------------------------------------- checkers, agents
@pytest.mark.parametrize("k", [1, 5, 10])
def test_gymnasium_and_sb3_checkers(k: int, ml100k_split: Split) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for response in ("independent", "cascade"):
        env = MovieLensRecEnv(split_data=ml100k_split, slate_size=k, response=response)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no spec" notice: the checkers still run every check
            check_env(env)
        sb3_check_env(env, warn=True)


def test_first_slate_reward_equals_hits_at_10(ml100k_split: Split) -> None:
    """k = 10, independent, test-mode start state: the first slate's consumed items are hits@10."""
    from agents.baselines.popularity import PopularityRecommender

    popularity = PopularityRecommender().fit(ml100k_split)
    # Every consumed test item worth 1, whatever its rating (the like rule is unchanged, so the
    # observations are the default ones): the reward counts the test items in the slate.
    ones = {r: 1.0 for r in range(1, 6)}
    vec = MovieLensRecVectorEnv(907, split_data=ml100k_split, mode="test", slate_size=10, reward_map=ones)
    users = vec.users  # the 907 users with a liked test item
    obs, _ = vec.reset(options={"user": users})
    policy = TopKPolicy(lambda o: popularity.score(users), slate_size=10)
    _, reward, _, _, info = vec.step(policy(obs))
    ranking = evaluate_ranking(popularity.score, ml100k_split, users=users, return_per_user=True)
    np.testing.assert_array_equal(ranking["per_user"]["user"], users)
    np.testing.assert_array_equal(reward, np.rint(ranking["per_user"]["precision@10"] * 10))
    assert reward.mean() == pytest.approx(10 * ranking["precision@10"])

    # The liked positions are the hits among the liked test items (rating >= 4).
    liked_only = ml100k_split.test_ratings >= 4
    test_user = np.repeat(np.arange(943), np.diff(ml100k_split.test_indptr))
    indptr = np.concatenate(([0], np.cumsum(np.bincount(test_user[liked_only], minlength=943))))
    liked_split = dataclasses.replace(
        ml100k_split, test_indptr=indptr, test_items=ml100k_split.test_items[liked_only],
        test_ratings=ml100k_split.test_ratings[liked_only],
        test_timestamps=ml100k_split.test_timestamps[liked_only],
    )  # fmt: skip
    liked_ranking = evaluate_ranking(popularity.score, liked_split, return_per_user=True)["per_user"]
    np.testing.assert_array_equal(liked_ranking["user"], users)
    np.testing.assert_array_equal(info["liked"].sum(axis=1), np.rint(liked_ranking["precision@10"] * 10))


def test_top_k_policy(tiny: Split) -> None:
    env, obs = start(tiny, slate_size=3)
    scores = np.array([9.0, 9.0, 1.0, 5.0, 5.0, 0.0, 5.0, 2.0, 0.0, 0.0])
    policy = TopKPolicy(lambda o: np.tile(scores, (len(o["excluded"]), 1)), slate_size=3)
    # Items 0 and 1 are the history; 3, 4, 6 tie at 5.0: lower index first.
    assert policy(obs).tolist() == [3, 4, 6]
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert policy(batch).tolist() == [[3, 4, 6], [3, 4, 6]]
    assert policy.predict(batch)[0].shape == (2, 3)
    assert TopKPolicy(lambda o: scores, 3, masked=False)(obs).tolist() == [0, 1, 3]
    assert TopKPolicy(lambda o: scores, 3, batched=False)(batch).tolist() == [[3, 4, 6]] * 2
    assert TopKPolicy(lambda o: scores)(obs) == 3  # slate_size 1: one item, an int
    with pytest.raises(ValueError, match=r"expected \(1, n_items\)"):
        TopKPolicy(lambda o: scores[:5], 3)(obs)
    with pytest.raises(ValueError, match="slate_size must be an integer >= 1"):
        TopKPolicy(lambda o: scores, 0)


def test_evaluate_greedy_in_slate_mode(tiny: Split, ml100k_split: Split) -> None:
    # user 0 test: train {0..5}, test {8: 5, 9: 3}; user 1: train {6, 7}, test {0: 4}; user 2:
    # train {8, 9, 1, 0, 5}, test {2: 5, 4: 4, 3: 1}. Scores: lower index first.
    env = MovieLensRecEnv(split_data=tiny, mode="test", slate_size=2, max_steps=4)

    def lowest_first(obs: dict) -> np.ndarray:
        return np.tile(-np.arange(N_ITEMS, dtype=float), (len(obs["user"]), 1))

    got = evaluate_greedy(lowest_first, env)
    # user 0: [6, 7], [8, 9] (like 8: done) -> 1.0 in 2 steps; user 1: [0, 1] (like 0) -> 0.8
    # in 1; user 2: [2, 3] (like 2), [4, 6] (like 4: done) -> 1.8 in 2.
    assert got == pytest.approx({"mean_return": 3.6 / 3, "mean_length": 5 / 3, "mean_likes": 4 / 3,
                                 "mean_liked_items": 4 / 3, "n_episodes": 3})
    # By user (a baseline's score(users)) with the same scores for everyone: the same episodes.
    assert evaluate_greedy(lambda users: -np.arange(N_ITEMS, dtype=float)[None].repeat(len(users), 0),
                           env, by_user=True) == got

    # Vector and single environment agree, cascade draws included (seeded).
    counts = np.bincount(ml100k_split.train_items, minlength=ml100k_split.n_items).astype(float)
    kwargs = dict(split_data=ml100k_split, mode="test", max_steps=10, slate_size=10,
                  response="cascade", examine=0.7)
    users = MovieLensRecEnv(**kwargs).users[:6]
    single = [evaluate_greedy(lambda o: counts[None], MovieLensRecEnv(**kwargs), [u], seed=7 + i)
              for i, u in enumerate(users)]
    vec = gym.make_vec("MovieLensRec-v0", num_envs=6, vectorization_mode="vector_entry_point", **kwargs)
    both = evaluate_greedy(lambda o: np.tile(counts, (6, 1)), vec, users, seed=7)
    assert both["mean_return"] == pytest.approx(np.mean([s["mean_return"] for s in single]))
    assert both["mean_liked_items"] == pytest.approx(np.mean([s["mean_liked_items"] for s in single]))


def test_top_k_policy_through_sb3_evaluate_policy(ml100k_split: Split) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    counts = np.bincount(ml100k_split.train_items, minlength=ml100k_split.n_items).astype(float)
    policy = TopKPolicy(lambda o: np.tile(counts, (len(o["excluded"]), 1)), slate_size=10)
    kwargs = dict(split_data=ml100k_split, slate_size=10, max_steps=10)
    venv = make_vec_env("MovieLensRec-v0", n_envs=1, seed=4, env_kwargs=kwargs)
    returns, _ = evaluate_policy(policy, venv, n_eval_episodes=3, return_episode_rewards=True)
    # The same three episodes by hand.
    env = gym.make("MovieLensRec-v0", **kwargs)
    obs, _ = env.reset(seed=4)
    expected = []
    while len(expected) < 3:
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        expected.append(total)
        obs, _ = env.reset()
    assert returns == pytest.approx(expected)


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo"])
def test_ppo_and_maskable_ppo_train_on_slates(algo: str, ml100k_split: Split) -> None:
    import torch as th

    from agents.factory import build_model

    th.set_num_threads(1)
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split, slate_size=10, max_steps=8)
    model = build_model(algo, env, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)),
                        net_arch=(16,), n_steps=32, batch_size=16, n_epochs=1, seed=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs, _ = env.reset(seed=0)
    kwargs = {"action_masks": env.unwrapped.action_masks()} if algo == "maskable_ppo" else {}
    action, _ = model.predict(obs, deterministic=True, **kwargs)
    assert env.action_space.contains(action)
    if algo == "maskable_ppo":  # every position avoids the items the observation excludes
        assert not unpack_bits(obs["excluded"], 1682)[action].any()
    env.step(action)


def test_lsrwrl_q_values_act_in_slate_mode(ml100k_split: Split) -> None:
    """A DQN trained on single items acts in a slate env through the top-k of its Q-values."""
    import torch as th

    from agents.factory import build_model
    from agents.scoring import greedy_return, score_observations

    th.set_num_threads(1)
    model = build_model("dqn", gym.make("MovieLensRec-v0", split_data=ml100k_split),
                        extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)), net_arch=(16,), seed=0)
    vec = gym.make_vec("MovieLensRec-v0", num_envs=4, vectorization_mode="vector_entry_point",
                       split_data=ml100k_split, mode="test", slate_size=10, max_steps=3)
    users = vec.unwrapped.users[:4]
    got = greedy_return(model, vec, users=users)
    # By hand: the first slate is the top 10 allowed Q-values of the start state.
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split, mode="test", slate_size=10, max_steps=3)
    total = 0.0
    for user in users:
        obs, _ = env.reset(options={"user": int(user)})
        done = False
        while not done:
            q = score_observations(model, {k: v[None] for k, v in obs.items()})[0]
            q[unpack_bits(obs["excluded"], 1682)] = -np.inf
            slate = np.argsort(-q, kind="stable")[:10]
            obs, reward, terminated, truncated, _ = env.step(slate)
            total += reward
            done = terminated or truncated
    assert got["mean_return"] == pytest.approx(total / 4)


def test_render_slates(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, slate_size=3, render_mode="ansi")
    env.reset(options={"user": 0, "prefix": 2})
    assert "no slate yet" in env.render()
    env.step([3, 9, 4])
    text = env.render()
    assert "slate of 3" in text
    assert ' 1. item 3 "Movie 3 (1999)" -> watched, not liked (rating 2' in text
    assert ' 2. item 9 "Movie 9 (1999)" -> not consumed' in text
    assert " 3. item 4 " in text and "LIKED (rating 4" in text
    frames = MovieLensRecVectorEnv(2, split_data=tiny, slate_size=3, render_mode="ansi")
    frames.reset(options={"user": [0, 0], "prefix": [2, 2]})
    frames.step(np.array([[3, 9, 4], [3, 9, 4]]))
    assert frames.render() == (text, text)

    pictures = MovieLensRecEnv(split_data=tiny, slate_size=3, render_mode="rgb_array")
    pictures.reset(options={"user": 0, "prefix": 2})
    pictures.step([9, 8, 7])  # nothing: grey
    pictures.step([3, 6, 5])  # targets consumed, none liked: amber
    pictures.step([4, 2, 6])  # a like: green
    frame = pictures.render()
    from recsim_env import rendering

    row = (1 + 1) * rendering.CELL + 2  # first recommendation row (history_len 20: one row)
    colours = [tuple(frame[row, c * rendering.CELL + 2]) for c in range(4)]
    assert colours == [rendering.MISS, rendering.DISLIKED, rendering.HIT, rendering.EMPTY]
