"""A trained model's metrics: full-ranking metrics on a split's test part and the greedy
policy's simulated return, beside popularity on the same split (the one evaluator of
:mod:`recsim_env.evaluation`)."""

from __future__ import annotations

from agents.config import TrainConfig
from agents.make import make_env, make_test_vec_env

#: The ranking metrics a run reports, in report order.
METRIC_KEYS = ("precision@10", "recall@10", "ndcg@10", "hit_rate@10")


def evaluate_model(
    model, config: TrainConfig, split, k: int = 10, greedy: bool = True, return_per_user: bool = False
) -> dict:
    """Ranking metrics on ``split``'s test part plus the greedy policy's simulated return.

    :param model: trained SB3 model
    :param config: the run's config (environment settings)
    :param split: the split to evaluate on (its test part is the target)
    :param k: metric cut-off
    :param greedy: also simulate the greedy policy, one test episode per eligible user
    :param return_per_user: also return the ranking metrics of every user under ``"per_user"``
        (for paired tests, :mod:`recsim_env.significance`)
    :return: ``evaluate_ranking``'s metrics, averaged over the ``n_users`` users with at least one
        test item, and ``greedy_mean_return``, ``greedy_mean_likes``, ``greedy_mean_length``
        averaged over the ``greedy_n_users`` users with at least one *liked* test item (the
        users a test episode can start from: 907 of 943 on ML-100K's default split). With
        ``return_per_user``, ``"per_user"`` is ``evaluate_ranking``'s: ``"user"`` (every user with
        a test item, ascending index) and one float64 array per ranking metric aligned to it,
        whose mean is that metric exactly (the greedy return is not split by user)
    """
    from agents.scoring import greedy_return, make_score_fn
    from recsim_env import evaluate_ranking

    test_env = make_env(config, split, "test")
    metrics = evaluate_ranking(make_score_fn(model, test_env), split, k=k, return_per_user=return_per_user)
    if greedy:
        vec = make_test_vec_env(config, split)
        sim = greedy_return(model, vec)
        vec.close()
        metrics.update({f"greedy_{key}": value for key, value in sim.items() if key != "n_episodes"})
        metrics["greedy_n_users"] = sim["n_episodes"]  # one episode per user
    test_env.close()
    return metrics


def popularity_metrics(split, k: int = 10, return_per_user: bool = False) -> dict:
    """The popularity ranking evaluated by the same evaluator on the same split.

    :param split: the split to evaluate on
    :param k: metric cut-off
    :param return_per_user: also return ``"per_user"``, as :func:`evaluate_model` does
    """
    from agents.baselines.popularity import PopularityRecommender
    from recsim_env import evaluate_ranking

    return evaluate_ranking(PopularityRecommender().fit(split).score, split, k=k, return_per_user=return_per_user)
