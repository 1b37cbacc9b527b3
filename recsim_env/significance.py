"""Is model A better than model B? Paired tests over per-user metric values.

Two models evaluated on the same split are scored on the same users, so their per-user values
(:func:`recsim_env.evaluation.evaluate_ranking` with ``return_per_user=True``) come in pairs: the
tests here work on the per-user differences, not on the two means alone. Users are the unit of
the test; the arrays must hold the same users in the same order (the evaluator's order: every
user with a test item, ascending index).

* :func:`paired_test`: two-sided p-value, Wilcoxon signed-rank (default) or paired t;
* :func:`paired_bootstrap_ci`: percentile bootstrap interval of the mean difference, resampling
  users;
* :func:`holm`: Holm–Bonferroni adjustment when one reference is compared with several models;
* :func:`compare_to_reference`: all of the above as one row per (model, metric);
* :func:`mean_over_seeds`: per-user values averaged over seeds, before testing.

numpy only at import; :func:`paired_test` (and so :func:`compare_to_reference`) imports scipy
when called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Differences within this fraction of the data's largest magnitude count as equal (and as zero):
#: float noise (``0.3 - 0.2 != 0.1``) must neither break a tie nor turn a tie into a difference.
_RELATIVE_TOLERANCE = 1e-12
#: Bootstrap resamples are drawn in blocks of at most this many user indices (memory bound).
_BOOTSTRAP_BLOCK = 1 << 22
_METHODS = ("wilcoxon", "t")
_ZERO_METHODS = ("zsplit", "wilcox", "pratt")


def _paired(a: Any, b: Any, min_users: int = 1, what: str = "a and b") -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as float64 1-D arrays of the same users, checked."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"{what} must be 1-D arrays of per-user values, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(
            f"{what} hold {a.size} and {b.size} users: paired values must be the same users in the same "
            "order (evaluate both models on the same split and users; evaluate_ranking's per_user['user'])"
        )
    if a.size < min_users:
        raise ValueError(f"{what} hold {a.size} users; a paired comparison needs at least {min_users}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"{what} contain NaN or infinite values; per-user metrics are finite")
    return a, b


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` snapped to a grid of ``_RELATIVE_TOLERANCE`` x the largest magnitude."""
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
    if scale == 0.0:
        return np.zeros_like(a)
    step = _RELATIVE_TOLERANCE * scale
    return np.round((a - b) / step) * step


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError as exc:
        raise ImportError(
            "recsim_env.significance.paired_test needs scipy: pip install scipy "
            "(it comes with the project's extra: pip install 'recsim-env[agents]')"
        ) from exc
    return stats


