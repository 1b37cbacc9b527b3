"""What a rating is worth to the simulated user: which ratings are likes, and their rewards.

The settings of the like and reward rules, their defaults and their checks: :data:`RATINGS`,
:func:`default_reward_map`, :func:`check_like_threshold` and :func:`reward_table` (the reward of
each rating level as the array the simulators index). The rules that apply them are stated
where they are implemented: :mod:`recsim_env.replay_user` (the replay user) and
:class:`recsim_env.model_user.ModelSimulator` (the learned user).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from recsim_env.dataset import STAR_RATINGS

__all__ = ["RATINGS", "check_like_threshold", "default_reward_map", "reward_table"]

#: Whole-star MovieLens ratings (ML-100K, ML-1M); other datasets have their own
#: :attr:`~recsim_env.dataset.MovieLensData.rating_scale`.
RATINGS: tuple[int, ...] = STAR_RATINGS


def default_reward_map(
    like_threshold: float = 4, rating_scale: tuple[float, ...] = STAR_RATINGS, implicit: bool = False
) -> dict[float, float]:
    """The default reward of a recommended target item by rating: on a like ``rating / max(scale)``
    (``rating / 5`` on MovieLens), or the rating itself for implicit feedback (1 unless the log
    has a value column); 0 otherwise.

    :param like_threshold: smallest rating that counts as a like (default 4)
    :param rating_scale: the dataset's ratings (default :data:`RATINGS`, 1..5)
    :param implicit: implicit feedback (every interaction worth its value)
    """
    full_marks = 1.0 if implicit else float(max(rating_scale))
    return {r: (r / full_marks if r >= like_threshold else 0.0) for r in rating_scale}


def check_like_threshold(value: Any, rating_scale: tuple[float, ...]) -> float:
    """``value`` as a like threshold of ``rating_scale`` (an int when whole), or a ``ValueError``.

    :param value: a number from the lowest to the highest rating of the scale (bool is rejected)
    :param rating_scale: the dataset's ratings, increasing
    """
    lo, hi = rating_scale[0], rating_scale[-1]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"like_threshold must be a rating in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:  # NaN fails too
        raise ValueError(
            f"like_threshold must be a rating in [{lo}, {hi}] (the dataset's rating scale), got {value}"
        )
    return int(value) if float(value).is_integer() else float(value)


def _scale_text(rating_scale: tuple[float, ...]) -> str:
    if rating_scale == tuple(range(1, len(rating_scale) + 1)):
        return f"{rating_scale[0]}..{rating_scale[-1]}"
    return ", ".join(str(r) for r in rating_scale)


def _rating_key(key: Any, rating_scale: tuple[float, ...]) -> int:
    """The level (1-based position in ``rating_scale``) of a ``reward_map`` key.

    On a whole-number scale a key is an integer, or its decimal string as JSON writes it
    (``"4"``); on another scale (half stars) also a float or its string (``3.5``, ``"3.5"``).
    """
    whole = all(isinstance(r, int) for r in rating_scale)
    rating: float | None = None
    # JSON object keys are strings: spec.to_json() turns {4: 1.0} into {"4": 1.0}.
    if isinstance(key, str) and key.isascii():
        if key.isdigit() and str(int(key)) == key:
            rating = int(key)
        elif not whole and key.replace(".", "", 1).isdigit():
            number = float(key)
            if key in (repr(number), str(int(number))):  # "3.5", "4.0" or "4", not "03.50"
                rating = number
    elif isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        rating = int(key)
    elif not whole and isinstance(key, (float, np.floating)):
        rating = float(key)
    if rating is None:
        kind = "integer ratings" if whole else "ratings"
        example = '"4"' if whole else '"3.5"'
        raise ValueError(
            f"reward_map keys must be {kind} of the scale {_scale_text(rating_scale)} (or their "
            f"strings such as {example}, as JSON stores them), got {key!r}"
        )
    if rating not in rating_scale:
        raise ValueError(
            f"reward_map keys must be ratings of the scale {_scale_text(rating_scale)}, got {key!r}"
        )
    return rating_scale.index(rating) + 1


def reward_table(
    reward_map: Mapping[Any, float] | None,
    like_threshold: float,
    rating_scale: tuple[float, ...] = STAR_RATINGS,
    implicit: bool = False,
) -> np.ndarray:
    """float64 ``(len(rating_scale) + 1,)``: the reward of a consumed target by rating level
    (:func:`recsim_env.dataset.rating_levels`); index 0 (no target) is 0.

    :param reward_map: rating -> reward (keys: ratings of the scale or their JSON strings, such
        as ``4`` / ``"4"``, or ``3.5`` / ``"3.5"`` on a half-star scale); ratings it leaves out
        earn 0; ``None``: :func:`default_reward_map`
    :param like_threshold: smallest rating that counts as a like (for the default map)
    :param rating_scale: the dataset's ratings (default 1..5)
    :param implicit: implicit feedback (for the default map)
    """
    if reward_map is None:
        reward_map = default_reward_map(like_threshold, rating_scale, implicit)
    if not isinstance(reward_map, Mapping):
        raise ValueError(f"reward_map must be a mapping rating -> reward, got {reward_map!r}")
    table = np.zeros(len(rating_scale) + 1, dtype=np.float64)
    seen: dict[int, Any] = {}
    for key, reward in reward_map.items():
        level = _rating_key(key, rating_scale)
        rating = rating_scale[level - 1]
        if level in seen:
            raise ValueError(
                f"reward_map gives rating {rating} twice (keys {seen[level]!r} and {key!r})"
            )
        seen[level] = key
        try:
            value = float(reward)
        except (TypeError, ValueError):
            raise ValueError(f"reward_map[{rating}] must be a number, got {reward!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"reward_map[{rating}] must be finite, got {reward!r}")
        table[level] = value
    return table
