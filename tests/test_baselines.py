"""The Table 1 baselines on tiny hand-made data whose right answer is obvious."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agents.baselines import (
    EASERecommender,
    ItemCFRecommender,
    PopularityRecommender,
    UserCFRecommender,
    available_recommenders,
    interaction_matrix,
    make_recommender,
)
from agents.baselines.tuning import tune
from recsim_env.dataset import MovieLensData, Split
from recsim_env.evaluation import evaluate_ranking


def make_split(train: list[list[int]], test: list[list[int]], n_items: int) -> Split:
    """A Split from per-user item lists (ratings 4, timestamps in list order)."""
    n_users = len(train)
    users = np.concatenate([[u] * (len(a) + len(b)) for u, (a, b) in enumerate(zip(train, test))]).astype(np.int32)
    items = np.concatenate([list(a) + list(b) for a, b in zip(train, test)]).astype(np.int32)
    data = MovieLensData(
        name="tiny", user=users, item=items, rating=np.full(len(items), 4, np.int8),
        timestamp=np.arange(len(items), dtype=np.int64), user_features=np.zeros((n_users, 3), np.int32),
        user_raw_ids=np.arange(1, n_users + 1), item_raw_ids=np.arange(1, n_items + 1),
        item_titles=np.array([f"m{i}" for i in range(n_items)], object),
        item_years=np.full(n_items, 2000, np.int32), item_genres=np.zeros((n_items, 1), bool), genre_names=("g",),
    )  # fmt: skip

    def csr(parts: list[list[int]]) -> tuple[np.ndarray, ...]:
        indptr = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        flat = np.array([i for p in parts for i in p], dtype=np.int32)
        return indptr, flat, np.full(len(flat), 4, np.int8), np.arange(len(flat), dtype=np.int64)

    return Split(data, "temporal", 0.8, None, *csr(train), *csr(test))


@pytest.fixture
def co_occurrence_split() -> Split:
    """Items 0 and 1 always go together; item 5 is the most popular item overall.

    User 0 has seen only item 0 and will see item 1: the co-occurring item, not the popular one.
    """
    train = [[0]] + [[0, 1, 5]] * 3 + [[5, 2]] * 4 + [[5, 3], [5, 4], [2, 3]]
    test = [[1]] + [[]] * 10
    return make_split(train, test, n_items=6)


def brute_force_itemcf(x: np.ndarray, k: int | None, shrinkage: float = 0.0) -> np.ndarray:
    """The docstring's rule, literally: score(u, j) = sum_{i in train(u) ∩ N_k(j)} sim(i, j)."""
    n_items = x.shape[1]
    norms = np.sqrt(x.sum(0))
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i != j and norms[i] > 0 and norms[j] > 0:
                sim[i, j] = (x[:, i] * x[:, j]).sum() / (norms[i] * norms[j] + shrinkage)
    scores = np.zeros_like(x, dtype=float)
    for j in range(n_items):
        order = np.argsort(-sim[:, j], kind="stable")
        neighbours = [i for i in order if i != j][: (n_items if k is None else k)]
        for u in range(x.shape[0]):
            scores[u, j] = sum(sim[i, j] for i in neighbours if x[u, i])
    return scores


def brute_force_usercf(x: np.ndarray, k: int | None, shrinkage: float = 0.0) -> np.ndarray:
    """score(u, j) = sum_{v in kNN(u)} sim(u, v) * r(v, j)."""
    n_users = x.shape[0]
    norms = np.sqrt(x.sum(1))
    sim = (x @ x.T) / (np.outer(norms, norms) + shrinkage)
    np.fill_diagonal(sim, 0.0)
    scores = np.zeros_like(x, dtype=float)
    for u in range(n_users):
        order = [v for v in np.argsort(-sim[u], kind="stable") if v != u][: (n_users if k is None else k)]
        scores[u] = sum(sim[u, v] * x[v] for v in order)
    return scores


