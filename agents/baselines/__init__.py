"""Non-RL baselines of Table 1, one module each, behind one interface (:class:`Recommender`).

``fit(split)`` on the train part, ``score(users)`` -> float32 ``(B, n_items)``; evaluate with
``recsim_env.evaluation.evaluate_ranking(model.score, split)``. Build by name with
:func:`make_recommender`. The numpy/scipy models import eagerly; the PyTorch ones
(``SASRecRecommender``, ``GRU4RecRecommender``, ``STAMPRecommender``) import torch only when
first accessed.
"""

from __future__ import annotations

import importlib
from typing import Any

from agents.baselines.base import (
    InsufficientMemoryError,
    Recommender,
    available_recommenders,
    get_recommender_class,
    init_param_names,
    interaction_matrix,
    make_recommender,
    register,
)
from agents.baselines.ease import EASERecommender
from agents.baselines.itemcf import ItemCFRecommender
from agents.baselines.popularity import PopularityRecommender
from agents.baselines.usercf import UserCFRecommender

_LAZY = {
    "SASRecRecommender": "agents.baselines.sasrec",
    "GRU4RecRecommender": "agents.baselines.gru4rec",
    "STAMPRecommender": "agents.baselines.stamp",
}

__all__ = [
    "InsufficientMemoryError",
    "Recommender",
    "available_recommenders",
    "get_recommender_class",
    "init_param_names",
    "interaction_matrix",
    "make_recommender",
    "register",
    "PopularityRecommender",
    "ItemCFRecommender",
    "UserCFRecommender",
    "EASERecommender",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
