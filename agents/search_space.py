"""Hyperparameter search spaces as plain data, and LSRWRL's space.

A space maps a parameter name to one distribution, written as a tuple:

* ``("uniform", low, high)`` / ``("loguniform", low, high)``: a float in ``[low, high]``
  (log scale: ``0 < low``);
* ``("int", low, high)`` / ``("logint", low, high)``: an integer in ``[low, high]``, both ends
  included;
* ``("choice", [values])``: one of the values (numbers, strings, booleans or ``None``).

The same dict becomes Ray Tune sampling domains (:func:`tune_domains`) or Optuna
distributions (:func:`optuna_distributions`); neither library is imported before it is needed.
:func:`check_space` validates a space against the parameters a model really takes, so a typo
fails at once. The baselines' spaces are in :mod:`agents.baselines.search_space`;
:func:`search_space` returns any model's.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

#: A search space: parameter name -> distribution tuple (see the module docstring).
Space = dict[str, tuple[Any, ...]]
#: The distribution kinds of a space.
KINDS: tuple[str, ...] = ("uniform", "loguniform", "int", "logint", "choice")

#: LSRWRL's search space: :class:`~agents.config.TrainConfig` fields on top of a preset
#: (``default``; ``make search`` and ``make equal-budget`` search it). Its main options first:
#: the optimiser, the next-item signal and its pre-training, the encoder's sizes and
#: initialisation, the history length; then the DQN settings. The training length
#: (``total_timesteps``) stays the preset's: the regime counts steps, with the learning rate
#: decaying to ``final_learning_rate`` over them.
LSRWRL_SEARCH_SPACE: Space = {
    "learning_rate": ("loguniform", 2e-4, 3e-3),  # Adam step size
    "next_item_weight": ("loguniform", 0.03, 1.0),  # auxiliary next-item loss weight
    "pretrain_steps": ("choice", [0, 500, 1_500, 5_000]),  # next-item gradient steps before RL
    "embed_dim": ("choice", [16, 32, 64]),  # item/user embedding and interest-vector size
    "history_len": ("choice", [10, 20, 50]),  # short-term window n
    "n_layers": ("choice", [1, 2]),  # stacked self-attention layers (short-term interest)
    "dropout": ("uniform", 0.0, 0.5),  # dropout in attention and the DeepFM DNN
    "embedding_init_std": ("choice", [None, 0.01, 0.05, 0.1]),  # item/user embedding init (None: N(0, 1))
    "target_update_interval": ("choice", [2_000, 5_000, 10_000, 20_000]),  # env steps between target copies
    "exploration_fraction": ("uniform", 0.01, 0.1),  # share of the budget over which epsilon decays
    "gamma": ("uniform", 0.5, 0.95),  # reward discount
    "batch_size": ("choice", [64, 128, 256]),  # replay mini-batch
}


def check_space(space: Space, parameters: Iterable[str], owner: str) -> Space:
    """Check a space's form and that every key is a parameter of its model.

    :param space: the space
    :param parameters: the names the model takes (e.g. ``init_param_names(cls)``, or the
        :class:`~agents.config.TrainConfig` fields)
    :param owner: the model's name, for the message
    :return: ``space``
    :raises ValueError: one message listing every problem (an unknown key names the closest
        real parameters)
    """
    names = list(parameters)
    problems = []
    for key, spec in space.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=2)
            problems.append(f"{key!r} is not a parameter of {owner}" + (f" (did you mean {', '.join(close)}?)"
                                                                         if close else ""))
        if not isinstance(spec, tuple) or not spec or spec[0] not in KINDS:
            problems.append(f"{key}: {spec!r} is not a distribution; use (kind, ...) with kind one of "
                            f"{', '.join(KINDS)}")
            continue
        kind, *args = spec
        if kind == "choice":
            if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
                problems.append(f"{key}: ('choice', [values]) needs a non-empty list")
            elif not all(v is None or isinstance(v, (bool, int, float, str)) for v in args[0]):
                problems.append(f"{key}: choice values must be numbers, strings, booleans or None")
            continue
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            problems.append(f"{key}: ({kind!r}, low, high) needs two numbers")
            continue
        low, high = args
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            problems.append(f"{key}: low={low} must be below high={high}")
        if kind.startswith("log") and not low > 0:
            problems.append(f"{key}: a {kind} range needs low > 0, got {low}")
        if kind in ("int", "logint") and not (float(low).is_integer() and float(high).is_integer()):
            problems.append(f"{key}: an {kind} range needs integer ends, got {low}, {high}")
    if problems:
        raise ValueError(f"invalid search space of {owner}:\n  - " + "\n  - ".join(problems))
    return space


def tune_domains(space: Space) -> dict[str, Any]:
    """The space as Ray Tune sampling domains (imports :mod:`ray.tune`)."""
    from ray import tune

    domains: dict[str, Any] = {}
    for key, (kind, *args) in space.items():
        if kind == "uniform":
            domains[key] = tune.uniform(*args)
        elif kind == "loguniform":
            domains[key] = tune.loguniform(*args)
        elif kind == "int":
            domains[key] = tune.randint(int(args[0]), int(args[1]) + 1)  # Tune's upper end is exclusive
        elif kind == "logint":
            domains[key] = tune.lograndint(int(args[0]), int(args[1]) + 1)
        elif kind == "choice":
            domains[key] = tune.choice(list(args[0]))
        else:
            raise ValueError(f"{key}: unknown distribution kind {kind!r}; use one of {', '.join(KINDS)}")
    return domains


def optuna_distributions(space: Space) -> dict[str, Any]:
    """The space as Optuna distributions (imports :mod:`optuna`)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for key, (kind, *args) in space.items():
        if kind in ("uniform", "loguniform"):
            out[key] = FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform")
        elif kind in ("int", "logint"):
            out[key] = IntDistribution(int(args[0]), int(args[1]), log=kind == "logint")
        elif kind == "choice":
            out[key] = CategoricalDistribution(list(args[0]))
        else:
            raise ValueError(f"{key}: unknown distribution kind {kind!r}; use one of {', '.join(KINDS)}")
    return out


#: The name of LSRWRL in :func:`search_space` (the baselines go by their registry names).
LSRWRL = "lsrwrl"


def model_parameters(model: str) -> list[str]:
    """The parameters a model takes: LSRWRL's :class:`~agents.config.TrainConfig` fields, or a
    baseline's keyword arguments (:func:`agents.baselines.init_param_names`)."""
    if model == LSRWRL:
        import dataclasses

        from agents.config import TrainConfig

        return [f.name for f in dataclasses.fields(TrainConfig)]
    from agents.baselines import get_recommender_class, init_param_names

    return init_param_names(get_recommender_class(model))


def search_space(model: str) -> Space:
    """The search space of a model (a copy): :data:`LSRWRL_SEARCH_SPACE` or the baseline's
    :data:`agents.baselines.search_space.SEARCH_SPACES` entry, checked by :func:`check_space`.

    :param model: ``"lsrwrl"`` or a baseline registry name
    :raises KeyError: a model without a space
    """
    if model == LSRWRL:
        space = LSRWRL_SEARCH_SPACE
    else:
        from agents.baselines.search_space import SEARCH_SPACES

        if model not in SEARCH_SPACES:
            raise KeyError(f"no search space for {model!r}; models with one: {', '.join([*SEARCH_SPACES, LSRWRL])}")
        space = SEARCH_SPACES[model]
    return check_space(dict(space), model_parameters(model), model)