def random_split(seed: int, n_users: int = 12, n_items: int = 9) -> tuple[Split, np.ndarray]:
    """A random binary split (similarity ties included: neighbourhoods break them by lower index)."""
    rng = np.random.default_rng(seed)
    train = [sorted(rng.choice(n_items, rng.integers(2, 6), replace=False).tolist()) for _ in range(n_users)]
    split = make_split(train, [[]] * n_users, n_items)
    return split, interaction_matrix(split).toarray()


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, agents.baselines as b; b.available_recommenders(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_builds_every_model_with_its_params() -> None:
    assert set(available_recommenders()) >= {"popularity", "itemcf", "usercf", "ease", "sasrec", "gru4rec", "stamp"}
    assert make_recommender("itemcf", k=7).get_params() == {"k": 7, "shrinkage": 0.0}
    sasrec = make_recommender("sasrec", dim=16, seed=3).get_params()
    assert sasrec["dim"] == 16 and sasrec["seed"] == 3 and sasrec["n_blocks"] == 2
    with pytest.raises(KeyError, match="Unknown baseline 'nope'"):
        make_recommender("nope")


def test_interaction_matrix_is_binary_over_train_only() -> None:
    split = make_split([[0, 2, 2], [1]], [[3], [0]], n_items=4)
    np.testing.assert_array_equal(interaction_matrix(split).toarray(), [[1, 0, 1, 0], [0, 1, 0, 0]])


def test_popularity_counts_users_per_item(co_occurrence_split: Split) -> None:
    model = PopularityRecommender().fit(co_occurrence_split)
    scores = model.score(np.array([0, 4]))
    assert scores.dtype == np.float32 and scores.shape == (2, 6)
    np.testing.assert_array_equal(scores[0], [4, 3, 5, 2, 1, 9])
    np.testing.assert_array_equal(scores[0], scores[1])
    # popularity recommends the popular item 5 to user 0, who wants item 1
    assert evaluate_ranking(model.score, co_occurrence_split, k=1)["precision@1"] == 0.0


@pytest.mark.parametrize("model", [ItemCFRecommender(k=2), ItemCFRecommender(k=None), EASERecommender(l2=1.0)])
def test_item_models_recommend_the_co_occurring_item(co_occurrence_split: Split, model) -> None:
    model.fit(co_occurrence_split)
    scores = model.score(np.arange(co_occurrence_split.n_users))
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert evaluate_ranking(model.score, co_occurrence_split, k=1)["precision@1"] == 1.0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 3, None])
def test_itemcf_follows_its_documented_neighbour_rule(seed: int, k: int | None) -> None:
    split, x = random_split(seed)
    got = ItemCFRecommender(k=k).fit(split).score(np.arange(split.n_users))
    np.testing.assert_allclose(got, brute_force_itemcf(x, k), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 4, None])
def test_usercf_follows_its_documented_neighbour_rule(seed: int, k: int | None) -> None:
    split, x = random_split(seed)
    got = UserCFRecommender(k=k).fit(split).score(np.arange(split.n_users))
    np.testing.assert_allclose(got, brute_force_usercf(x, k), rtol=1e-5, atol=1e-6)


def test_usercf_recommends_the_nearest_neighbours_item() -> None:
    # user 0 is closest to user 1 (3 shared items), who also has item 7; items 8 is more
    # popular among the less similar users 2..5
    train = [[0, 1, 2], [0, 1, 2, 7], [0, 8], [1, 8], [2, 8], [3, 8]]
    split = make_split(train, [[7]] + [[]] * 5, n_items=9)
    assert evaluate_ranking(UserCFRecommender(k=1).fit(split).score, split, k=1)["precision@1"] == 1.0
    assert evaluate_ranking(PopularityRecommender().fit(split).score, split, k=1)["precision@1"] == 0.0


def test_ease_weights_have_zero_diagonal_and_shrink_with_l2(co_occurrence_split: Split) -> None:
    weak = EASERecommender(l2=1.0).fit(co_occurrence_split)
    strong = EASERecommender(l2=1e4).fit(co_occurrence_split)
    assert np.all(np.diag(weak.weights_) == 0)
    assert np.abs(strong.weights_).max() < np.abs(weak.weights_).max() / 100
    with pytest.raises(ValueError, match="l2 must be > 0"):
        EASERecommender(l2=0).fit(co_occurrence_split)


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        ItemCFRecommender().score(np.array([0]))


def test_tuning_uses_the_validation_slice_never_the_test_part(co_occurrence_split: Split) -> None:
    # Two splits with the same train part and opposite test parts must tune identically.
    train = [co_occurrence_split.train_of(u)[0].tolist() for u in range(co_occurrence_split.n_users)]
    other = make_split(train, [[5]] + [[1]] * 10, n_items=6)
    grid = [{"l2": 1.0}, {"l2": 50.0}, {"l2": 1e4}]
    a = tune("ease", co_occurrence_split, grid=grid, fraction=0.4)
    b = tune("ease", other, grid=grid, fraction=0.4)
    assert a.params == b.params and a.value == b.value
    assert len(a.trials) == 3 and a.value == max(t["value"] for t in a.trials)


# Neural models --------------------------------------------------------------------------------

N_CYCLE = 5


def cycle_split(n_users: int = 20, length: int = 12) -> Split:
    """Every user walks the cycle 0 -> 1 -> 2 -> 3 -> 4 -> 0 from a different start."""
    train = [[(u + t) % N_CYCLE for t in range(length + u % 3)] for u in range(n_users)]
    return make_split(train, [[]] * n_users, n_items=N_CYCLE + 2)  # two never-seen items


