"""MovieLensRec-v0 (single environment): rules, start states, seeding, masks, errors, checkers."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

import recsim_env
from recsim_env import MovieLensData, MovieLensRecEnv, Split, rendering, unpack_bits, unpack_liked

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- tiny data
# user -> chronological [(item, rating), ...]
TINY_TRAIN = {
    0: [(0, 5), (1, 2), (2, 4), (3, 1), (4, 5)],  # train: prefixes 1..4 (last like at position 4)
    1: [(1, 4), (2, 3)],  # no like after position 0, no liked test item: never starts
    2: [(3, 3), (5, 4)],  # train: prefix 1 only
}
TINY_TEST = {0: [(5, 4), (6, 2)], 1: [(7, 1)], 2: [(0, 5)]}
TINY_ITEMS = 8


def make_split(
    train: dict[int, list[tuple[int, int]]],
    test: dict[int, list[tuple[int, int]]],
    n_items: int,
    features: np.ndarray | None = None,
) -> Split:
    """A hand-made :class:`Split` (and its :class:`MovieLensData`) from per-user sequences."""
    n_users = max(max(train), max(test)) + 1
    parts = {}
    rows = []
    clock = 0
    for name, seqs in (("train", train), ("test", test)):
        indptr, items, ratings, times = [0], [], [], []
        for u in range(n_users):
            for item, rating in seqs.get(u, []):
                clock += 1
                items.append(item)
                ratings.append(rating)
                times.append(clock)
                rows.append((u, item, rating, clock))
            indptr.append(len(items))
        parts[name] = (
            np.array(indptr, np.int64),
            np.array(items, np.int32),
            np.array(ratings, np.int8),
            np.array(times, np.int64),
        )
    user, item, rating, timestamp = (np.array(col) for col in zip(*rows))
    if features is None:
        features = np.array([[u % 2, u % 7, u % 21] for u in range(n_users)], np.int32)
    data = MovieLensData(
        name="tiny",
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        rating=rating.astype(np.int8),
        timestamp=timestamp.astype(np.int64),
        user_features=features,
        user_raw_ids=np.arange(n_users, dtype=np.int64) + 100,
        item_raw_ids=np.arange(n_items, dtype=np.int64) + 1,
        item_titles=np.array([f"Movie {i} (1999)" for i in range(n_items)], dtype=object),
        item_years=np.full(n_items, 1999, np.int32),
        item_genres=np.zeros((n_items, 1), bool),
        genre_names=("Drama",),
    )
    return Split(data, "temporal", 0.8, 0, *parts["train"], *parts["test"])


@pytest.fixture(scope="module")
def tiny() -> Split:
    return make_split(TINY_TRAIN, TINY_TEST, TINY_ITEMS)


def tokens(obs: dict[str, np.ndarray]) -> list[int]:
    """Item indices of the non-padding history tokens, oldest first."""
    return [int(t) - 1 for t in obs["history"] if t > 0]


def liked_items(obs: dict[str, np.ndarray], n_items: int = TINY_ITEMS) -> set[int]:
    return set(np.flatnonzero(unpack_liked(obs["liked"], n_items)).tolist())


def excluded_items(obs: dict[str, np.ndarray], n_items: int = TINY_ITEMS) -> set[int]:
    return set(np.flatnonzero(unpack_bits(obs["excluded"], n_items)).tolist())


def assert_interest_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """The user's interest state (everything but ``"excluded"``) is the same."""
    for key in ("user", "history", "liked"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def assert_obs_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ----------------------------------------------------------------------------- spaces, start states
def test_observation_layout(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, history_len=3)
    obs, info = env.reset(options={"user": 0, "prefix": 4})
    assert env.observation_space.contains(obs)
    assert env.action_space == gym.spaces.Discrete(TINY_ITEMS)
    # Last 3 of items [0, 1, 2, 3] as tokens (item + 1), most recent last.
    assert obs["history"].tolist() == [2, 3, 4]
    assert obs["history"].dtype == np.int32 and obs["liked"].dtype == np.uint8
    assert obs["liked"].shape == (1,)
    assert liked_items(obs) == {0, 2}  # ratings 5 and 4 in the prefix; 1 and 3 are not liked
    assert obs["excluded"].dtype == np.uint8 and obs["excluded"].shape == (1,)
    assert excluded_items(obs) == {0, 1, 2, 3}  # the whole prefix, beyond the 3 history tokens
    assert obs["user"].tolist() == tiny.data.user_features[0].tolist()
    assert info == {
        "user": 0, "prefix": 4, "rating": 0, "liked": False, "n_targets_left": 1, "n_liked_left": 1
    }

    obs, _ = env.reset(options={"user": 0, "prefix": 1})
    assert obs["history"].tolist() == [0, 0, 1]  # front-padded


def test_unpack_liked_is_packbits_inverse() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((4, 21)) < 0.3
    packed = np.packbits(mask, axis=1, bitorder="little")
    np.testing.assert_array_equal(unpack_liked(packed, 21), mask)
    np.testing.assert_array_equal(unpack_bits(packed, 21), mask)
    np.testing.assert_array_equal(unpack_bits(packed[1], 21), mask[1])
    with pytest.raises(ValueError, match="liked must have 3 bytes"):
        unpack_liked(packed[:, :2], 21)
    with pytest.raises(ValueError, match="excluded must have 3 bytes"):
        unpack_bits(packed[:, :2], 21, "excluded")


@pytest.mark.parametrize("mode", ["train", "test"])
def test_action_mask_is_a_function_of_the_observation(mode: str, ml100k_split: Split) -> None:
    """action_masks() == ~unpack_bits(obs["excluded"]) at every step, resets included."""
    env = MovieLensRecEnv(split_data=ml100k_split, mode=mode, max_steps=30)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=3)
    n_old_history_blocked = 0
    for _ in range(600):
        mask = env.action_masks()
        np.testing.assert_array_equal(mask, ~unpack_bits(obs["excluded"], env.n_items))
        # Items excluded but invisible in "history" and "liked": why the field is needed.
        visible = unpack_liked(obs["liked"], env.n_items)
        visible[obs["history"][obs["history"] > 0] - 1] = True
        n_old_history_blocked += int(np.count_nonzero(~mask & ~visible) > 0)
        allowed = np.flatnonzero(mask)
        # Mostly allowed items, sometimes an excluded one (masks are advisory).
        action = int(rng.choice(allowed) if rng.random() < 0.9 else rng.choice(np.flatnonzero(~mask)))
        obs, reward, terminated, truncated, info = env.step(action)
        assert unpack_bits(obs["excluded"], env.n_items)[action]
        if terminated or truncated:
            obs, info = env.reset()
    assert n_old_history_blocked > 0


