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

from recsim_env.dataset import Split
from recsim_env.env import _EpisodeTables

class MovieLensRecVectorEnv(VectorEnv[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """``num_envs`` independent ``MovieLensRec-v0`` users, stepped in one batch of numpy operations.

    Same rules, spaces and arguments as :class:`recsim_env.MovieLensRecEnv` (see its docstring),
    plus ``num_envs``. Per-environment state lives in 2-D arrays (remaining-target ratings
    ``(num_envs, n_items)`` int8, history tokens, packed liked bits, packed excluded bits =
    history or recommended), so a step costs a few dozen numpy calls whatever ``num_envs`` is.

    * Autoreset: ``AutoresetMode.NEXT_STEP`` (Gymnasium's default). The step after a sub-env
      terminates or truncates resets it and ignores its action: it returns the new user's start
      observation, reward 0, ``terminated = truncated = False`` and the reset's ``info``.
    * Seeding: each sub-env has its own generator. ``reset(seed=s)`` seeds sub-env ``i`` with
      ``s + i`` (or ``seed[i]`` for a list), so it draws exactly the users and prefixes of a
      single ``MovieLensRecEnv`` reset with ``seed=s + i`` given the same actions.
    * ``reset(options={"user": users[, "prefix": prefixes]})`` starts the given users (arrays of
      length ``num_envs``); later autoresets draw users at random again.
    * ``info`` has the single environment's keys as arrays of length ``num_envs`` (train mode:
      ``"user"``, ``"prefix"``, ``"rating"``, ``"liked"``, ``"n_targets_left"``,
      ``"n_liked_left"``; test mode: only ``"user"``, ``"prefix"``, ``"liked"``, nothing that
      depends on the targets), each with its all-True ``"_key"`` mask, as
      :class:`gymnasium.vector.SyncVectorEnv` builds it.
    * ``action_masks()`` returns bool ``(num_envs, n_items)``, exactly
      ``~unpack_bits(obs["excluded"], n_items)`` of the last observations.

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
        "render_modes": ["ansi"],
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
        like_threshold: int = 4,
        reward_map: Mapping[int, float] | None = None,
        max_steps: int = 50,
        render_mode: str | None = None,
        split_data: Split | None = None,
    ) -> None:
        integer = isinstance(num_envs, (int, np.integer)) and not isinstance(num_envs, bool)
        if not integer or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self._tables = tables = _EpisodeTables(
            dataset=dataset, mode=mode, data_dir=data_dir, download=download, split=split,
            train_ratio=train_ratio, split_seed=split_seed, history_len=history_len,
            like_threshold=like_threshold, reward_map=reward_map, max_steps=max_steps,
            split_data=split_data,
        )  # fmt: skip
        self.num_envs = n = int(num_envs)
        self.render_mode = render_mode
        self.mode: str = tables.mode
        self.split: Split = tables.split
        self.users: np.ndarray = tables.users
        self.n_items: int = tables.n_items
        self.history_len: int = tables.history_len
        self.like_threshold: int = tables.like_threshold
        self.reward_map: dict[int, float] = tables.reward_map
        self.max_steps: int = tables.max_steps

        self.single_action_space = spaces.Discrete(self.n_items)
        self.action_space = batch_space(self.single_action_space, n)
        self.single_observation_space = tables.observation_space()
        self.observation_space = batch_space(self.single_observation_space, n)

        m = self.n_items
        self._rows = np.arange(n)
        self._row_offset = self._rows * m  # flat index of (row, item 0)
        self._byte_offset = self._rows * tables.n_bytes
        self._targets = np.zeros((n, m), dtype=np.int8)  # rating of each remaining target, else 0
        # Packed bits of the items in the history or recommended this episode: the "excluded"
        # observation; action_masks() is its complement.
        self._excluded = np.zeros((n, tables.n_bytes), dtype=np.uint8)
        self._history = np.zeros((n, self.history_len), dtype=np.int32)
        self._liked = np.zeros((n, tables.n_bytes), dtype=np.uint8)
        self._user_obs = np.zeros((n, 3), dtype=np.int32)
        self._scratch = np.zeros(m, dtype=bool)
        self._user = np.full(n, -1, dtype=np.int64)
        self._prefix = np.zeros(n, dtype=np.int64)
        self._history_size = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._n_targets_left = np.zeros(n, dtype=np.int64)
        self._n_liked_left = np.zeros(n, dtype=np.int64)
        self._last_flat = self._row_offset.copy()  # flat (row, item) index of the last actions
        self._last_rating = np.zeros(n, dtype=np.int64)
        # Flat views, so a step indexes (row, item) pairs with one integer array.
        self._targets_flat = self._targets.reshape(-1)
        self._excluded_flat = self._excluded.reshape(-1)
        self._liked_flat = self._liked.reshape(-1)
        self._bits = (1 << np.arange(8)).astype(np.uint8)
        self._row_views = [
            (self._history[i], self._excluded[i], self._liked[i], self._targets[i]) for i in range(n)
        ]
        self._n_items_u64 = np.uint64(self.n_items)
        self._prev_done = np.zeros(n, dtype=bool)
        self._like_table = np.arange(len(tables.reward_table)) >= self.like_threshold
        self._reward_table = tables.reward_table
        self._rngs: list[np.random.Generator] | None = None
        self._has_reset = False

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
            unknown = set(options) - {"user", "prefix"}
            if unknown:
                raise ValueError(
                    f"unknown reset options {sorted(unknown)}; expected 'user' and 'prefix'"
                )
            if options.get("user") is not None:
                users = self._per_env_option(options["user"], "user")
            if options.get("prefix") is not None:
                if users is None:
                    raise ValueError('options["prefix"] needs options["user"]')
                prefixes = self._per_env_option(options["prefix"], "prefix")
        for i in range(n):
            if users is None:
                self._reset_row(i, None)
            elif prefixes is None:
                self._reset_row(i, {"user": users[i]})
            else:
                self._reset_row(i, {"user": users[i], "prefix": prefixes[i]})
        self._prev_done[:] = False
        self._has_reset = True
        return self._obs(), self._info(np.zeros(n, np.int64), np.zeros(n, bool))

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Recommend ``actions[i]`` to the user of sub-env ``i``.

        :param actions: int ``(num_envs,)`` item indices in ``[0, n_items)``
        :return: ``(observations, rewards float64, terminated, truncated, infos)``
        """
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
        flat = self._row_offset + a
        rating = self._targets_flat[flat].astype(np.int64)  # 0 = not a remaining target
        reward = self._reward_table[rating]
        liked = self._like_table[rating]
        self._targets_flat[flat] = 0
        # One action per row, so the byte indices are distinct and |= needs no accumulation.
        self._excluded_flat[self._byte_offset + (a >> 3)] |= self._bits[a & 7]
        self._n_targets_left -= rating > 0
        self._n_liked_left -= liked
        if np.count_nonzero(liked):
            rows = liked.nonzero()[0]
            item = a[rows]
            history = self._history
            history[rows, :-1] = history[rows, 1:]
            history[rows, -1] = item + 1
            self._liked_flat[self._byte_offset[rows] + (item >> 3)] |= self._bits[item & 7]
            self._history_size[rows] += 1
        self._steps += 1
        self._last_flat = flat
        self._last_rating = rating
        terminated = self._n_liked_left == 0
        truncated = (self._steps >= self.max_steps) & ~terminated

        # NEXT_STEP autoreset: sub-envs that ended last step restart now; their action is void.
        done_before = self._prev_done
        if np.count_nonzero(done_before):
            for i in done_before.nonzero()[0].tolist():
                self._reset_row(i, None)
            reward[done_before] = 0.0
            rating[done_before] = 0
            liked[done_before] = False
            terminated[done_before] = False
            truncated[done_before] = False
        self._prev_done = terminated | truncated
        return self._obs(), reward, terminated, truncated, self._info(rating, liked)

    def action_masks(self) -> np.ndarray:
        """bool ``(num_envs, n_items)``: items not in each history and not recommended yet.

        Exactly ``~unpack_bits(obs["excluded"], n_items)`` of the last observations.
        """
        if not self._has_reset:
            raise ResetNeeded("Call reset() before action_masks()")
        return np.unpackbits(self._excluded, axis=1, count=self.n_items, bitorder="little") == 0

    def start_observations(
        self, users: np.ndarray, prefixes: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Batched start observations; see :meth:`MovieLensRecEnv.start_observations`."""
        return self._tables.start_observations(users, prefixes)

    def render(self) -> tuple[str, ...] | None:
        """``"ansi"``: one text per sub-env (user, recent history, last recommendation)."""
        if self.render_mode is None:
            return None
        if not self._has_reset:
            raise ResetNeeded("Call reset() before render()")
        return tuple(
            self._tables.render_text(
                int(self._user[i]), self._history[i],
                int(self._history_size[i]), int(self._steps[i]),
                int(self._last_flat[i] - self._row_offset[i]) if self._steps[i] else -1,
                int(self._last_rating[i]), int(self._n_liked_left[i]),
            )  # fmt: skip
            for i in range(self.num_envs)
        )

    # ----------------------------------------------------------------- internals
    def _per_env_option(self, value: Any, name: str) -> list[Any]:
        values = np.asarray(value)
        if values.shape != (self.num_envs,):
            raise ValueError(
                f'options["{name}"] must hold one value per sub-env, shape ({self.num_envs},), '
                f"got {values.shape}"
            )
        return values.tolist()

    def _reset_row(self, i: int, options: dict[str, Any] | None) -> None:
        tables = self._tables
        assert self._rngs is not None
        rng = self._rngs[i]
        if options is None:
            user, prefix = tables.draw_start(rng)
        else:
            user, prefix = tables.check_start(options, rng)
        self._n_targets_left[i], self._n_liked_left[i] = tables.write_start(
            user, prefix, *self._row_views[i], self._scratch
        )
        self._user_obs[i] = tables.user_features[user]
        self._user[i] = user
        self._prefix[i] = prefix
        self._history_size[i] = prefix
        self._steps[i] = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "user": self._user_obs.copy(),
            "history": self._history.copy(),
            "liked": self._liked.copy(),
            "excluded": self._excluded.copy(),
        }

    def _info(self, rating: np.ndarray, liked: np.ndarray) -> dict[str, Any]:
        # Every sub-env reports every key: all-True "_key" masks, one fresh row each.
        masks = np.ones((6, self.num_envs), dtype=bool)
        if self.mode == "test":  # as the single env: nothing that depends on the targets
            return {
                "user": self._user.copy(), "_user": masks[0],
                "prefix": self._prefix.copy(), "_prefix": masks[1],
                "liked": liked, "_liked": masks[3],
            }  # fmt: skip
        return {
            "user": self._user.copy(), "_user": masks[0],
            "prefix": self._prefix.copy(), "_prefix": masks[1],
            "rating": rating, "_rating": masks[2],
            "liked": liked, "_liked": masks[3],
            "n_targets_left": self._n_targets_left.copy(), "_n_targets_left": masks[4],
            "n_liked_left": self._n_liked_left.copy(), "_n_liked_left": masks[5],
        }  # fmt: skip