def paired_test(a: Any, b: Any, method: str = "wilcoxon", zero_method: str | None = None) -> float:
    """Two-sided p-value of "``a`` and ``b`` do not differ", over paired per-user values.

    * ``"wilcoxon"``: Wilcoxon signed-rank test of the differences ``a - b``
      (``scipy.stats.wilcoxon`` with its default method: exact for at most 50 users without
      ties or zero differences, an exact permutation for at most 13 users with them, else the
      normal approximation with tie correction). It assumes no normality: the default, since
      per-user precision@10 takes 11 values only.
    * ``"t"``: paired t-test (``scipy.stats.ttest_rel``): is the mean difference zero?

    Zero differences (users on whom both models score the same) are frequent with metrics
    that take few values. ``zero_method="zsplit"`` (the default) keeps them in the ranking and
    splits their ranks evenly between the two signs: a tie is evidence of no difference and
    pulls the p-value up. scipy's own default, ``"wilcox"``, drops those users and tests only
    the ones where the models differ, so a few differing users can make a mostly tied
    comparison look significant.

    Degenerate cases, decided rather than left to warnings: all differences zero gives ``1.0``
    (either method); for ``"t"``, the same non-zero difference on every user gives ``0.0``
    (an infinite t statistic). Differences closer than ``1e-12`` x the data's largest magnitude
    count as equal, so float noise neither creates nor breaks ties.

    :param a: per-user values of one model, 1-D, finite
    :param b: per-user values of the other model, the same users in the same order
    :param method: ``"wilcoxon"`` (default) or ``"t"``
    :param zero_method: Wilcoxon's handling of zero differences: ``"zsplit"`` (``None``, the
        default), ``"wilcox"`` or ``"pratt"`` (scipy's meanings); an error with ``method="t"``,
        which has none
    :return: the two-sided p-value, in [0, 1]
    :raises ValueError: arrays of different shapes, fewer than 2 users, non-finite values, or an
        unknown method
    :raises ImportError: scipy is not installed
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method == "t" and zero_method is not None:
        raise ValueError(f"zero_method={zero_method!r} applies to method='wilcoxon' only; the t-test has none")
    zero_method = "zsplit" if zero_method is None else zero_method
    if zero_method not in _ZERO_METHODS:
        raise ValueError(f"zero_method must be one of {_ZERO_METHODS}, got {zero_method!r}")
    a, b = _paired(a, b, min_users=2)
    stats = _scipy_stats()
    d = _differences(a, b)
    if not d.any():
        return 1.0
    if method == "t":
        if (d == d[0]).all():
            return 0.0
        return float(stats.ttest_rel(a, b).pvalue)
    return float(stats.wilcoxon(d, zero_method=zero_method, alternative="two-sided").pvalue)


def holm(p_values: Any) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate).

    With the ``m`` p-values sorted ascending, the ``i``-th (from 0) becomes
    ``max_{j <= i} min(1, (m - j) * p_(j))``; the result is in the input order, never below
    the raw p-value, monotone in it, and at most 1. Ties keep their input order.

    :param p_values: raw p-values in [0, 1], 1-D (empty gives an empty array)
    :return: float64 array of the adjusted p-values, same shape as ``p_values``
    :raises ValueError: a value outside [0, 1], NaN, or not 1-D
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p_values must lie in [0, 1] (no NaN), got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    out = np.empty(m, dtype=np.float64)
    out[order] = adjusted
    return out


def paired_bootstrap_ci(
    a: Any, b: Any, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a - b)``, resampling users with replacement.

    Each resample draws ``n`` users (with replacement) from the ``n`` paired users and takes
    the mean of their differences; the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of those means (numpy's default linear interpolation).
    Vectorised in blocks of about 4 M draws; the same inputs and seed give the same interval.

    :param a: per-user values of one model, 1-D, finite
    :param b: per-user values of the other model, the same users in the same order
    :param n_resamples: number of bootstrap resamples (default 10,000)
    :param confidence: coverage of the interval, in (0, 1) (default 0.95)
    :param seed: seed of ``numpy.random.default_rng`` (default 0)
    :return: ``(low, high)``, in the metric's units; ``(0.0, 0.0)`` for identical arrays
    :raises ValueError: arrays of different shapes, no users, non-finite values,
        ``n_resamples < 1`` or ``confidence`` outside (0, 1)
    """
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence!r}")
    a, b = _paired(a, b)
    d = a - b
    n, n_resamples = d.size, int(n_resamples)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def mean_over_seeds(values: Sequence[Any]) -> Any:
    """Per-user values averaged over seeds (one array per user), for a test over users.

    A model trained with several seeds gives one per-user array per seed; the test's unit is
    the user, so the seeds are averaged first (the variation between seeds is not a second
    sample of users).

    :param values: one entry per seed: 1-D arrays of the same users in the same order, or
        mappings ``{metric: array}`` (e.g. ``evaluate_ranking(...)["per_user"]``), each
        metric averaged; a ``"user"`` entry must be identical across seeds and is kept as it is
    :return: the float64 mean array, or a dict of them (same keys as the first mapping)
    :raises ValueError: no seeds, arrays of different shapes, different users or keys
    """
    values = list(values)
    if not values:
        raise ValueError("mean_over_seeds needs the per-user values of at least one seed")
    if isinstance(values[0], Mapping):
        keys = list(values[0])
        for i, entry in enumerate(values[1:], 1):
            if not isinstance(entry, Mapping) or set(entry) != set(keys):
                raise ValueError(f"seed {i} has keys {sorted(entry) if isinstance(entry, Mapping) else type(entry)},"
                                 f" seed 0 {sorted(keys)}: every seed must give the same metrics")
        out: dict[str, np.ndarray] = {}
        for key in keys:
            if key == "user":
                users = np.asarray(values[0]["user"])
                for i, entry in enumerate(values[1:], 1):
                    if not np.array_equal(np.asarray(entry["user"]), users):
                        raise ValueError(f"seed {i} evaluates other users than seed 0 (their 'user' arrays "
                                         "differ): per-user values can only be averaged over the same users")
                out[key] = users
            else:
                out[key] = mean_over_seeds([entry[key] for entry in values])
        return out
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    for i, array in enumerate(arrays):
        if array.ndim != 1 or array.shape != arrays[0].shape:
            raise ValueError(f"seed {i} has shape {array.shape}, seed 0 {arrays[0].shape}: every seed must give "
                             "1-D per-user values of the same users in the same order")
    return np.mean(np.stack(arrays), axis=0)


