"""``MovieLensRecVectorEnv``: ``num_envs`` users of ``MovieLensRec-v0`` stepped as one numpy batch."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recsim_env.dataset import MovieLensData, Split
from recsim_env.env import check_reset_options
from recsim_env.episode_state import BatchState
from recsim_env.rendering import (
    OUTCOME_DISLIKED,
    OUTCOME_HIT,
    OUTCOME_MISS,
    SessionRenderer,
    slate_outcome,
)
from recsim_env.simulator import make_simulator
from recsim_env.slates import slate_settings

#: Attributes every sub-environment shares (``get_attr`` returns one copy per sub-env).
SHARED_ATTRS: tuple[str, ...] = (
    "mode", "split", "users", "max_prefixes", "n_items", "history_len", "like_threshold",
    "reward_map", "max_steps", "render_mode", "slate_size", "response", "examine", "user_model",
    "simulator",
)  # fmt: skip
#: Attributes with a value per sub-environment.
PER_ENV_ATTRS: tuple[str, ...] = ("np_random", "action_space", "observation_space")
#: Sub-environment methods that :meth:`MovieLensRecVectorEnv.call` runs.
METHODS: tuple[str, ...] = ("action_masks", "render", "start_observations")


class MovieLensRecVectorEnv(VectorEnv[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """``num_envs`` independent ``MovieLensRec-v0`` users, stepped in one batch of numpy operations.

    Same rules, spaces and arguments as :class:`recsim_env.MovieLensRecEnv` (see its docstring,
    ``user_model`` included), plus ``num_envs``; the rules are those of the shared simulator
    (:mod:`recsim_env.simulator`). Per-environment state lives in 2-D arrays (remaining-target ratings
    ``(num_envs, n_items)`` int8, history tokens, packed liked bits, packed excluded bits =
    history or recommended), so a step costs a few dozen numpy calls whatever ``num_envs`` is.

    * Autoreset: ``AutoresetMode.NEXT_STEP`` (Gymnasium's default). The step after a sub-env
      terminates or truncates resets it and ignores its action: it returns the new user's start
      observation, reward 0, ``terminated = truncated = False`` and the reset's ``info``.
    * Seeding: each sub-env has its own generator. ``reset(seed=s)`` seeds sub-env ``i`` with
      ``s + i`` (or ``seed[i]`` for a list), so it draws exactly the users and prefixes (and,
      under ``user_model="ease"``, the likes) of a single ``MovieLensRecEnv`` reset with
      ``seed=s + i`` given the same actions.
    * ``reset(options={"user": users[, "prefix": prefixes]})`` starts the given users (arrays of
      length ``num_envs``); later autoresets draw users at random again.
    * ``info`` has the single environment's keys as arrays of length ``num_envs`` (replay, train mode:
      ``"user"``, ``"prefix"``, ``"rating"``, ``"liked"``, ``"n_targets_left"``,
      ``"n_liked_left"``; test mode: only ``"user"``, ``"prefix"``, ``"liked"``, nothing that
      depends on the targets), each with its all-True ``"_key"`` mask, as
      :class:`gymnasium.vector.SyncVectorEnv` builds it (here one shared read-only array: every
      sub-env always reports every key).
    * ``action_masks()`` returns bool ``(num_envs, n_items)``, exactly
      ``~unpack_bits(obs["excluded"], n_items)`` of the last observations.
    * Slates (``slate_size=k > 1``): actions are int ``(num_envs, k)``, ``action_masks()`` is
      ``(num_envs, k * n_items)`` (each row the single environment's concatenated mask), the
      ``info`` arrays of the slate keys are ``(num_envs, k)``. With ``response="cascade"`` each
      sub-env draws its examination depth from its own generator, as a single environment
      does from its ``np_random``, so the sub-env/single-env equivalence holds for slates too.
    * ``render()``: ``render_mode="ansi"`` gives a tuple of texts, ``"rgb_array"`` a tuple of
      frames (each the single environment's picture of that sub-env), as
      :class:`gymnasium.vector.SyncVectorEnv` would; ``"human"`` is not supported.
    * Gymnasium's vector API ``call``, ``get_attr`` and ``set_attr`` answer as ``SyncVectorEnv``
      over single environments would, one entry per sub-env, for the sub-env methods
      :data:`METHODS` (``envs.call("action_masks")`` is a tuple of ``(n_items,)`` masks) and the
      attributes :data:`SHARED_ATTRS` and :data:`PER_ENV_ATTRS`. ``set_attr`` can only set
      ``"np_random"``: every other setting is shared by all sub-envs through one
      simulator (:mod:`recsim_env.simulator`), so it is chosen when the vector env is made.

    ```python
    >>> import gymnasium as gym
    >>> import recsim_env
    >>> envs = gym.make_vec("MovieLensRec-v0", num_envs=64, vectorization_mode="vector_entry_point")  # doctest: +SKIP
    >>> obs, info = envs.reset(seed=0)  # doctest: +SKIP
    >>> obs["history"].shape  # doctest: +SKIP
    (64, 20)

    ```

    :param num_envs: number of simulated users stepped together (default 1)
    """

    metadata = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        dataset: str = "ml-100k",
        mode: str = "train",
        data_dir: str | os.PathLike | None = None,
        download: bool = True,
        split: str = "temporal",
        train_ratio: float = 0.8,
        split_seed: int = 0,
        history_len: int = 20,
        like_threshold: float | None = None,
        reward_map: Mapping[Any, float] | None = None,
        max_steps: int = 50,
        render_mode: str | None = None,
        split_data: Split | None = None,
        slate_size: int = 1,
        response: str = "independent",
        examine: float | None = None,
        user_model: str = "replay",
        user_model_kwargs: Mapping[str, Any] | None = None,
        data: MovieLensData | None = None,
    ) -> None:
        integer = isinstance(num_envs, (int, np.integer)) and not isinstance(num_envs, bool)
        if not integer or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.simulator = sim = make_simulator(
            user_model=user_model, user_model_kwargs=user_model_kwargs, dataset=dataset, mode=mode, data_dir=data_dir, download=download, split=split,
            train_ratio=train_ratio, split_seed=split_seed, history_len=history_len,
            like_threshold=like_threshold, reward_map=reward_map, max_steps=max_steps,
            split_data=split_data, data=data,
        )  # fmt: skip
        self.num_envs = n = int(num_envs)
        self.render_mode = render_mode
        self.mode: str = sim.mode
        self.split: Split = sim.split
        self.users: np.ndarray = sim.users
        self.max_prefixes: np.ndarray = sim.max_prefix.view()
        self.max_prefixes.setflags(write=False)
        self.n_items: int = sim.n_items
        self.history_len: int = sim.history_len
        self.like_threshold: float = sim.like_threshold
        self.reward_map: dict[float, float] = sim.reward_map
        self.max_steps: int = sim.max_steps
        self._slate, self.single_action_space = slate_settings(sim, slate_size, response, examine)
        self.slate_size: int = self._slate.slate_size
        self.response: str = self._slate.response
        self.examine: float | None = self._slate.examine
        self.user_model: str = sim.user_model
        self.action_space = batch_space(self.single_action_space, n)
        self.single_observation_space = sim.observation_space()
        self.observation_space = batch_space(self.single_observation_space, n)

        # Per-sub-env episode state as 2-D arrays, updated in place by the simulator.
        self._state = sim.new_batch(n)
        self._scratch = np.zeros(self.n_items, dtype=bool)
        self._n_items_u64 = np.uint64(self.n_items)
        self._prev_done = np.zeros(n, dtype=bool)
        # The "_key" mask of every info key: all True, shared, read-only (a fresh one per key
        # and step cost about a tenth of a vector step).
        self._every_env = np.ones(n, dtype=bool)
        self._every_env.flags.writeable = False
        self._rngs: list[np.random.Generator] | None = None
        self._has_reset = False
        self._renderer = SessionRenderer(sim) if render_mode is not None else None
        # Outcome code of each recommendation of each episode, kept only for rgb_array frames.
        self._outcomes = (
            np.zeros((n, self.max_steps), np.int8) if render_mode == "rgb_array" else None
        )
        # The last slate of each sub-env and its consumed ratings, for the text rendering.
        self._last_slates = np.zeros((n, self.slate_size), dtype=np.int64)
        self._last_ratings = np.zeros((n, self.slate_size), dtype=sim.rating_value_table.dtype)

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every sub-environment.

        :param seed: ``s`` seeds sub-env ``i`` with ``s + i``; a list gives one seed (or None) each
        :param options: ``{"user": users}`` (int ``(num_envs,)``, elements of ``self.users``) and,
            in train mode, ``"prefix": prefixes`` (int ``(num_envs,)``)
        :return: ``(observations, infos)``
        """
        check_reset_options(options)
        n = self.num_envs
        if seed is None or isinstance(seed, (int, np.integer)):
            super().reset(seed=None if seed is None else int(seed))
            seeds: Sequence[int | None] = [
                None if seed is None else int(seed) + i for i in range(n)
            ]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(
                    f"seed must be an int, None or a list of {n} seeds, got {len(seeds)}"
                )
            super().reset(seed=None)
        if self._rngs is None:
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        else:
            self._rngs = [
                rng if s is None else seeding.np_random(s)[0] for rng, s in zip(self._rngs, seeds)
            ]

        users = prefixes = None
        if options is not None:
            if options.get("user") is not None:
                users = self._per_env_option(options["user"], "user")
            if options.get("prefix") is not None:
                if users is None:
                    raise ValueError('options["prefix"] needs options["user"]')
                prefixes = self._per_env_option(options["prefix"], "prefix")
        if users is None:
            self._reset_rows(self._state.rows)
        elif prefixes is None:
            self._reset_rows(self._state.rows, [{"user": u} for u in users])
        else:
            self._reset_rows(
                self._state.rows, [{"user": u, "prefix": p} for u, p in zip(users, prefixes)]
            )
        self._prev_done[:] = False
        self._has_reset = True
        if self.slate_size > 1:
            zeros = np.zeros((n, self.slate_size), np.int64)
            return self._obs(), self._slate_info(zeros, zeros.astype(bool), np.zeros(n, np.int64))
        return self._obs(), self._info(np.zeros(n, np.int64), np.zeros(n, bool))

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Recommend ``actions[i]`` to the user of sub-env ``i``.

        :param actions: int ``(num_envs,)`` item indices in ``[0, n_items)``; with
            ``slate_size=k > 1``, int ``(num_envs, k)`` slates
        :return: ``(observations, rewards float64, terminated, truncated, infos)``
        """
        if self.slate_size > 1:
            return self._step_slate(actions)
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be an integer array of shape ({self.num_envs},) with item indices in "
                f"[0, {self.n_items - 1}], got shape {a.shape} and dtype {a.dtype}"
            )
        if a.dtype != np.int64:
            a = a.astype(np.int64)
        # One comparison catches both ends: negatives wrap to huge unsigned values.
        if np.count_nonzero(a.view(np.uint64) >= self._n_items_u64):
            raise ValueError(
                f"actions must be item indices in [0, {self.n_items - 1}], "
                f"got values from {a.min()} to {a.max()}"
            )
        if not self._has_reset:
            raise ResetNeeded("Call reset() before step()")
        # NEXT_STEP autoreset: sub-envs that ended last step restart now; their action is void.
        done_before = self._prev_done
        assert self._rngs is not None
        reward, terminated, truncated, rating, liked = self.simulator.step_batch(
            self._state, a, self._rngs, ~done_before
        )
        if np.count_nonzero(done_before):
            self._reset_rows(done_before.nonzero()[0])
            reward[done_before] = 0.0
            rating[done_before] = 0
            liked[done_before] = False
            terminated[done_before] = False
            truncated[done_before] = False
        self._prev_done = terminated | truncated
        if self._outcomes is not None:
            rows = (~done_before).nonzero()[0]
            outcome = np.where(
                liked[rows], OUTCOME_HIT, np.where(rating[rows] > 0, OUTCOME_DISLIKED, OUTCOME_MISS)
            )
            self._outcomes[rows, self._state.steps[rows] - 1] = outcome
        return self._obs(), reward, terminated, truncated, self._info(rating, liked)

    def action_masks(self) -> np.ndarray:
        """bool ``(num_envs, n_items)``: items not in each history and not recommended yet.

        Exactly ``~unpack_bits(obs["excluded"], n_items)`` of the last observations. With
        ``slate_size=k > 1``, ``(num_envs, k * n_items)``: each row's mask once per position.
        """
        if not self._has_reset:
            raise ResetNeeded("Call reset() before action_masks()")
        mask = np.unpackbits(self._state.excluded, axis=1, count=self.n_items, bitorder="little") == 0
        return mask if self.slate_size == 1 else np.tile(mask, (1, self.slate_size))

    def start_observations(
        self, users: np.ndarray, prefixes: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Batched start observations; see :meth:`MovieLensRecEnv.start_observations`."""
        return self.simulator.start_observations(users, prefixes)

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        """One rendering per sub-env, as the single environment renders it.

        ``"ansi"``: texts (user, recent history, last recommendation); ``"rgb_array"``: uint8
        ``(height, width, 3)`` frames (layout in :mod:`recsim_env.rendering`); no render mode:
        ``None``.
        """
        if self.render_mode is None:
            return None
        if not self._has_reset:
            raise ResetNeeded("Call reset() before render()")
        state, renderer = self._state, self._renderer
        assert renderer is not None
        if self._outcomes is not None:
            return tuple(
                renderer.frame(state.history[i], self._outcomes[i], int(state.steps[i]))
                for i in range(self.num_envs)
            )
        if self.slate_size > 1:
            return tuple(
                renderer.slate_text(
                    int(state.user[i]), state.history[i],
                    int(state.history_size[i]), int(state.steps[i]),
                    self._last_slates[i].tolist() if state.steps[i] else [],
                    self._last_ratings[i], int(state.n_liked_left[i]),
                )  # fmt: skip
                for i in range(self.num_envs)
            )
        return tuple(
            renderer.text(
                int(state.user[i]), state.history[i],
                int(state.history_size[i]), int(state.steps[i]),
                int(state.last_flat[i] - state.row_offset[i]) if state.steps[i] else -1,
                state.last_rating[i].item(), int(state.n_liked_left[i]),
            )  # fmt: skip
            for i in range(self.num_envs)
        )

    # ----------------------------------------------------------------- gymnasium vector API
    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call sub-environment method ``name`` on every sub-env, as ``SyncVectorEnv.call`` does.

        ``call("action_masks")`` gives each sub-env's bool ``(n_items,)`` mask, ``call("render")``
        each sub-env's rendering (``None`` without a render mode), ``call("start_observations",
        users)`` each sub-env's (equal) start observations. An attribute name (see
        :meth:`get_attr`) returns its values, as ``SyncVectorEnv`` does for non-callables.

        :param name: one of :data:`METHODS`, :data:`SHARED_ATTRS` or :data:`PER_ENV_ATTRS`
        :return: one result per sub-env, a tuple of length ``num_envs``
        """
        n = self.num_envs
        if name == "action_masks":
            return tuple(self.action_masks(*args, **kwargs))
        if name == "render":
            frames = self.render(*args, **kwargs)
            return (None,) * n if frames is None else frames
        if name == "start_observations":
            obs = self.start_observations(*args, **kwargs)
            # Independent copies, as n single environments would return.
            return (obs, *({k: v.copy() for k, v in obs.items()} for _ in range(n - 1)))
        if name in SHARED_ATTRS:
            return (getattr(self, name),) * n
        if name == "np_random":
            if self._rngs is None:  # as gym.Env.np_random: an unseeded generator on first use
                self._rngs = [seeding.np_random(None)[0] for _ in range(n)]
            return tuple(self._rngs)
        if name == "action_space":
            return (self.single_action_space,) * n
        if name == "observation_space":
            return (self.single_observation_space,) * n
        raise AttributeError(
            f"{type(self).__name__} sub-environments have no method or attribute {name!r} "
            f"that call/get_attr can reach; methods: {list(METHODS)}, attributes: "
            f"{list(SHARED_ATTRS + PER_ENV_ATTRS)}"
        )

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute ``name`` of every sub-env, as ``SyncVectorEnv.get_attr`` (= ``call(name)``).

        :param name: one of :data:`SHARED_ATTRS` (the same value for every sub-env, e.g.
            ``"users"``, ``"max_steps"``) or :data:`PER_ENV_ATTRS` (``"np_random"``: each
            sub-env's generator; the single action and observation spaces)
        :return: one value per sub-env, a tuple of length ``num_envs``
        """
        return self.call(name)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set ``name`` on every sub-env, as ``SyncVectorEnv.set_attr``; only ``"np_random"``.

        The other attributes cannot differ between sub-envs (one simulator
        serves them all) nor change after construction: make a new vector env with the
        setting instead, or use ``vectorization_mode="sync"`` for per-sub-env settings.

        :param name: ``"np_random"``
        :param values: one ``numpy.random.Generator`` per sub-env (list or tuple), or one
            generator that all sub-envs then draw from in turn
        """
        if name != "np_random":
            if name in SHARED_ATTRS or name in PER_ENV_ATTRS:
                raise AttributeError(
                    f"{type(self).__name__} cannot set {name!r}: all its sub-envs share it and "
                    f"it is fixed when the vector env is made; pass the setting to gym.make_vec "
                    f"(e.g. max_steps=...) or use vectorization_mode='sync' for sub-envs that "
                    f"differ"
                )
            raise AttributeError(
                f"{type(self).__name__} sub-environments have no settable attribute {name!r}; "
                f"only 'np_random' can be set"
            )
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(
                "Values must be a list or tuple with length equal to the number of environments. "
                f"Got `{len(values)}` values for {self.num_envs} environments."
            )
        for value in values:
            if not isinstance(value, np.random.Generator):
                raise ValueError(f"np_random values must be numpy.random.Generator, got {value!r}")
        self._rngs = list(values)

    # ----------------------------------------------------------------- internals
    def _step_slate(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n, k = self.num_envs, self.slate_size
        a = np.asarray(actions)
        if a.shape != (n, k) or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be an integer array of shape ({n}, {k}): one slate of {k} item "
                f"indices in [0, {self.n_items - 1}] per sub-env, got shape {a.shape} and "
                f"dtype {a.dtype}"
            )
        if a.dtype != np.int64:
            a = a.astype(np.int64)
        if np.count_nonzero(a.view(np.uint64) >= self._n_items_u64):
            raise ValueError(
                f"slate items must be item indices in [0, {self.n_items - 1}], "
                f"got values from {a.min()} to {a.max()}"
            )
        if not self._has_reset:
            raise ResetNeeded("Call reset() before step()")
        done_before = self._prev_done
        assert self._rngs is not None
        # Sub-envs about to be reset draw nothing here, as a single env is reset, not stepped.
        depth = self._slate.depth_batch(self._rngs, (~done_before).nonzero()[0])
        reward, terminated, truncated, rating, invalid, n_examined = self.simulator.step_slate_batch(
            self._state, a, depth, self._slate.stop_at_like
        )
        if np.count_nonzero(done_before):
            self._reset_rows(done_before.nonzero()[0])
            reward[done_before] = 0.0
            rating[done_before] = 0
            invalid[done_before] = False
            n_examined[done_before] = 0
            terminated[done_before] = False
            truncated[done_before] = False
        self._prev_done = terminated | truncated
        self._last_slates[:] = a
        self._last_ratings[:] = rating
        if self._outcomes is not None:
            rows = (~done_before).nonzero()[0]
            self._outcomes[rows, self._state.steps[rows] - 1] = slate_outcome(
                rating[rows], self.like_threshold
            )
        return self._obs(), reward, terminated, truncated, self._slate_info(rating, invalid, n_examined)

    def _slate_info(
        self, rating: np.ndarray, invalid: np.ndarray, n_examined: np.ndarray
    ) -> dict[str, Any]:
        # The single env's slate keys, one row per sub-env, each with its all-True "_key" mask.
        state = self._state
        info = {
            "user": state.user.copy(),
            "prefix": state.prefix.copy(),
            "liked": rating >= self.like_threshold,
            "invalid": invalid,
            "n_examined": n_examined,
        }
        if self.mode != "test":  # as the single env: nothing that depends on the targets in test
            info.update({
                "consumed": rating > 0,
                "rating": rating,
                "n_targets_left": state.n_targets_left.copy(),
                "n_liked_left": state.n_liked_left.copy(),
            })  # fmt: skip
        return self._with_masks(info)

    def _per_env_option(self, value: Any, name: str) -> list[Any]:
        values = np.asarray(value)
        if values.shape != (self.num_envs,):
            raise ValueError(
                f'options["{name}"] must hold one value per sub-env, shape ({self.num_envs},), '
                f"got {values.shape}"
            )
        return values.tolist()

    def _reset_rows(self, rows: np.ndarray, options: list[dict[str, Any]] | None = None) -> None:
        """Restart the sub-envs ``rows``: each draws its start from its own generator, in row
        order, exactly as a single env's ``reset``; then one batched write of the start states."""
        sim = self.simulator
        assert self._rngs is not None
        rngs = self._rngs
        if options is None:
            starts = [sim.draw_start(rngs[i]) for i in rows.tolist()]
        else:
            starts = [sim.check_start(o, rngs[i]) for i, o in zip(rows.tolist(), options)]
        users, prefixes = np.array(starts, dtype=np.int64).reshape(-1, 2).T
        sim.reset_rows(self._state, rows, users, prefixes, self._scratch)
        if self._outcomes is not None:
            self._outcomes[rows] = 0

    def _obs(self) -> dict[str, np.ndarray]:
        state = self._state
        user = {"user": state.user_obs.copy()} if self.simulator.has_user_features else {}
        return {
            **user,
            "history": state.history.copy(),
            "liked": state.liked.copy(),
            "excluded": state.excluded.copy(),
        }

    def _info(self, rating: np.ndarray, liked: np.ndarray) -> dict[str, Any]:
        return self._with_masks(self.simulator.batch_info(self._state, rating, liked))

    def _with_masks(self, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` with the ``"_key"`` mask of each key, in SyncVectorEnv's key order."""
        every, out = self._every_env, {}
        for key, value in info.items():
            out[key] = value
            out[f"_{key}"] = every
        return out
