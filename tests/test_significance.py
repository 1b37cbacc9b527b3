"""``recsim_env.significance``: paired tests over per-user values, on cases with known answers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import recsim_env
from recsim_env import compare_to_reference, holm, mean_over_seeds, paired_bootstrap_ci, paired_test

REPO = Path(__file__).resolve().parents[1]


def per_user_precision(n: int = 400, seed: int = 0) -> np.ndarray:
    """Per-user precision@10 values (multiples of 0.1), as the evaluator gives them."""
    return np.random.default_rng(seed).integers(0, 11, n) / 10


@pytest.mark.parametrize("method", ["wilcoxon", "t"])
def test_identical_models_give_p_1_and_a_zero_interval(method: str) -> None:
    a = per_user_precision()
    assert paired_test(a, a.copy(), method=method) == 1.0
    assert paired_bootstrap_ci(a, a.copy()) == (0.0, 0.0)


def test_differences_that_are_float_noise_count_as_none() -> None:
    b = per_user_precision()
    a = (b + 0.1) - 0.1  # the same values up to rounding (0.3 + 0.1 - 0.1 != 0.3)
    assert not np.array_equal(a, b)
    assert paired_test(a, b) == 1.0 and paired_test(a, b, method="t") == 1.0


def test_a_constant_shift_on_many_users_is_significant_and_inside_the_interval() -> None:
    b = np.random.default_rng(1).integers(0, 9, 500) / 8  # dyadic: a - b is exactly 0.25
    a = b + 0.25
    assert paired_test(a, b) < 1e-50
    assert paired_test(a, b, method="t") == 0.0  # no variance: an infinite t statistic
    low, high = paired_bootstrap_ci(a, b)
    assert low <= 0.25 <= high and (low, high) == (0.25, 0.25)
    # a shift that is not a binary fraction: within float rounding of the interval
    low, high = paired_bootstrap_ci(b + 0.1, b)
    assert low == pytest.approx(0.1, abs=1e-12) and high == pytest.approx(0.1, abs=1e-12)


def test_the_sign_of_the_difference_does_not_change_the_two_sided_p_value() -> None:
    rng = np.random.default_rng(2)
    b = per_user_precision(300, seed=3)
    a = np.clip(b + rng.choice([-0.1, 0.0, 0.1, 0.2], size=b.size), 0, 1)
    for method in ("wilcoxon", "t"):
        assert paired_test(a, b, method=method) == pytest.approx(paired_test(b, a, method=method))
    low, high = paired_bootstrap_ci(a, b)
    assert low < np.mean(a - b) < high
    assert paired_bootstrap_ci(b, a) == pytest.approx((-high, -low))


def test_paired_t_matches_a_hand_computation() -> None:
    # d = [1, 0, 0.5]: mean 0.5, sd 0.5, t = 0.5 / (0.5 / sqrt 3) = sqrt 3 on 2 degrees of freedom;
    # the t(2) CDF is 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(3/5).
    assert paired_test([1.0, 2.0, 3.0], [0.0, 2.0, 2.5], method="t") == pytest.approx(1 - math.sqrt(0.6))


def test_wilcoxon_matches_a_hand_computation() -> None:
    # 5 users, all 5 differences positive: the exact null puts 1/32 on each extreme, p = 2/32.
    assert paired_test([0.3, 0.5, 0.2, 0.9, 0.4], [0.1, 0.2, 0.0, 0.3, 0.35]) == pytest.approx(2 / 32)


def test_ties_pull_the_wilcoxon_p_value_up_unless_zero_method_wilcox() -> None:
    """zsplit (the default) counts users on whom the models tie; 'wilcox' drops them."""
    b = np.zeros(200)
    a = b.copy()
    a[:12] = 0.1  # 12 users better, 188 tied
    zsplit, wilcox = paired_test(a, b), paired_test(a, b, zero_method="wilcox")
    assert wilcox < 0.01 < zsplit < 0.5
    assert paired_test(a, b, zero_method="pratt") < zsplit


def test_holm_known_answer_and_properties() -> None:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.4, 0.001]), [0.8, 0.8, 0.003])  # monotone: 0.5 -> 0.8
    adjusted = holm([0.2, 0.9, 0.6, 0.04])
    assert adjusted.max() == 1.0 and np.all(adjusted >= [0.2, 0.9, 0.6, 0.04])
    assert holm([]).shape == (0,) and holm([0.02]).tolist() == [0.02]
    for bad in ([0.1, 1.5], [np.nan], [-0.1]):
        with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
            holm(bad)


def test_bootstrap_is_reproducible_by_seed() -> None:
    a, b = per_user_precision(seed=4), per_user_precision(seed=5)
    first = paired_bootstrap_ci(a, b, n_resamples=2_000, seed=7)
    assert paired_bootstrap_ci(a, b, n_resamples=2_000, seed=7) == first
    assert paired_bootstrap_ci(a, b, n_resamples=2_000, seed=8) != first
    narrow = paired_bootstrap_ci(a, b, n_resamples=2_000, seed=7, confidence=0.5)
    assert first[0] < narrow[0] < narrow[1] < first[1]


def test_mismatched_users_are_a_clear_error() -> None:
    a, b = per_user_precision(10), per_user_precision(9)
    for call in (lambda: paired_test(a, b), lambda: paired_bootstrap_ci(a, b)):
        with pytest.raises(ValueError, match="same users in the same order"):
            call()
    with pytest.raises(ValueError, match="NaN or infinite"):
        paired_test([0.1, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2"):
        paired_test([0.1], [0.2])
    with pytest.raises(ValueError, match="method must be one of"):
        paired_test(a, a, method="sign")
    with pytest.raises(ValueError, match="applies to method='wilcoxon' only"):
        paired_test(a, a, method="t", zero_method="pratt")
    with pytest.raises(ValueError, match="confidence must lie in"):
        paired_bootstrap_ci(a, a, confidence=95)


def test_mean_over_seeds_averages_per_user_and_checks_users() -> None:
    np.testing.assert_allclose(mean_over_seeds([[0.1, 0.2], [0.3, 0.0]]), [0.2, 0.1])
    seeds = [{"user": np.array([2, 5]), "ndcg@10": np.array([0.5, 0.0])},
             {"user": np.array([2, 5]), "ndcg@10": np.array([1.0, 0.25])}]  # fmt: skip
    mean = mean_over_seeds(seeds)
    np.testing.assert_array_equal(mean["user"], [2, 5])
    np.testing.assert_allclose(mean["ndcg@10"], [0.75, 0.125])
    with pytest.raises(ValueError, match="seed 1 has shape"):
        mean_over_seeds([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match="other users than seed 0"):
        mean_over_seeds([seeds[0], {**seeds[1], "user": np.array([2, 6])}])
    with pytest.raises(ValueError, match="at least one seed"):
        mean_over_seeds([])


def test_compare_to_reference_rows_and_holm_per_metric() -> None:
    rng = np.random.default_rng(6)
    n = 300
    ref_p = per_user_precision(n, seed=9)
    reference = {"precision@10": ref_p, "ndcg@10": ref_p * 0.8}
    worse = np.clip(ref_p - rng.choice([0.0, 0.1, 0.2], n), 0, 1)  # clearly below the reference
    others = {
        "same": {"precision@10": ref_p.copy(), "ndcg@10": ref_p * 0.8},
        "worse": {"precision@10": worse, "ndcg@10": worse * 0.8},
    }
    rows = compare_to_reference(reference, others, n_resamples=1_000)
    assert [(r["model"], r["metric"]) for r in rows] == [
        ("same", "precision@10"), ("worse", "precision@10"), ("same", "ndcg@10"), ("worse", "ndcg@10")]
    assert set(rows[0]) == {"model", "metric", "reference_mean", "model_mean", "mean_difference",
                            "ci_low", "ci_high", "p_value", "p_holm"}  # fmt: skip
    same, worse_row = rows[0], rows[1]
    assert same["p_value"] == 1.0 and same["p_holm"] == 1.0 and (same["ci_low"], same["ci_high"]) == (0.0, 0.0)
    assert worse_row["mean_difference"] == pytest.approx(worse.mean() - ref_p.mean())  # model - reference
    assert worse_row["ci_high"] < 0 and worse_row["p_value"] < 1e-10
    assert worse_row["model_mean"] == pytest.approx(worse.mean()) and worse_row["reference_mean"] == ref_p.mean()
    # Holm over the two models of one metric: the smaller p doubles
    assert worse_row["p_holm"] == pytest.approx(min(1.0, 2 * worse_row["p_value"]))
    assert worse_row == compare_to_reference(reference, others, n_resamples=1_000)[1]  # seeded


def test_compare_to_reference_refuses_other_users() -> None:
    reference = {"user": np.arange(4), "precision@10": np.array([0.1, 0.2, 0.0, 0.3])}
    shorter = {"precision@10": np.array([0.1, 0.2, 0.0])}
    with pytest.raises(ValueError, match="model 'shorter' has per-user values of shape"):
        compare_to_reference(reference, {"shorter": shorter}, metrics=["precision@10"])
    moved = {"user": np.array([0, 1, 2, 5]), "precision@10": np.array([0.1, 0.2, 0.0, 0.3])}
    with pytest.raises(ValueError, match="other users than the reference"):
        compare_to_reference(reference, {"moved": moved}, metrics=["precision@10"])
    with pytest.raises(ValueError, match="has no per-user 'ndcg@10'"):
        compare_to_reference(reference, {"x": reference}, metrics=["ndcg@10"])
    with pytest.raises(ValueError, match="others is empty"):
        compare_to_reference(reference, {})


def test_per_user_output_of_the_evaluator_feeds_the_comparison(ml100k_split) -> None:
    """evaluate_ranking's per-user arrays: the users with test items, means equal to the metrics."""
    from agents.evaluate import popularity_metrics
    from recsim_env import evaluate_ranking

    split = ml100k_split
    rng = np.random.default_rng(0)
    noise = lambda users: rng.random((len(users), split.n_items))  # noqa: E731  (a random ranking)
    pop = popularity_metrics(split, return_per_user=True)  # the baselines' path: evaluate_ranking
    rand = evaluate_ranking(noise, split, return_per_user=True)
    np.testing.assert_array_equal(pop["per_user"]["user"], np.flatnonzero(np.diff(split.test_indptr) > 0))
    for metric in ("precision@10", "recall@10", "ndcg@10", "hit_rate@10"):
        assert pop["per_user"][metric].mean() == pop[metric]  # exactly, not approximately
    [row] = compare_to_reference(pop["per_user"], {"random": rand["per_user"]}, metrics=["ndcg@10"])
    assert row["mean_difference"] == pytest.approx(rand["ndcg@10"] - pop["ndcg@10"])
    assert row["ci_high"] < 0 and row["p_holm"] < 1e-20  # popularity beats a random ranking


def test_recsim_env_imports_without_scipy_and_says_how_to_get_it() -> None:
    code = (
        "import sys; sys.modules['scipy'] = None\n"  # scipy absent: importing it raises ImportError
        "import recsim_env\n"
        "from recsim_env import holm, paired_bootstrap_ci, paired_test\n"
        "assert holm([0.01, 0.04]).tolist() == [0.02, 0.04]\n"
        "assert paired_bootstrap_ci([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0)\n"
        "try:\n    paired_test([1.0, 2.0], [0.0, 1.5])\n"
        "except ImportError as e:\n    assert 'pip install scipy' in str(e), e\n"
        "else:\n    raise SystemExit('no error')\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_exported_from_recsim_env() -> None:
    for name in ("paired_test", "holm", "paired_bootstrap_ci", "compare_to_reference", "mean_over_seeds"):
        assert name in recsim_env.__all__ and callable(getattr(recsim_env, name))