def test_test_mode_info_reveals_nothing_about_targets() -> None:
    # Users 0 and 1 share a train history; item 3 is a test item (rated 2) of user 1 only.
    train = {0: [(0, 5), (1, 4)], 1: [(0, 5), (1, 4)]}
    same_features = np.zeros((2, 3), np.int32)
    split = make_split(train, {0: [(2, 5)], 1: [(3, 2), (4, 5), (5, 4)]}, 7, same_features)
    traces = []
    for user in (0, 1):
        env = MovieLensRecEnv(split_data=split, mode="test")
        obs, info = env.reset(options={"user": user})
        trace = [({k: v for k, v in info.items() if k != "user"}, obs)]
        for item in (3, 6, 0):  # a non-liked test item of user 1, a non-target, a history item
            obs, reward, terminated, truncated, info = env.step(item)
            trace.append((info, obs, reward, terminated, truncated))
        assert set(info) == {"user", "prefix", "liked"}
        traces.append(trace)
    for (info0, obs0, *rest0), (info1, obs1, *rest1) in zip(*traces):
        assert {k: v for k, v in info0.items() if k != "user"} == {
            k: v for k, v in info1.items() if k != "user"
        }
        assert_obs_equal(obs0, obs1)
        assert rest0 == rest1
    # Train mode keeps the training-data diagnostics.
    _, info = MovieLensRecEnv(split_data=split).reset(options={"user": 0})
    assert {"rating", "n_targets_left", "n_liked_left"} <= set(info)