FAST = dict(dim=16, max_len=8, epochs=40, batch_size=16, lr=1e-2, dropout=0.0, num_threads=1, seed=0)


@pytest.mark.parametrize(
    "name, extra", [("sasrec", {}), ("sasrec", {"loss": "bce", "epochs": 80}), ("gru4rec", {}), ("stamp", {})]
)
def test_sequence_models_learn_a_deterministic_cycle(name: str, extra: dict) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    split = cycle_split()
    model = make_recommender(name, **{**FAST, **extra}).fit(split)
    users = np.arange(split.n_users)
    scores = model.score(users)
    assert scores.dtype == np.float32 and scores.shape == (split.n_users, split.n_items)
    assert np.isfinite(scores).all()
    last = np.array([split.train_of(u)[0][-1] for u in users])
    np.testing.assert_array_equal(scores.argmax(1), (last + 1) % N_CYCLE)
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_sequence_model_is_reproducible_and_early_stops() -> None:
    pytest.importorskip("torch")
    split = cycle_split()
    params = {**FAST, "epochs": 20, "patience": 2}
    a = make_recommender("gru4rec", **params).fit(split).score(np.arange(4))
    b = make_recommender("gru4rec", **params).fit(split).score(np.arange(4))
    np.testing.assert_array_equal(a, b)
    values = iter([0.3, 0.5, 0.4, 0.2, 0.9])  # best after epoch 2, then two worse: stop at 4
    model = make_recommender("gru4rec", **params).fit(split, monitor=lambda m: next(values))
    assert model.best_epoch_ == 2 and len(model.loss_history_) == 4


def test_windows_make_every_train_item_but_the_first_a_target_once() -> None:
    pytest.importorskip("torch")
    from agents.baselines.sequential import last_tokens, train_windows

    split = make_split([list(range(7)), [3], [4, 5]], [[]] * 3, n_items=8)
    windows = train_windows(split, max_len=3)
    targets = sorted(int(t) for w in windows for t in w[1:][w[:-1] > 0])
    assert targets == [2, 3, 4, 5, 6, 6, 7]  # tokens = item + 1: user 0 items 1..6, user 2 item 5
    np.testing.assert_array_equal(last_tokens(split, np.array([0, 1]), 3), [[5, 6, 7], [0, 0, 4]])


def test_tuning_picks_the_early_stopped_epoch_count_for_neural_models() -> None:
    pytest.importorskip("torch")
    split = cycle_split()
    result = tune("stamp", split, fixed={**FAST, "epochs": 3, "patience": 1})
    assert set(result.params) == {"epochs"} and 1 <= result.params["epochs"] <= 3


@pytest.mark.parametrize("name", ["popularity", "itemcf", "usercf", "ease", "stamp"])
def test_every_baseline_scores_environment_states_and_follows_the_episode(name, ml100k_split) -> None:
    """score_states: the model as a policy, scoring the observation's state (not the user id)."""
    import gymnasium as gym

    from agents.baselines import make_recommender
    from agents.baselines.base import state_items
    from recsim_env import evaluate_greedy

    split = ml100k_split
    params = {"stamp": {"epochs": 1, "max_len": 20}, "usercf": {"k": 20}}.get(name, {})
    model = make_recommender(name, **params).fit(split)
    env = gym.make("MovieLensRec-v0", split_data=split, mode="test")
    users = env.unwrapped.users[:40]
    obs = env.unwrapped.start_observations(users)
    scores = model.score_states(obs)
    assert scores.shape == (40, split.n_items) and scores.dtype == np.float32
    if name == "popularity":
        np.testing.assert_array_equal(scores, model.score(users))
    elif name == "stamp":  # max_len = history_len = 20: the state's history is its input
        np.testing.assert_allclose(scores, model.score(users), rtol=1e-5, atol=1e-5)
    elif name in ("itemcf", "ease"):
        weights = model.weights_ if name == "ease" else model.sim_
        np.testing.assert_allclose(scores, state_items(obs, split.n_items) @ weights, rtol=1e-4, atol=1e-5)
    # A like changes the state, and so the scores of the next step.
    user = int(users[0])
    liked_test = [int(i) for i, r in zip(*split.test_of(user)) if r >= 4]
    first, _ = env.reset(options={"user": user})
    after, reward, *_ = env.step(liked_test[0])
    assert reward > 0
    before_scores = model.score_states({k: v[None] for k, v in first.items()})
    after_scores = model.score_states({k: v[None] for k, v in after.items()})
    assert (name == "popularity") == np.array_equal(before_scores, after_scores)
    vec = gym.make_vec("MovieLensRec-v0", num_envs=16, vectorization_mode="vector_entry_point",
                       split_data=split, mode="test", max_steps=5)
    result = evaluate_greedy(model.score_states, vec, users=users)
    assert result["n_episodes"] == 40 and result["mean_return"] > 0
