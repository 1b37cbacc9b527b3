"""Hyperparameter selection for the baselines on the validation slice, never on the test part.

The validation slice is :func:`recsim_env.splits.holdout_last`: the last ``fraction`` of every
user's **train** sequence becomes the held-out part, the rest is trained on. Each candidate of
a model's grid is fitted on that, scored with the shared evaluator, and the best by ``metric``
(default NDCG@10, smoother than precision@10 on a few hundred users) wins; ties go to the
earlier grid point. Neural models (those whose ``fit`` accepts a ``monitor``) also choose their
number of epochs (or, with ``train_steps``, of optimizer steps) by early stopping on the same
slice. The caller then refits on the full train part with the chosen values.

:func:`fit_and_validate` fits one configuration without early stopping and reports its
validation curve: one trial of a search (:mod:`experiments.equal_budget` runs it under Ray
Tune, with the spaces of :mod:`agents.baselines.search_space`).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from agents.baselines.base import Recommender, get_recommender_class
from recsim_env.dataset import Split
from recsim_env.evaluation import evaluate_ranking

#: Candidate hyperparameters per model. The neural models keep the settings of their papers
#: (see their docstrings) and tune the number of epochs by early stopping.
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}],
    "itemcf": [{"k": k} for k in (10, 20, 50, 100, 200, None)],
    "usercf": [{"k": k} for k in (10, 20, 50, 100, 200, None)],
    "ease": [{"l2": v} for v in (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0)],
    "sasrec": [{}],
    "gru4rec": [{}],
    "stamp": [{}],
}


@dataclass
class TuningResult:
    """Outcome of :func:`tune`.

    :param model: registry name of the model
    :param params: the chosen hyperparameters (grid values, plus ``epochs``, or ``train_steps``
        when the candidate trains by steps, for neural models);
        build the final model with ``make_recommender(model, **fixed, **params)``
    :param metric: the validation metric that chose them
    :param value: its value on the validation slice
    :param trials: one ``{"params", "value", "seconds"}`` record per grid point
    :param seconds: wall time of the whole search
    """

    model: str
    params: dict[str, Any]
    metric: str
    value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


#: ``report(step, budget, metrics)``: a validation evaluation after ``step`` of ``budget``
#: optimizer steps (1 of 1 for a model fitted in one go); ``metrics`` is ``evaluate_ranking``'s.
Report = Callable[[int, int, dict[str, float]], None]


def supports_early_stopping(model: Recommender) -> bool:
    """Whether ``model.fit`` takes a ``monitor`` (the neural models do)."""
    return "monitor" in inspect.signature(model.fit).parameters


def validation_metrics(model: Recommender, validation: Split) -> dict[str, float]:
    """``evaluate_ranking`` of a fitted model on the held-out part of a validation split."""
    return evaluate_ranking(model.score, validation)


def fit_and_validate(
    name: str,
    params: dict[str, Any],
    validation: Split,
    *,
    metric: str = "ndcg@10",
    report: Report | None = None,
    report_every: int | None = None,
) -> float:
    """Fit one configuration on the train part of a validation split; return the final model's
    validation ``metric``.

    A neural model trains its whole planned length (``patience=None``: no early stopping, the
    training length is one of the configuration's values) and is evaluated every epoch, or
    every ``report_every`` optimizer steps with ``train_steps``, and after its last step; any
    other model is fitted in one go and evaluated once (step 1 of 1).

    :param name: registry name of the model
    :param params: keyword arguments of the model (``patience`` is not taken: always None here)
    :param validation: the validation split (e.g. ``holdout_last(split, 0.2)``)
    :param metric: key of ``evaluate_ranking``'s result to return (default ``"ndcg@10"``)
    :param report: called after every evaluation (see :data:`Report`), e.g. to report to Ray Tune
    :param report_every: optimizer steps between evaluations of a model with ``train_steps``
        (default: one per pass over its windows)
    :return: the metric of the final model
    """
    cls = get_recommender_class(name)
    if "patience" in params:
        raise ValueError(f"fit_and_validate trains {name!r} without early stopping; drop patience from params.")
    neural = "monitor" in inspect.signature(cls.fit).parameters
    model = cls(**params, patience=None) if neural else cls(**params)
    last: dict[str, float] = {}

    def evaluate(fitted: Recommender) -> float:
        last.clear()
        last.update(validation_metrics(fitted, validation))
        if metric not in last:
            raise KeyError(f"Unknown metric {metric!r}; evaluate_ranking returns {sorted(last)}.")
        if report is not None:
            step, budget = (fitted.step_, fitted.total_steps_) if hasattr(fitted, "step_") else (1, 1)
            report(int(step), int(budget), dict(last))
        return float(last[metric])

    if neural:
        model.fit(validation, monitor=evaluate, monitor_every=report_every)
    else:
        if report_every is not None:
            raise ValueError(f"{name!r} is fitted in one go: it takes no report_every.")
        evaluate(model.fit(validation))
    return float(last[metric])


def tune(
    name: str,
    split: Split,
    *,
    grid: list[dict[str, Any]] | None = None,
    fixed: dict[str, Any] | None = None,
    metric: str = "ndcg@10",
    fraction: float = 0.2,
    validation: Split | None = None,
) -> TuningResult:
    """Choose a baseline's hyperparameters on the validation slice of ``split``.

    :param name: registry name of the model (see :func:`agents.baselines.available_recommenders`)
    :param split: the train/test split; only its train part is used
    :param grid: candidate keyword arguments (default :data:`DEFAULT_GRIDS` ``[name]``)
    :param fixed: keyword arguments applied to every candidate and not reported as tuned
        (e.g. ``seed``, ``num_threads``, and ``epochs`` = the early-stopping cap)
    :param metric: key of :func:`~recsim_env.evaluation.evaluate_ranking`'s result to maximise
        (default ``"ndcg@10"``)
    :param fraction: held-out fraction of each train sequence (default 0.2)
    :param validation: a ready validation split (default ``holdout_last(split, fraction)``)
    :return: the :class:`TuningResult`
    """
    start = time.perf_counter()
    cls = get_recommender_class(name)
    grid = DEFAULT_GRIDS.get(name, [{}]) if grid is None else grid
    if not grid:
        raise ValueError(f"Empty hyperparameter grid for {name!r}: give at least one point ({{}}).")
    fixed = dict(fixed or {})
    if validation is None:
        from recsim_env.splits import holdout_last

        validation = holdout_last(split, fraction)

    def value_of(model: Recommender) -> float:
        result = evaluate_ranking(model.score, validation)
        if metric not in result:
            raise KeyError(f"Unknown metric {metric!r}; evaluate_ranking returns {sorted(result)}.")
        return float(result[metric])

    trials: list[dict[str, Any]] = []
    for point in grid:
        t0 = time.perf_counter()
        model = cls(**{**fixed, **point})
        chosen = dict(point)
        if supports_early_stopping(model):
            model.fit(validation, monitor=value_of)
            value = max(model.monitor_history_)
            if getattr(model, "train_steps", None) is not None:
                chosen["train_steps"] = int(model.best_step_)
            else:
                chosen["epochs"] = int(model.best_epoch_)
        else:
            value = value_of(model.fit(validation))
        trials.append({"params": chosen, "value": value, "seconds": time.perf_counter() - t0})
    best = max(trials, key=lambda t: t["value"])  # max keeps the first of equal values
    return TuningResult(
        model=name,
        params=dict(best["params"]),
        metric=metric,
        value=best["value"],
        trials=trials,
        seconds=time.perf_counter() - start,
    )