def test_train_starts_cover_exactly_the_valid_users_and_prefixes(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny)
    assert env.users.tolist() == [0, 2]
    seen = set()
    for seed in range(200):
        _, info = env.reset(seed=seed)
        seen.add((info["user"], info["prefix"]))
        assert info["n_liked_left"] >= 1
    assert seen == {(0, 1), (0, 2), (0, 3), (0, 4), (2, 1)}
    # max_prefixes is the upper end of those prefixes (0: the user cannot start), read-only.
    assert env.max_prefixes.tolist()[0] == 4 and env.max_prefixes[1] == 0 and env.max_prefixes[2] == 1
    assert MovieLensRecEnv(split_data=tiny, mode="test").max_prefixes.tolist() == np.diff(tiny.train_indptr).tolist()
    with pytest.raises(ValueError):
        env.max_prefixes[0] = 9


def test_test_mode_starts_from_whole_train_history(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, mode="test", history_len=10)
    assert env.users.tolist() == [0, 2]  # user 1 has no liked test item
    obs, info = env.reset(options={"user": 0})
    assert tokens(obs) == [0, 1, 2, 3, 4]
    assert info == {"user": 0, "prefix": 5, "liked": False}  # no target-dependent keys
    _, reward, terminated, _, info = env.step(5)  # the liked test item
    assert reward == pytest.approx(0.8) and info["liked"] and terminated


def test_like_nonlike_and_nontarget_semantics(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, history_len=4)
    obs0, _ = env.reset(options={"user": 0, "prefix": 2})  # history 0,1; targets 2(4), 3(1), 4(5)

    obs, reward, terminated, truncated, info = env.step(2)
    assert reward == pytest.approx(0.8)
    assert info == {
        "user": 0, "prefix": 2, "rating": 4, "liked": True, "n_targets_left": 2, "n_liked_left": 1
    }
    assert tokens(obs) == [0, 1, 2] and obs["history"][-1] == 3
    assert liked_items(obs) == {0, 2}
    assert not terminated and not truncated
    assert tokens(obs0) == [0, 1]  # the earlier observation was not mutated

    assert excluded_items(obs) == {0, 1, 2}
    for item in (7, 0, 2):  # not a target, a history item, an already consumed target
        after, reward, terminated, _, info = env.step(item)
        assert reward == 0.0 and info["rating"] == 0 and not info["liked"] and not terminated
        assert_interest_equal(after, obs)  # the paper's rule: a miss leaves the user as is
    assert excluded_items(after) == {0, 1, 2, 7}  # ...but the recommendation is remembered

    after, reward, terminated, _, info = env.step(3)  # a target rated 1: consumed, not liked
    assert reward == 0.0 and info["rating"] == 1 and not info["liked"]
    assert info["n_targets_left"] == 1 and info["n_liked_left"] == 1 and not terminated
    assert_interest_equal(after, obs)
    assert excluded_items(after) == {0, 1, 2, 3, 7}
    _, _, _, _, info = env.step(3)
    assert info["rating"] == 0 and info["n_targets_left"] == 1

    obs, reward, terminated, truncated, info = env.step(4)
    assert reward == pytest.approx(1.0) and info["liked"]
    assert terminated and not truncated and info["n_liked_left"] == 0
    assert tokens(obs) == [0, 1, 2, 4] and liked_items(obs) == {0, 2, 4}
    assert excluded_items(obs) == {0, 1, 2, 3, 4, 7}


