"""load_interactions: any interaction log (CSV, Parquet, DataFrame) as the dataset every part of
the package takes, and its clear errors."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents.baselines import EASERecommender, ItemCFRecommender, PopularityRecommender
from recsim_env import evaluate_ranking, load_interactions, split_ratings


def make_log(n_users: int = 8, n_items: int = 15, per_user: int = 6, seed: int = 0) -> pd.DataFrame:
    """A small explicit log: string user ids, integer item ids, 1..5 ratings, ISO times, a segment."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        for k, i in enumerate(items):
            day = 1 + k + (u % 3)
            rows.append({"customer": f"c{u:02d}", "product": int(i) * 10, "stars": int(rng.integers(1, 6)),
                         "when": f"2024-03-{day:02d}T{u:02d}:00:00", "segment": ["b2b", "b2c"][u % 2]})
    return pd.DataFrame(rows)


def test_csv_with_string_ids_and_implicit_feedback(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text("user,item\n007,a\n007,b\n7,a\n7,c\n7,b\nann,c\nann,a\n")
    data = load_interactions(path, user="user", item="item")
    assert data.name == "clicks" and (data.n_users, data.n_items, data.n_ratings) == (3, 3, 7)
    # "007" and "7" are different users: ids are only integers when nothing is lost.
    assert data.user_raw_ids.tolist() == ["007", "7", "ann"]
    assert data.user.tolist() == [0, 0, 1, 1, 1, 2, 2] and data.item.tolist() == [0, 1, 0, 2, 1, 2, 0]
    assert (data.feedback, data.rating_scale, data.like_threshold) == ("implicit", (1,), 1)
    assert data.rating.tolist() == [1] * 7 and data.timestamp.tolist() == list(range(7))  # row order
    assert data.user_features.shape == (3, 0) and data.user_feature_names == ()


def test_integer_ids_map_recommendations_back(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("u\ti\tts\n10\t500\t3\n10\t400\t1\n20\t400\t2\n20\t600\t5\n")
    data = load_interactions(path, user="u", item="i", timestamp="ts")
    assert data.user_raw_ids.dtype == np.int64 and data.item_raw_ids.tolist() == [400, 500, 600]
    assert data.timestamp.tolist() == [3, 1, 2, 5]
    actions = data.item_index([600, 400])
    assert actions.tolist() == [2, 0] and data.item_raw_ids[actions].tolist() == [600, 400]


def test_csv_parquet_and_dataframe_give_the_same_data(tmp_path: Path) -> None:
    log = make_log()
    log.to_csv(tmp_path / "log.csv", index=False)
    log.to_parquet(tmp_path / "log.parquet")
    kwargs = dict(user="customer", item="product", rating="stars", timestamp="when", user_features=["segment"])
    loaded = [load_interactions(src, **kwargs) for src in (tmp_path / "log.csv", tmp_path / "log.parquet", log)]
    for data in loaded:
        assert data.feedback == "explicit" and data.like_threshold == 4
        assert data.rating_scale == tuple(sorted(set(log["stars"])))
        assert data.user_feature_names == ("segment",) and data.user_feature_categories == (("b2b", "b2c"),)
        assert data.user_features[:, 0].tolist() == [u % 2 for u in range(8)]
        assert data.timestamp[0] == pd.Timestamp(log["when"][0], tz="UTC").timestamp()
        for field in ("user", "item", "rating", "timestamp", "user_features", "user_raw_ids", "item_raw_ids"):
            np.testing.assert_array_equal(getattr(data, field), getattr(loaded[0], field))


def test_the_loaded_data_work_everywhere() -> None:
    """Split, env, vector env, learned user model, baselines and the evaluator take the log."""
    data = load_interactions(make_log(n_users=12, per_user=8), user="customer", item="product", rating="stars",
                             timestamp="when", user_features=["segment"])
    split = split_ratings(data)
    env = gym.make("MovieLensRec-v0", data=data, mode="test")
    assert env.observation_space["user"].shape == (1,) and env.action_space.n == data.n_items
    obs, info = env.reset(seed=0)
    assert obs["user"].tolist() == [data.user_features[info["user"], 0]]
    envs = gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="vector_entry_point", data=data)
    envs.reset(seed=0)
    envs.step(np.array([0, 1]))
    model_env = gym.make("MovieLensRec-v0", data=data, user_model="ease", user_model_kwargs={"l2": 1.0})
    model_env.reset(seed=0)
    assert model_env.step(0)[4]["rating"] in (0, 4, 5)
    for model in (PopularityRecommender(), ItemCFRecommender(), EASERecommender(l2=1.0)):
        metrics = evaluate_ranking(model.fit(split).score, split, k=5)
        assert metrics["n_users"] == 12 and 0.0 <= metrics["precision@5"] <= 1.0


def test_value_column_sets_the_worth_of_implicit_interactions() -> None:
    log = pd.DataFrame({"u": [1, 1, 1, 1, 2, 2], "i": [1, 2, 3, 4, 1, 3], "spent": [2, 10, 5, 2, 2, 2]})
    data = load_interactions(log, user="u", item="i", value="spent")
    assert (data.feedback, data.rating_scale, data.like_threshold) == ("implicit", (2, 5, 10), 2)
    env = gym.make("MovieLensRec-v0", data=data).unwrapped
    assert env.reward_map == {2: 2.0, 5: 5.0, 10: 10.0}
    env.reset(options={"user": 0, "prefix": 1})  # user 1's train part: item 1 (history), 2 and 3 (targets)
    assert [env.step(a)[1] for a in (2, 1)] == [5.0, 10.0]


def test_duplicates_keep_the_latest_or_earliest_by_time() -> None:
    log = pd.DataFrame({"u": ["a", "a", "a", "b", "b"], "i": ["x", "x", "y", "x", "y"],
                        "r": [2, 5, 3, 4, 4], "t": [20, 10, 30, 1, 2]})
    with pytest.raises(ValueError, match=r"1 \(user, item\) pair\(s\) occur more than once.*u='a' with "
                                         r"i='x' at row 0 \(index 0\) and row 1.*duplicates='last'"):
        load_interactions(log, user="u", item="i", rating="r", timestamp="t")
    last = load_interactions(log, user="u", item="i", rating="r", timestamp="t", duplicates="last")
    first = load_interactions(log, user="u", item="i", rating="r", timestamp="t", duplicates="first")
    assert last.rating.tolist() == [2, 3, 4, 4] and last.timestamp.tolist() == [20, 30, 1, 2]  # t=20 is later
    assert first.rating.tolist() == [5, 3, 4, 4] and first.timestamp.tolist() == [10, 30, 1, 2]


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        ("user,item\n1,2\n", dict(user="user_id", item="item"),
         r"no column 'user_id'; its columns are 'user', 'item'"),
        ("u,i\n1,2\n,3\n1,3\n2,3\n", {}, r"user id column 'u' has 1 missing value\(s\), the first at line 3"),
        ("u,i,t\n1,2,2024-01-01\n1,3,2024-13-45\n2,3,2024-01-02\n2,2,2024-01-02\n", dict(timestamp="t"),
         r"timestamp '2024-13-45' at line 3 \(column 't'\) cannot be parsed"),
        ("u,i,t\n1,2,1700000000\n1,3,soon\n2,3,1700000001\n2,2,1\n", dict(timestamp="t"),
         r"timestamp 'soon' at line 3 \(column 't'\) is not a number"),
        ("u,i\n1,2\n1,3\n2,3\n3,1\n4,1\n", {},
         r"3 of 4 users have a single interaction \(e.g. u=2\).*transform\('size'\) >= 2"),
        ("u,i,r\n1,2,4\n1,3,five\n2,3,1\n2,2,1\n", dict(rating="r"), r"rating 'five' at line 3 \(column 'r'\) is not a number"),
        ("u,i,r\n1,2,4\n1,3,0\n2,3,1\n2,2,1\n", dict(rating="r"), r"rating 0.0 at line 3 .* must be > 0"),
        ("u,i,r\n1,2,40\n1,3,70\n2,3,10\n2,2,10\n", dict(rating="r"), r"does not hold the default like_threshold 4"),
        ("u,i,g\n1,2,x\n1,3,y\n2,3,x\n2,2,x\n", dict(user_features=["g"]),
         r"user feature 'g' changes within user 1 \(values \['x', 'y'\]\)"),
        ("u,i,g\n1,2,x\n1,3,x\n2,3,\n2,2,\n", dict(user_features=["g"]), r"user feature 'g' is missing in 2 row"),
        ("u,i,r\n1,2,4\n", dict(rating="r", value="r"), r"not both"),
        ("u,i\n1,2\n", dict(like_threshold=3), r"needs rating="),
        ("u,i\n1,2\n", dict(item="u"), r"one purpose only"),
        ("u,i\n1,2\n", dict(duplicates="sum"), r"duplicates must be one of"),
    ],
)  # fmt: skip
def test_bad_logs_name_the_problem_and_the_fix(tmp_path: Path, text: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_interactions(_csv(tmp_path, text), **{"user": "u", "item": "i", **kwargs})


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_interactions(tmp_path / "missing.csv", user="u", item="i")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unknown file type \.json; a log is a CSV"):
        load_interactions(tmp_path / "log.json", user="u", item="i")
    with pytest.raises(ValueError, match="has no rows"):
        load_interactions(pd.DataFrame({"u": [], "i": []}), user="u", item="i")
