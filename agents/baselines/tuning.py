"""Hyperparameter selection for the baselines on the validation slice, never on the test part.

The validation slice is :func:`recsim_env.splits.holdout_last`: the last ``fraction`` of every
user's **train** sequence becomes the held-out part, the rest is trained on. Each candidate of
a model's grid is fitted on that, scored with the shared evaluator, and the best by ``metric``
(default NDCG@10, smoother than precision@10 on a few hundred users) wins; ties go to the
earlier grid point. Neural models (those whose ``fit`` accepts a ``monitor``) also choose their
number of epochs by early stopping on the same slice. The caller then refits on the full
train part with the chosen values.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from typing import Any

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
    :param params: the chosen hyperparameters (grid values, plus ``epochs`` for neural models);
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


def supports_early_stopping(model: Recommender) -> bool:
    """Whether ``model.fit`` takes a ``monitor`` (the neural models do)."""
    return "monitor" in inspect.signature(model.fit).parameters


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