def test_truncation_at_max_steps(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, max_steps=3)
    env.reset(options={"user": 0, "prefix": 1})
    flags = [env.step(7)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_custom_reward_map(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny, reward_map={1: -0.5, 4: 2.0, 5: 3.0})
    assert env.reward_map == {1: -0.5, 2: 0.0, 3: 0.0, 4: 2.0, 5: 3.0}
    env.reset(options={"user": 0, "prefix": 2})
    assert env.step(3)[1] == -0.5  # rated 1: consumed, penalised, not liked
    assert env.step(2)[1] == 2.0
    assert env.step(4)[1] == 3.0
    default = MovieLensRecEnv(split_data=tiny, like_threshold=3)
    assert default.reward_map == {1: 0.0, 2: 0.0, 3: 0.6, 4: 0.8, 5: 1.0}


def test_reward_map_accepts_json_string_keys(tiny: Split) -> None:
    """JSON (spec.to_json) turns {4: 2.0} into {"4": 2.0}: both spell the same map."""
    env = MovieLensRecEnv(split_data=tiny, reward_map={"1": -0.5, "4": 2.0, 5: 3.0})
    assert env.reward_map == {1: -0.5, 2: 0.0, 3: 0.0, 4: 2.0, 5: 3.0}
    assert all(type(key) is int for key in env.reward_map)
    env.reset(options={"user": 0, "prefix": 2})
    assert [env.step(item)[1] for item in (3, 2, 4)] == [-0.5, 2.0, 3.0]


@pytest.mark.parametrize(
    "reward_map",
    [
        {0: 1.0}, {6: 1.0}, {4.0: 1.0}, {4: "a lot"}, {5: float("nan")}, [(5, 1.0)],
        {"0": 1.0}, {"6": 1.0}, {"4.0": 1.0}, {"04": 1.0}, {" 4": 1.0}, {"four": 1.0},
        {4: 1.0, "4": 2.0},
    ],
)  # fmt: skip
def test_bad_reward_map(tiny: Split, reward_map: object) -> None:
    with pytest.raises(ValueError, match="reward_map"):
        MovieLensRecEnv(split_data=tiny, reward_map=reward_map)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- reset options
def test_reset_options(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny)
    with pytest.raises(ValueError, match="user 1 cannot start"):
        env.reset(options={"user": 1})
    with pytest.raises(ValueError, match="prefix"):
        env.reset(options={"user": 0, "prefix": 5})
    with pytest.raises(ValueError, match="prefix"):
        env.reset(options={"user": 0, "prefix": 0})
    with pytest.raises(ValueError, match="needs"):
        env.reset(options={"prefix": 1})
    test_env = MovieLensRecEnv(split_data=tiny, mode="test")
    with pytest.raises(ValueError, match="only allowed in train mode"):
        test_env.reset(options={"user": 0, "prefix": 1})
    with pytest.raises(ValueError, match="cannot start"):
        test_env.reset(options={"user": 1})


@pytest.mark.parametrize("mode", ["train", "test"])
def test_reset_options_unknown_keys_and_out_of_range_users(tiny: Split, mode: str) -> None:
    env = MovieLensRecEnv(split_data=tiny, mode=mode)
    with pytest.raises(ValueError, match=r"unknown reset options \['usr'\]; allowed keys: 'user', 'prefix'"):
        env.reset(options={"usr": 0})
    with pytest.raises(ValueError, match=r"unknown reset options \['seed'\]"):
        env.reset(options={"user": 0, "seed": 3})
    with pytest.raises(ValueError, match="must be a dict with keys 'user', 'prefix'"):
        env.reset(options=[("user", 0)])  # type: ignore[arg-type]
    for user in (99999, 3, -1):
        with pytest.raises(ValueError, match=rf"\[\"user\"\]={user} is out of range: user indices are 0\.\.2"):
            env.reset(options={"user": user})
    assert env.reset(options={"user": 0})[1]["user"] == 0  # valid options still work


def test_next_visits_every_user_once_in_order(tiny: Split) -> None:
    for mode in ("train", "test"):
        env = MovieLensRecEnv(split_data=tiny, mode=mode)
        visited = [env.reset(options={"user": "next"})[1]["user"] for _ in range(2 * len(env.users))]
        assert visited == env.users.tolist() * 2


# ----------------------------------------------------------------------------- seeding
def test_seeding_determinism(ml100k_split: Split) -> None:
    def run(seed: int) -> list[tuple]:
        env = MovieLensRecEnv(split_data=ml100k_split, max_steps=3)
        actions = np.random.default_rng(1).integers(0, env.n_items, size=60)
        obs, info = env.reset(seed=seed)
        trace = [(info["user"], info["prefix"], obs["history"].tobytes(), obs["liked"].tobytes())]
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            trace.append((info["user"], reward, obs["history"].tobytes()))
            if terminated or truncated:
                obs, info = env.reset()
                trace.append((info["user"], info["prefix"], obs["history"].tobytes()))
        return trace

    assert run(7) == run(7)
    assert [t[:2] for t in run(7)] != [t[:2] for t in run(8)]


# ----------------------------------------------------------------------------- masks
def test_action_masks_exclude_history_and_recommended(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny)
    env.reset(options={"user": 0, "prefix": 2})
    mask = env.action_masks()
    assert mask.dtype == bool and mask.shape == (TINY_ITEMS,)
    assert np.flatnonzero(~mask).tolist() == [0, 1]
    env.step(7)  # not a target
    env.step(3)  # a target, not liked
    env.step(2)  # liked: joins the history
    assert np.flatnonzero(~env.action_masks()).tolist() == [0, 1, 2, 3, 7]
    env.reset(options={"user": 0, "prefix": 2})
    assert np.flatnonzero(~env.action_masks()).tolist() == [0, 1]  # recommendations are per episode


def test_action_masks_do_not_reveal_targets() -> None:
    # Users 0 and 1 share a train history but have different test items.
    train = {0: [(0, 5), (1, 4)], 1: [(0, 5), (1, 4)]}
    split = make_split(train, {0: [(2, 5)], 1: [(3, 5), (4, 2)]}, 6)
    env = MovieLensRecEnv(split_data=split, mode="test")
    masks = []
    for user in (0, 1):
        env.reset(options={"user": user})
        before = env.action_masks()
        env.step(2)  # a liked target for user 0 only; the mask must change the same way
        masks.append((before, env.action_masks()))
    np.testing.assert_array_equal(masks[0][0], masks[1][0])
    np.testing.assert_array_equal(masks[0][1], masks[1][1])
    assert np.flatnonzero(~masks[0][1]).tolist() == [0, 1, 2]


def test_no_test_item_in_any_test_start_state(ml100k_split: Split) -> None:
    env = MovieLensRecEnv(split_data=ml100k_split, mode="test")
    all_users = np.arange(ml100k_split.n_users)
    start = env.start_observations(all_users)
    liked = unpack_liked(start["liked"], env.n_items)
    for u in all_users:
        test_items, _ = ml100k_split.test_of(u)
        assert not np.isin(test_items + 1, start["history"][u]).any()
        assert not liked[u, test_items].any()
    excluded = unpack_bits(start["excluded"], env.n_items)
    for u in all_users[::50]:  # nothing recommended yet: excluded = the whole train history
        assert np.flatnonzero(excluded[u]).tolist() == sorted(ml100k_split.train_of(u)[0].tolist())
    for u in env.users[:100]:  # the full history, beyond the last 20, through the mask
        env.reset(options={"user": int(u)})
        test_items, _ = ml100k_split.test_of(u)
        assert env.action_masks()[test_items].all()


# ----------------------------------------------------------------------------- start_observations
def test_start_observations_match_reset(tiny: Split, ml100k_split: Split) -> None:
    for split in (tiny, ml100k_split):
        env = MovieLensRecEnv(split_data=split, mode="test")
        users = env.users[:50]
        batch = env.start_observations(users)
        for row, u in enumerate(users):
            obs, _ = env.reset(options={"user": int(u)})
            assert_obs_equal(obs, {k: v[row] for k, v in batch.items()})
    env = MovieLensRecEnv(split_data=tiny, history_len=3)
    batch = env.start_observations(np.array([0, 0, 2]), prefixes=np.array([1, 4, 1]))
    for row, (u, p) in enumerate([(0, 1), (0, 4), (2, 1)]):
        obs, _ = env.reset(options={"user": u, "prefix": p})
        assert_obs_equal(obs, {k: v[row] for k, v in batch.items()})
    with pytest.raises(ValueError, match="cannot start"):
        env.start_observations(np.array([1]))


# ----------------------------------------------------------------------------- errors
def test_step_before_reset(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny)
    with pytest.raises(ResetNeeded):
        env.step(0)
    with pytest.raises(ResetNeeded):
        env.action_masks()


@pytest.mark.parametrize(
    "action", [-1, TINY_ITEMS, 1.0, "3", True, np.array([1]), np.array(2.0), None]
)
def test_bad_actions(tiny: Split, action: object) -> None:
    env = MovieLensRecEnv(split_data=tiny)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"\[0, {TINY_ITEMS - 1}\]"):
        env.step(action)  # type: ignore[arg-type]


