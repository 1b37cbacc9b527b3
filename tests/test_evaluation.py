"""The shared evaluator on hand-made cases with known answers."""

import numpy as np
import pytest

from recsim_env.dataset import MovieLensData, Split
from recsim_env.evaluation import evaluate_ranking, top_k_items


def make_split(train: list[list[int]], test: list[list[int]], n_items: int) -> Split:
    """A Split from per-user item lists (all ratings 5, timestamps in list order)."""
    n_users = len(train)
    users = np.concatenate([[u] * (len(a) + len(b)) for u, (a, b) in enumerate(zip(train, test))]).astype(np.int32)
    items = np.concatenate([a + b for a, b in zip(train, test)]).astype(np.int32)
    data = MovieLensData(
        name="tiny", user=users, item=items, rating=np.full(len(items), 5, np.int8),
        timestamp=np.arange(len(items), dtype=np.int64),
        user_features=np.zeros((n_users, 3), np.int32), user_raw_ids=np.arange(1, n_users + 1),
        item_raw_ids=np.arange(1, n_items + 1), item_titles=np.array([f"m{i}" for i in range(n_items)], object),
        item_years=np.full(n_items, 2000, np.int32), item_genres=np.zeros((n_items, 1), bool), genre_names=("g",),
    )

    def csr(parts):
        indptr = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        flat = np.array([i for p in parts for i in p], dtype=np.int32)
        return indptr, flat, np.full(len(flat), 5, np.int8), np.zeros(len(flat), np.int64)

    tr, te = csr(train), csr(test)
    return Split(data, "temporal", 0.8, None, *tr, *te)


def test_known_answer_precision_recall_ndcg_hit_rate():
    # user 0: train {0}, test {1, 2}; user 1: train {3}, test {4}
    split = make_split([[0], [3]], [[1, 2], [4]], n_items=20)
    # Scores: item index as score, reversed so that low indices rank first.
    def score(users):
        return np.tile(-np.arange(20, dtype=float), (len(users), 1))

    m = evaluate_ranking(score, split, k=2)
    # user 0 ranking (train item 0 excluded): 1, 2 -> 2 hits; user 1 (3 excluded): 0, 1 -> 0 hits
    assert m["n_users"] == 2
    assert m["precision@2"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["recall@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["ndcg@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["hit_rate@2"] == pytest.approx(0.5)


def test_ndcg_rewards_rank_position():
    split = make_split([[0]], [[5]], n_items=10)
    at_top = evaluate_ranking(lambda u: np.eye(10)[[5]] * 10.0, split, k=3)
    second = evaluate_ranking(lambda u: np.array([[0, 0, 0, 0, 0, 5, 6, 0, 0, 0]], float), split, k=3)
    assert at_top["ndcg@3"] == pytest.approx(1.0)
    assert second["ndcg@3"] == pytest.approx(1 / np.log2(3))
    assert second["precision@3"] == pytest.approx(1 / 3)


def test_train_items_are_excluded_unless_disabled():
    split = make_split([[7]], [[1]], n_items=10)
    scores = lambda u: np.array([[0, 5, 0, 0, 0, 0, 0, 9, 0, 0]], float)  # train item 7 scores highest
    assert evaluate_ranking(scores, split, k=1)["precision@1"] == 1.0
    assert evaluate_ranking(scores, split, k=1, exclude_train=False)["precision@1"] == 0.0


def test_users_without_test_items_are_skipped_and_batches_agree():
    rng = np.random.default_rng(0)
    train = [list(rng.choice(50, 5, replace=False)) for _ in range(30)]
    test = [[int(i) for i in rng.choice(50, 3, replace=False) if i not in t] for t in train]
    test[3] = []
    split = make_split(train, test, n_items=50)
    table = rng.normal(size=(30, 50))
    full = evaluate_ranking(lambda u: table[u], split, batch_size=1024)
    small = evaluate_ranking(lambda u: table[u], split, batch_size=7)
    assert full["n_users"] == 29
    for key in ("precision@10", "recall@10", "ndcg@10", "hit_rate@10"):
        assert full[key] == pytest.approx(small[key])


def test_ties_break_towards_lower_item_index():
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0, 3.0]])
    np.testing.assert_array_equal(top_k_items(scores, 2), [[1, 2]])
    np.testing.assert_array_equal(top_k_items(scores, 5), [[1, 2, 3, 5, 0]])


def test_bad_scores_are_rejected():
    split = make_split([[0]], [[1]], n_items=5)
    with pytest.raises(ValueError, match="shape"):
        evaluate_ranking(lambda u: np.zeros((len(u), 4)), split)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(lambda u: np.full((len(u), 5), np.nan), split)


# ----------------------------------------------------------------------------- evaluate_greedy
def test_evaluate_greedy_known_answer_masked_and_unmasked():
    from recsim_env import MovieLensRecEnv, evaluate_greedy

    # user 0: train {0}, test {1, 2}; user 1: train {3}, test {4}; every rating 5 (a like, reward 1).
    split = make_split([[0], [3]], [[1, 2], [4]], n_items=6)
    env = MovieLensRecEnv(split_data=split, mode="test", max_steps=4)

    def lowest_index_first(obs):  # the same ranking for every state: 0, 1, 2, ...
        return np.tile(-np.arange(6, dtype=float), (len(obs["user"]), 1))

    masked = evaluate_greedy(lowest_index_first, env)
    # user 0: 1, 2 (two likes, done); user 1: 0, 1, 2, 4 (miss, miss, miss, like: done at step 4).
    assert masked == {"mean_return": 1.5, "mean_length": 3.0, "mean_likes": 1.5,
                      "mean_liked_items": 1.5, "n_episodes": 2}
    # Unmasked, the deterministic argmax repeats item 0 until truncation.
    assert evaluate_greedy(lowest_index_first, env, masked=False) == {
        "mean_return": 0.0, "mean_length": 4.0, "mean_likes": 0.0, "mean_liked_items": 0.0,
        "n_episodes": 2,
    }
    with pytest.raises(ValueError, match=r"expected \(1, 6\)"):
        evaluate_greedy(lambda obs: np.zeros((1, 5)), env)


def test_evaluate_greedy_vector_env_equals_single_env(ml100k_split):
    import gymnasium as gym

    from recsim_env import MovieLensRecEnv, evaluate_greedy

    popularity = np.bincount(ml100k_split.train_items, minlength=ml100k_split.n_items).astype(float)

    def score(obs):
        return np.tile(popularity, (len(obs["user"]), 1))

    single = MovieLensRecEnv(split_data=ml100k_split, mode="test", max_steps=20)
    vec = gym.make_vec("MovieLensRec-v0", num_envs=16, vectorization_mode="vector_entry_point",
                       mode="test", split_data=ml100k_split, max_steps=20)
    users = single.users[:40]  # 40 users on 16 envs: a padded last batch
    got = evaluate_greedy(score, vec, users)
    assert got == pytest.approx(evaluate_greedy(score, single, users))
    assert got["n_episodes"] == 40 and got["mean_return"] > 0
