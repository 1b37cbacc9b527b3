"""The simulated MovieLens user: which user an environment gets, and one place to import it from.

Everything that builds states or outcomes uses the same simulated user: the single
environment (:mod:`recsim_env.env`, the Gymnasium face), the native vector environment
(:mod:`recsim_env.vector_env`), the agents' scoring (``agents.scoring``) and the logged-data
sampler (``agents.next_item``). :func:`make_simulator` picks it, and shares it between
environments built on the same data. The user's parts live in one module each:

* :mod:`recsim_env.replay_user`: :class:`~recsim_env.replay_user.ReplaySimulator`
  (``user_model="replay"``, the default), the replay user of the LSRWRL paper; its module
  docstring states its start states, like and reward, transition, episode end and slate rules.
* :mod:`recsim_env.model_user`: :class:`~recsim_env.model_user.ModelSimulator`
  (``user_model="ease"``), a learned user (:mod:`recsim_env.user_model`) who may like any
  item; its rules are in its docstring.
* :mod:`recsim_env.user_simulator`: :class:`~recsim_env.user_simulator.UserSimulator`, what
  both share (settings and their checks, the split, start states, observations).
* :mod:`recsim_env.rewards`: which ratings are likes and what they earn (``reward_map``).
* :mod:`recsim_env.slates`: the slate settings (:class:`~recsim_env.slates.SlateResponse`)
  and the examination draw.
* :mod:`recsim_env.episode_state`: the per-episode state
  (:class:`~recsim_env.episode_state.EpisodeState` for one user,
  :class:`~recsim_env.episode_state.BatchState` for ``num_envs`` users), preallocated once by
  the environment and updated in place, so that ``reset``/``step`` never touch pandas.

The public names of those modules are importable from here too (``__all__``; they lived
here before).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from recsim_env.episode_state import BatchState, EpisodeState, concatenated_ranges
from recsim_env.model_user import ModelSimulator
from recsim_env.replay_user import ReplaySimulator
from recsim_env.rewards import RATINGS, check_like_threshold, default_reward_map, reward_table
from recsim_env.slates import DEFAULT_EXAMINE, RESPONSES, SlateResponse, slate_settings
from recsim_env.user_simulator import MODES, UserSimulator, check_int, load_split

# make_simulator lives here; the other names are re-exported from their modules, so that
# imports written before the split (``from recsim_env.simulator import ReplaySimulator``) work.
__all__ = [
    "DEFAULT_EXAMINE", "MODES", "RATINGS", "RESPONSES", "BatchState", "EpisodeState",
    "ModelSimulator", "ReplaySimulator", "SlateResponse", "UserSimulator", "check_int",
    "check_like_threshold", "concatenated_ranges", "default_reward_map", "load_split",
    "make_simulator", "reward_table", "slate_settings",
]  # fmt: skip


#: The simulators built on a given split or dataset, by their settings (see :func:`make_simulator`).
_SHARED: weakref.WeakValueDictionary[tuple, UserSimulator] = weakref.WeakValueDictionary()


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a setting's value (mappings and sequences by content)."""
    if isinstance(value, Mapping):
        return tuple(sorted((repr(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    hash(value)  # a TypeError for anything else unhashable: that simulator is not shared
    return value


def _sharing_key(user_model: str, user_model_kwargs: Mapping[str, Any] | None, kwargs: dict) -> tuple | None:
    """The key under which a simulator on a given ``split_data`` or ``data`` object is shared,
    or ``None`` (built from a dataset name, or a setting that cannot be compared)."""
    source = kwargs.get("split_data") if kwargs.get("split_data") is not None else kwargs.get("data")
    if source is None:
        return None
    try:
        settings = tuple(sorted((k, _frozen(v)) for k, v in kwargs.items() if k not in ("split_data", "data")))
        return (id(source), "split" if source is kwargs.get("split_data") else "data",
                user_model, _frozen(user_model_kwargs or {}), settings)
    except TypeError:
        return None


def make_simulator(
    user_model: str = "replay", user_model_kwargs: Mapping[str, Any] | None = None, **kwargs: Any
) -> UserSimulator:
    """The simulator of ``user_model``: :class:`~recsim_env.replay_user.ReplaySimulator` or
    :class:`~recsim_env.model_user.ModelSimulator`.

    A simulator is read-only once built (the episode state lives in
    :class:`~recsim_env.episode_state.EpisodeState` /
    :class:`~recsim_env.episode_state.BatchState`), so environments built on the same
    ``split_data`` (or ``data``) object with the same settings share one: ``make train``'s 64 training environments hold the
    catalogue-sized tables once, not 64 times (ML-32M: about 0.7 GB each). It lives as long as
    an environment uses it.

    :param user_model: ``"replay"`` (default) or a learned model of
        :data:`recsim_env.user_model.USER_MODELS` (``"ease"``)
    :param user_model_kwargs: settings of a learned model (none for replay)
    :param kwargs: the arguments of :class:`~recsim_env.user_simulator.UserSimulator`
    :raises ValueError: an unknown model, or settings it does not take
    """
    from recsim_env.user_model import UserModelSettings

    UserModelSettings.from_kwargs(user_model, user_model_kwargs)  # checks before any loading
    key = _sharing_key(user_model, user_model_kwargs, kwargs)
    shared = _SHARED.get(key) if key is not None else None
    if shared is not None:
        return shared
    if user_model == "replay":
        simulator: UserSimulator = ReplaySimulator(**kwargs)
    else:
        simulator = ModelSimulator(user_model=user_model, user_model_kwargs=user_model_kwargs, **kwargs)
    if key is not None:
        _SHARED[key] = simulator
    return simulator