def test_numpy_integer_actions(tiny: Split) -> None:
    env = MovieLensRecEnv(split_data=tiny)
    env.reset(options={"user": 0, "prefix": 2})
    assert env.step(np.int64(2))[1] == pytest.approx(0.8)
    assert env.step(np.array(4, dtype=np.int32))[1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "eval"}, "mode"),
        ({"history_len": 0}, "history_len"),
        ({"like_threshold": 0}, "like_threshold"),
        ({"like_threshold": 6}, "like_threshold"),
        ({"max_steps": 0}, "max_steps"),
        ({"dataset": "ml-7m"}, "unknown dataset"),
        ({"render_mode": "rgb"}, "render_mode"),
        ({"split_data": "ml-100k"}, "split_data"),
    ],
)
def test_bad_constructor_args(tiny: Split, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MovieLensRecEnv(**{"split_data": tiny, **kwargs})


def test_no_eligible_user_is_an_error() -> None:
    split = make_split({0: [(0, 2), (1, 2)]}, {0: [(2, 1)]}, 3)
    with pytest.raises(ValueError, match="no user can start"):
        MovieLensRecEnv(split_data=split)


# ----------------------------------------------------------------------------- render
def test_render_ansi_and_human(tiny: Split, capsys: pytest.CaptureFixture[str]) -> None:
    env = MovieLensRecEnv(split_data=tiny, render_mode="ansi")
    env.reset(options={"user": 0, "prefix": 2})
    text = env.render()
    assert "raw id 100" in text and "Movie 1 (1999)" in text and "no recommendation yet" in text
    env.step(2)
    text = env.render()
    assert 'recommended item 2 "Movie 2 (1999)"' in text and "LIKED (rating 4" in text
    human = MovieLensRecEnv(split_data=tiny, render_mode="human")
    human.reset(options={"user": 2})
    assert "raw id 102" in capsys.readouterr().out


def with_genres(split: Split, genres: np.ndarray, names: tuple[str, ...]) -> Split:
    """``split`` with an item genre matrix (the hand-made data have none)."""
    data = dataclasses.replace(split.data, item_genres=genres, genre_names=names)
    return dataclasses.replace(split, data=data)


def cell(frame: np.ndarray, row: int, col: int) -> tuple[int, ...]:
    """Colour at the centre of grid cell ``(row, col)`` of an rgb_array frame."""
    half = rendering.CELL // 2
    return tuple(frame[row * rendering.CELL + half, col * rendering.CELL + half].tolist())


def test_render_rgb_array_picture(tiny: Split) -> None:
    genres = np.zeros((TINY_ITEMS, 2), bool)
    genres[[0, 2], 0] = True  # items 0 and 2: Action
    genres[1, 1] = True  # item 1: Comedy; the others have no genre
    split = with_genres(tiny, genres, ("Action", "Comedy"))
    colours = [tuple(c) for c in rendering.item_colours(genres).tolist()]
    assert len({colours[0], colours[1], colours[3]}) == 3 and colours[3] == rendering.NO_GENRE
    env = MovieLensRecEnv(split_data=split, render_mode="rgb_array", history_len=3, max_steps=30)
    assert "rgb_array" in env.metadata["render_modes"] and env.metadata["render_fps"] > 0
    with pytest.raises(ResetNeeded):
        env.render()
    env.reset(options={"user": 0, "prefix": 2})  # tokens [0, 1, 2]; targets 2 (4), 3 (1), 4 (5)
    frame = env.render()
    # 1 history row, a blank row, 2 recommendation rows (30 cells), a blank row, the progress bar.
    assert frame.dtype == np.uint8 and frame.shape == (6 * 16, 25 * 16, 3)
    assert frame.shape == rendering.frame_shape(3, 30)
    assert [cell(frame, 0, c) for c in range(4)] == [
        rendering.EMPTY, colours[0], colours[1], rendering.BACKGROUND
    ]  # fmt: skip
    slots = [cell(frame, 2 + t // 25, t % 25) for t in range(30)]
    assert set(slots) == {rendering.EMPTY} and cell(frame, 3, 5) == rendering.BACKGROUND
    assert not (frame[5 * 16 + 8] == rendering.PROGRESS).all(axis=1).any()

    outcomes: list[tuple[int, int, int]] = []
    for item, expected in ((7, rendering.MISS), (3, rendering.DISLIKED), (2, rendering.HIT)):
        env.step(item)
        outcomes.append(expected)
        frame = env.render()
        assert [cell(frame, 2, c) for c in range(len(outcomes) + 1)] == [*outcomes, rendering.EMPTY]
        filled = (frame[5 * 16 + 8] == rendering.PROGRESS).all(axis=1)
        assert filled.sum() == round(400 * len(outcomes) / 30) and filled[: filled.sum()].all()
    # The liked item 2 joined the history band: tokens [1, 2, 3], most recent last.
    assert [cell(frame, 0, c) for c in range(3)] == [colours[0], colours[1], colours[2]]
    np.testing.assert_array_equal(frame, env.render())  # deterministic; render() changes nothing

    env.reset(options={"user": 0, "prefix": 2})
    assert cell(env.render(), 2, 0) == rendering.EMPTY  # a new episode starts a clean band
    # The same session replayed by another environment draws the same pictures.
    other = MovieLensRecEnv(split_data=split, render_mode="rgb_array", history_len=3, max_steps=30)
    other.reset(options={"user": 0, "prefix": 2})
    for item in (7, 3):
        env.step(item)
        other.step(item)
    np.testing.assert_array_equal(env.render(), other.render())


def test_render_rgb_array_through_gym_make_and_checker(ml100k_split: Split) -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("MovieLensRec-v0", split_data=ml100k_split, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no spec" notice as in test_gymnasium_and_sb3_checkers
        check_env(env.unwrapped)  # includes Gymnasium's render checks for the env's render_mode
    env.reset(seed=0)
    for _ in range(60):  # up to max_steps: the recommendation band fills up
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    frame = env.render()
    assert frame.shape == (96, 400, 3) and frame.dtype == np.uint8
    # Gymnasium's frame collector (render_mode="rgb_array_list", as RecordVideo collects) works.
    collected = gym.make("MovieLensRec-v0", split_data=ml100k_split, render_mode="rgb_array_list")
    collected.reset(seed=0)
    collected.step(0)
    frames = collected.render()
    assert len(frames) == 2 and all(f.shape == (96, 400, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[1])  # the step shows in the picture


# ----------------------------------------------------------------------------- checkers, registration
def test_gymnasium_and_sb3_checkers(tiny: Split, ml100k_split: Split) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for split in (tiny, ml100k_split):
        env = MovieLensRecEnv(split_data=split)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no spec" notice: the checkers still run every check
            check_env(env)
        sb3_check_env(env, warn=True)


def test_gym_make_with_real_data(ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIELENS_DATA", str(ml100k_dir))
    env = gym.make("MovieLensRec-v0")
    assert env.spec is not None and env.spec.max_episode_steps is None
    assert env.unwrapped.max_steps == 50
    assert env.action_space.n == 1682
    assert env.observation_space["liked"].shape == (211,)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.action_masks().shape == (1682,)
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    test_env = gym.make("MovieLensRec-v0", mode="test", data_dir=ml100k_dir)
    assert test_env.unwrapped.mode == "test" and len(test_env.unwrapped.users) > 0


def test_spec_json_round_trip_with_reward_map(ml100k_dir: Path) -> None:
    """gym.make(EnvSpec.from_json(env.spec.to_json())) rebuilds the env, reward map included."""
    from gymnasium.envs.registration import EnvSpec

    reward_map = {1: -0.5, 3: 0.25, 4: 2.0, 5: 3.0}
    env = gym.make("MovieLensRec-v0", data_dir=str(ml100k_dir), reward_map=reward_map)
    text = env.spec.to_json()
    assert '"reward_map": {"1": -0.5' in text  # JSON keys are strings
    again = gym.make(EnvSpec.from_json(text))
    assert again.unwrapped.reward_map == env.unwrapped.reward_map == {
        1: -0.5, 2: 0.0, 3: 0.25, 4: 2.0, 5: 3.0
    }  # fmt: skip
    assert EnvSpec.from_json(again.spec.to_json()) == EnvSpec.from_json(text)
    # Same seed, same actions, same rewards; the oracle actions hit targets of several ratings.
    for e in (env, again):
        e.reset(seed=3)
    split = env.unwrapped.split
    rewards: list[list[float]] = [[], []]
    for _ in range(30):
        _, info = env.reset(options={"user": "next"})
        again.reset(options={"user": "next"})
        items, _ = split.train_of(info["user"])
        for item in items[info["prefix"] : info["prefix"] + 5]:
            steps = [e.step(int(item)) for e in (env, again)]
            for out, step in zip(rewards, steps):
                out.append(step[1])
            if steps[0][2]:  # terminated: no liked target left
                break
    assert rewards[0] == rewards[1] and {-0.5, 0.25, 2.0, 3.0} <= set(rewards[0])


def _python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_import_registers_without_torch_or_side_effects() -> None:
    _python(
        "import sys, recsim_env, gymnasium; "
        "assert 'torch' not in sys.modules; "
        "assert 'MovieLensRec-v0' in gymnasium.registry; "
        "assert 'recsim_env.env' not in sys.modules and 'pandas' not in sys.modules"
    )
    _python(
        "import sys, recsim_env; recsim_env.MovieLensRecEnv; recsim_env.load_movielens; "
        "assert 'torch' not in sys.modules"
    )


def test_gym_make_with_module_prefix_in_fresh_interpreter(tiny: Split, ml100k_dir: Path) -> None:
    _python(
        "import os, gymnasium as gym; "
        f"os.environ['MOVIELENS_DATA'] = {str(ml100k_dir)!r}; "
        "env = gym.make('recsim_env:MovieLensRec-v0'); env.reset(seed=0); env.step(0); "
        "assert env.action_space.n == 1682"
    )


def test_public_api_exports() -> None:
    for name in recsim_env.__all__:
        assert getattr(recsim_env, name) is not None
    with pytest.raises(AttributeError):
        recsim_env.does_not_exist  # noqa: B018