def _metric(values: Mapping[str, Any], metric: str, who: str) -> np.ndarray:
    if not isinstance(values, Mapping):
        raise TypeError(f"{who} must be a mapping {{metric: per-user array}}, got {type(values).__name__}")
    if metric not in values:
        raise ValueError(f"{who} has no per-user {metric!r} (it has {sorted(values)}); pass metrics=... it has")
    return np.asarray(values[metric], dtype=np.float64)


def compare_to_reference(
    reference: Mapping[str, Any],
    others: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str] = ("precision@10", "ndcg@10"),
    method: str = "wilcoxon",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """Compare one reference model with several others, user by user, metric by metric.

    For each metric and each model: the two means, the mean difference ``model - reference``
    (positive: the model scores higher than the reference), its :func:`paired_bootstrap_ci`,
    the :func:`paired_test` p-value and the :func:`holm`-adjusted p-value, the family being
    every model compared on that metric (the adjusted one is what a claim "the reference is
    better than each of them" should quote). Every row uses the same bootstrap seed, so the
    models are resampled on the same users.

    :param reference: ``{metric: per-user array}`` of the reference model (averaged over its
        seeds by the caller, e.g. with :func:`mean_over_seeds`); ``evaluate_ranking(...,
        return_per_user=True)["per_user"]`` fits as it is
    :param others: ``{model name: {metric: per-user array}}``, each the same users in the same
        order as the reference. Where both the reference and a model carry a ``"user"`` array,
        the two must be equal
    :param metrics: metrics to compare (default precision@10 and NDCG@10)
    :param method: :func:`paired_test` method, ``"wilcoxon"`` (default) or ``"t"``
    :param n_resamples: bootstrap resamples per row (default 10,000)
    :param seed: bootstrap seed (default 0)
    :param confidence: coverage of the bootstrap interval (default 0.95)
    :return: one dict per (metric, model), metrics in ``metrics`` order and models in
        ``others`` order within each, with keys ``model, metric, reference_mean, model_mean,
        mean_difference, ci_low, ci_high, p_value, p_holm`` (floats but the two names)
    :raises ValueError: no models or metrics, a metric missing, arrays of other users (shape or
        ``"user"`` mismatch)
    """
    if not others:
        raise ValueError("others is empty: give at least one model to compare with the reference")
    if not metrics or isinstance(metrics, str):
        raise ValueError(f"metrics must be a non-empty sequence of metric names, got {metrics!r}")
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        ref = _metric(reference, metric, "reference")
        family = []
        for name, values in others.items():
            model = _metric(values, metric, f"model {name!r}")
            if model.shape != ref.shape:
                raise ValueError(
                    f"{metric}: model {name!r} has per-user values of shape {model.shape}, the reference "
                    f"{ref.shape}: both must hold the same users in the same order (same split, same users)"
                )
            if "user" in reference and "user" in values and not np.array_equal(
                np.asarray(values["user"]), np.asarray(reference["user"])
            ):
                raise ValueError(f"model {name!r} was evaluated on other users than the reference (their "
                                 "'user' arrays differ): the per-user values are not paired")
            a, b = _paired(model, ref, min_users=2, what=f"{metric} of model {name!r} and of the reference")
            low, high = paired_bootstrap_ci(a, b, n_resamples=n_resamples, confidence=confidence, seed=seed)
            family.append({
                "model": name, "metric": metric, "reference_mean": float(b.mean()), "model_mean": float(a.mean()),
                "mean_difference": float(np.mean(a - b)), "ci_low": low, "ci_high": high,
                "p_value": paired_test(a, b, method=method),
            })  # fmt: skip
        for row, adjusted in zip(family, holm([row["p_value"] for row in family])):
            row["p_holm"] = float(adjusted)
        rows.extend(family)
    return rows
