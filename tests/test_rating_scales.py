"""Datasets beyond ML-100K/1M in the environment: half-star and implicit ratings, any number of
user features (none included), string ids mapped back."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from recsim_env import MovieLensData, MovieLensRecEnv, split_ratings
from recsim_env.dataset import HALF_STAR_RATINGS, rating_levels

N_ITEMS = 12
#: User 0's ratings of items 0..9 (in time order); the other users rate shifted copies.
USER0 = [4.0, 4.5, 3.5, 5.0, 2.0, 4.5, 5.0, 3.5, 1.0, 4.0]


def make_data(
    ratings: list[float] | None = None,
    scale: tuple[float, ...] = HALF_STAR_RATINGS,
    n_features: int = 0,
    **meta: object,
) -> MovieLensData:
    """Six users with ten interactions each (items u .. u+9 mod 12), string ids."""
    ratings = USER0 if ratings is None else ratings
    n_users = 6
    user = np.repeat(np.arange(n_users), 10).astype(np.int32)
    item = ((np.arange(10)[None, :] + np.arange(n_users)[:, None]) % N_ITEMS).reshape(-1).astype(np.int32)
    dtype = np.int8 if all(float(r).is_integer() for r in scale) else np.float32
    rating = np.tile(np.asarray(ratings, dtype=dtype), n_users)
    features = (np.arange(n_users)[:, None] % (np.arange(n_features) + 2)[None, :]).astype(np.int32)
    fields = dict(
        name="log", user=user, item=item, rating=rating, timestamp=np.arange(user.size, dtype=np.int64),
        user_features=features, user_raw_ids=np.array([f"user-{u}" for u in range(n_users)]),
        item_raw_ids=np.array([f"item-{i:02d}" for i in range(N_ITEMS)]),
        item_titles=np.array([f"item-{i:02d}" for i in range(N_ITEMS)], dtype=object),
        item_years=np.full(N_ITEMS, -1, np.int32), item_genres=np.zeros((N_ITEMS, 0), bool), genre_names=(),
        user_feature_names=tuple(f"f{j}" for j in range(n_features)),
        user_feature_cardinalities=tuple(range(2, n_features + 2)), rating_scale=scale,
    )  # fmt: skip
    return MovieLensData(**{**fields, **meta})


def test_half_stars_like_threshold_rewards_and_reported_ratings() -> None:
    env = MovieLensRecEnv(data=make_data())
    assert env.like_threshold == 4  # the dataset's default
    assert env.reward_map[4.5] == pytest.approx(0.9) and env.reward_map[3.5] == 0.0
    env.reset(options={"user": 0, "prefix": 2})  # targets: items 2..7 rated 3.5 5 2 4.5 5 3.5
    _, reward, _, _, info = env.step(5)
    assert (reward, info["rating"], info["liked"]) == (pytest.approx(0.9), 4.5, True)
    assert isinstance(info["rating"], float)
    _, reward, _, _, info = env.step(2)  # consumed, not liked
    assert (reward, info["rating"], info["liked"], info["n_targets_left"]) == (0.0, 3.5, False, 4)
    lower = MovieLensRecEnv(data=make_data(), like_threshold=3.5)
    lower.reset(options={"user": 0, "prefix": 2})
    _, reward, _, _, info = lower.step(2)
    assert (reward, info["liked"]) == (pytest.approx(0.7), True)


def test_half_star_reward_map_keys() -> None:
    env = MovieLensRecEnv(data=make_data(), reward_map={"3.5": 2.0, 4.5: 1.0, "5": 3.0, 4: 0.5})
    assert (env.reward_map[3.5], env.reward_map[4.5], env.reward_map[5.0], env.reward_map[4.0]) == (2.0, 1.0, 3.0, 0.5)
    assert env.reward_map[0.5] == 0.0
    for bad in ({3.3: 1.0}, {"3.50": 1.0}, {6: 1.0}, {"3.5": 1.0, 3.5: 2.0}):
        with pytest.raises(ValueError, match="reward_map"):
            MovieLensRecEnv(data=make_data(), reward_map=bad)
    with pytest.raises(ValueError, match=r"like_threshold must be a rating in \[0.5, 5.0\]"):
        MovieLensRecEnv(data=make_data(), like_threshold=5.5)


def test_implicit_feedback_every_interaction_is_a_like_worth_one() -> None:
    data = make_data([1] * 10, scale=(1,), like_threshold=1, feedback="implicit")
    env = MovieLensRecEnv(data=data)
    assert (env.like_threshold, env.reward_map) == (1, {1: 1.0})
    env.reset(options={"user": 0, "prefix": 2})
    outcomes = [env.step(item)[1:] for item in (2, 3, 11)]
    assert [o[0] for o in outcomes] == [1.0, 1.0, 0.0]
    assert [o[3]["liked"] for o in outcomes] == [True, True, False]
    with pytest.raises(ValueError, match=r"like_threshold must be a rating in \[1, 1\]"):
        MovieLensRecEnv(data=data, like_threshold=4)
    # A value column: every interaction is still a like, worth its value.
    valued = make_data([1, 2, 5, 2, 1, 5, 5, 2, 1, 1], scale=(1, 2, 5), like_threshold=1, feedback="implicit")
    env = MovieLensRecEnv(data=valued)
    assert env.reward_map == {1: 1.0, 2: 2.0, 5: 5.0}
    env.reset(options={"user": 0, "prefix": 2})
    assert [env.step(item)[1] for item in (2, 3)] == [5.0, 2.0]


@pytest.mark.parametrize("n_features", [0, 2])
def test_any_number_of_user_features_single_and_vector_env_agree(n_features: int) -> None:
    data = make_data(n_features=n_features)
    env = gym.make("MovieLensRec-v0", data=data, render_mode="ansi")
    if n_features:
        space = env.observation_space["user"]
        assert space.shape == (n_features,) and space.high.tolist() == list(range(1, n_features + 1))
    else:  # no field at all: SB3 reshapes every field to (-1, *shape), impossible for a (0,) one
        assert "user" not in env.observation_space.spaces
    check_env(env.unwrapped, skip_render_check=True)
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make("MovieLensRec-v0", data=data).unwrapped)
    envs = gym.make_vec("MovieLensRec-v0", num_envs=3, vectorization_mode="vector_entry_point", data=data)
    singles = [gym.make("MovieLensRec-v0", data=data) for _ in range(3)]
    obs, _ = envs.reset(seed=7)
    single_obs = [e.reset(seed=7 + i)[0] for i, e in enumerate(singles)]
    if n_features:
        np.testing.assert_array_equal(obs["user"], np.stack([o["user"] for o in single_obs]))
        assert obs["user"].shape == (3, n_features)
    assert set(obs) == set(single_obs[0]) == {"excluded", "history", "liked"} | ({"user"} if n_features else set())
    done = [False] * 3
    for step in range(12):
        actions = np.array([(step * 5 + i) % N_ITEMS for i in range(3)])
        obs, reward, terminated, truncated, info = envs.step(actions)
        for i, e in enumerate(singles):
            if done[i]:  # the vector env resets a finished sub-env on its next step
                o, inf = e.reset()
                r, done[i] = 0.0, False
            else:
                o, r, te, tr, inf = e.step(int(actions[i]))
                done[i] = te or tr
            assert (r, inf["rating"], inf["user"]) == (reward[i], info["rating"][i], info["user"][i])
            np.testing.assert_array_equal(o["history"], obs["history"][i])
    assert info["rating"].dtype == np.float64
    env.reset(options={"user": 1, "prefix": 3})
    line = env.render().splitlines()[0]
    assert line == ("user 1 (raw id user-1)" if n_features == 0 else "user 1 (raw id user-1): f0 1, f1 1")


def test_learned_user_rates_a_like_with_the_top_two_ratings_of_the_scale() -> None:
    env = MovieLensRecEnv(data=make_data(), user_model="ease", user_model_kwargs={"l2": 1.0, "leave_rate": 0.0})
    ratings = set()
    for episode in range(20):
        env.reset(seed=episode)
        for item in range(N_ITEMS):
            _, reward, _, _, info = env.step(item)
            if info["liked"]:
                ratings.add(info["rating"])
                assert reward == pytest.approx(info["rating"] / 5)
            else:
                assert (info["rating"], reward) == (0, 0.0)
    assert ratings and ratings <= {4.5, 5.0}


def test_ratings_off_the_scale_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"hold 4.25, which is not a rating of the scale"):
        rating_levels(HALF_STAR_RATINGS, np.array([4.0, 4.25]))
    np.testing.assert_array_equal(rating_levels(HALF_STAR_RATINGS, np.array([0.5, 4.5, 5.0])), [1, 9, 10])
    data = make_data(USER0[:-1] + [4.25], scale=(1.0, 2.0, 3.5, 4.0, 4.25, 4.5, 5.0))
    split = split_ratings(data)
    bad = split.__class__(**{**vars(split), "data": make_data()})  # ratings no longer on data's scale
    with pytest.raises(ValueError, match="every rating must be one of split.data.rating_scale"):
        MovieLensRecEnv(split_data=bad, mode="test")


def test_dataset_checks_its_metadata_and_maps_ids_back() -> None:
    data = make_data(n_features=1)
    np.testing.assert_array_equal(data.item_index(["item-03", "item-11"]), [3, 11])
    assert data.user_index("user-4") == 4
    assert data.item_raw_ids[data.item_index("item-07")] == "item-07"
    with pytest.raises(KeyError, match="no item has the original id 'item-99'"):
        data.item_index(["item-03", "item-99"])
    with pytest.raises(ValueError, match=r"user_features must be \(n_users, 2\)"):
        make_data(n_features=1, user_feature_names=("a", "b"), user_feature_cardinalities=(2, 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        make_data(scale=(1.0, 0.5))
    with pytest.raises(ValueError, match="like_threshold must be a number within the rating scale"):
        make_data([1] * 10, scale=(1,))  # default 4 is off an implicit scale: give like_threshold=1
    with pytest.raises(ValueError, match="feedback must be one of"):
        make_data(feedback="clicks")
    with pytest.raises(ValueError, match="not both"):
        MovieLensRecEnv(data=make_data(), split_data=split_ratings(make_data()))


def test_multi_hot_wrapper_without_user_features() -> None:
    from recsim_env import MultiHotObservation

    env = MultiHotObservation(MovieLensRecEnv(data=make_data(n_features=0)))
    obs, _ = env.reset(options={"user": 0, "prefix": 2})
    assert sorted(obs) == sorted(env.observation_space.spaces) == ["excluded", "history", "liked"]
    assert obs["history"].nonzero()[0].tolist() == [0, 1] and obs["excluded"].sum() == 2
    flat = MultiHotObservation(MovieLensRecEnv(data=make_data(n_features=0)), flatten=True)
    assert flat.observation_space.shape == (3 * N_ITEMS,)
