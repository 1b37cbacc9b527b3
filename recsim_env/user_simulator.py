"""The base of every simulated user: settings and their checks, the split, start states, observations.

:class:`UserSimulator` holds what the replay user (:mod:`recsim_env.replay_user`) and the
learned user (:mod:`recsim_env.model_user`) share; each states its own like, reward,
transition and episode-end rules. :func:`recsim_env.simulator.make_simulator` picks one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from recsim_env.dataset import DATASETS, MovieLensData, Split, rating_levels
from recsim_env.episode_state import BatchState, EpisodeState, concatenated_ranges
from recsim_env.rewards import check_like_threshold, reward_table

__all__ = ["MODES", "UserSimulator", "check_int", "load_split"]

#: Episode modes: replay the train split, or start from the train history and target the test part.
MODES: tuple[str, ...] = ("train", "test")


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` and the allowed range.

    :param name: the setting's name, for the message
    :param value: the value (bool is rejected)
    :param low: smallest allowed value
    :param high: largest allowed value (default: no upper bound)
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")
    return int(value)


def load_split(
    dataset: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    split: str,
    train_ratio: float,
    split_seed: int,
) -> Split:
    """Load ``dataset`` (:func:`recsim_env.load_movielens`) and split it (:func:`recsim_env.split_ratings`).

    :param dataset: one of :data:`recsim_env.dataset.DATASETS`
    :param data_dir: data root, or ``None`` for ``$MOVIELENS_DATA``, the cache, a download
    :param download: download the official zip when the files are nowhere else
    :param split: ``"temporal"`` or ``"random"``
    :param train_ratio: fraction of each user's ratings in the train part
    :param split_seed: seed of the random split
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    # Imported here: the data layer (pandas) is only needed when no split is injected.
    from recsim_env.movielens import load_movielens
    from recsim_env.splits import split_ratings

    data = load_movielens(dataset, data_dir, download=download)
    return split_ratings(data, split, train_ratio, split_seed)


class UserSimulator:
    """What every simulated user shares: settings, the split, start states and observations.

    Subclasses (:class:`~recsim_env.replay_user.ReplaySimulator`,
    :class:`~recsim_env.model_user.ModelSimulator`) decide which users can start, and the
    like, reward, transition and episode-end rules (:meth:`reset`, :meth:`step`,
    :meth:`step_batch`).

    :param mode: ``"train"`` (start from a prefix of a train sequence) or ``"test"`` (start from
        the whole train history)
    :param split_data: the split (:func:`recsim_env.split_ratings`); ``None`` splits ``data``,
        or loads ``dataset`` with :func:`load_split`
    :param data: a loaded dataset (:func:`recsim_env.load_interactions`,
        :func:`recsim_env.load_movielens`), split with ``split``, ``train_ratio`` and
        ``split_seed``; only when ``split_data`` is ``None`` (giving both is an error)
    :param dataset: MovieLens dataset name, used only when ``split_data`` and ``data`` are ``None``
    :param data_dir: data root, used only when ``dataset`` is loaded
    :param download: allow a download, used only when ``dataset`` is loaded
    :param split: split method, used only when ``split_data`` is ``None``
    :param train_ratio: train fraction, used only when ``split_data`` is ``None``
    :param split_seed: seed of the random split, used only when ``split_data`` is ``None``
    :param history_len: length of the ``"history"`` observation (default 20)
    :param like_threshold: smallest rating that counts as a like, within the dataset's rating
        scale (default ``None``: the dataset's own, 4 on MovieLens; every interaction of an
        implicit log)
    :param reward_map: rating -> reward of a liked (or, in replay, consumed) item (default
        :func:`~recsim_env.rewards.default_reward_map`)
    :param max_steps: recommendations per episode before truncation (default 50)
    """

    #: The ``user_model`` name of the simulator.
    user_model: str = ""

    def __init__(
        self,
        *,
        mode: str = "train",
        split_data: Split | None = None,
        data: MovieLensData | None = None,
        dataset: str = "ml-100k",
        data_dir: str | os.PathLike | None = None,
        download: bool = True,
        split: str = "temporal",
        train_ratio: float = 0.8,
        split_seed: int = 0,
        history_len: int = 20,
        like_threshold: float | None = None,
        reward_map: Mapping[Any, float] | None = None,
        max_steps: int = 50,
    ) -> None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.mode = mode
        self.history_len = check_int("history_len", history_len, 1)
        self.max_steps = check_int("max_steps", max_steps, 1)

        if split_data is None:
            if data is None:
                split_data = load_split(dataset, data_dir, download, split, train_ratio, split_seed)
            elif isinstance(data, MovieLensData):
                from recsim_env.splits import split_ratings

                split_data = split_ratings(data, split, train_ratio, split_seed)
            else:
                raise ValueError(
                    f"data must be a recsim_env.MovieLensData (from load_interactions or "
                    f"load_movielens), got {type(data).__name__}"
                )
        elif data is not None:
            raise ValueError(
                "give split_data (a Split) or data (a dataset to split), not both: split_data is "
                "already a split of its split_data.data"
            )
        elif not isinstance(split_data, Split):
            raise ValueError(
                f"split_data must be a recsim_env.Split (from split_ratings), "
                f"got {type(split_data).__name__}"
            )
        self.split = split_data
        data = split_data.data
        #: The dataset's ratings, increasing; a target's rating is stored as its level, its
        #: 1-based position here (0: not a target).
        self.rating_scale: tuple[float, ...] = data.rating_scale
        self.like_threshold = check_like_threshold(
            data.like_threshold if like_threshold is None else like_threshold, self.rating_scale
        )
        self.reward_table = reward_table(reward_map, self.like_threshold, self.rating_scale, data.implicit)
        self.reward_list: list[float] = self.reward_table.tolist()
        self.reward_map: dict[float, float] = {
            r: self.reward_list[level] for level, r in enumerate(self.rating_scale, 1)
        }
        #: The rating of each level (index 0: no rating, 0), the ``"rating"`` the env reports:
        #: int64 on a whole-number scale, else float64.
        whole = all(isinstance(r, int) for r in self.rating_scale)
        self.rating_value_table = np.array((0, *self.rating_scale), dtype=np.int64 if whole else np.float64)
        self.rating_values: list[float] = self.rating_value_table.tolist()
        #: bool ``(len(rating_scale) + 1,)``: whether a rating level is a like (index 0: no rating).
        self.like_table = self.rating_value_table >= self.like_threshold
        self.like_table[0] = False
        #: The smallest level that is a like.
        self.like_level = int(np.argmax(self.like_table))
        self.n_users = split_data.n_users
        self.n_items = split_data.n_items
        if self.n_items < 1:
            raise ValueError("the dataset has no items")
        self.n_bytes = (self.n_items + 7) // 8
        self.user_features = np.ascontiguousarray(data.user_features, dtype=np.int32)
        self.user_feature_cardinalities: tuple[int, ...] = data.user_feature_cardinalities
        #: Whether observations have a ``"user"`` field: a dataset without user features has none
        #: (a zero-size field would trip SB3, which reshapes every field to ``(-1, *shape)``).
        self.has_user_features = bool(self.user_feature_cardinalities)

        train_indptr = np.asarray(split_data.train_indptr, dtype=np.int64)
        train_items = np.asarray(split_data.train_items, dtype=np.intp)
        train_ratings = self._levels(split_data.train_ratings, "train")
        self._check_split(
            train_indptr, train_items, train_ratings,
            np.asarray(split_data.test_indptr, dtype=np.int64),
            np.asarray(split_data.test_items, dtype=np.intp),
            self._levels(split_data.test_ratings, "test"),
        )  # fmt: skip
        train_liked = train_ratings >= self.like_level
        n_train = np.diff(train_indptr)
        self.train_indptr = train_indptr

        # Histories always come from the train part.
        self.hist_items = train_items
        self.hist_ratings = train_ratings
        self.hist_liked = train_liked
        self.hist_lo: list[int] = train_indptr[:-1].tolist()
        self.n_train = n_train
        # Each user's train tokens behind history_len zeros: the start "history" observation of
        # prefix p is then the single slice [pad_lo + p, pad_lo + p + history_len).
        hl = self.history_len
        self.padded_tokens = np.zeros(train_items.size + hl * self.n_users, dtype=np.int32)
        pad_lo = train_indptr[:-1] + hl * np.arange(self.n_users)
        shift = np.repeat(pad_lo + hl - train_indptr[:-1], n_train)
        self.padded_tokens[shift + np.arange(train_items.size)] = train_items + 1
        self.pad_lo: list[int] = pad_lo.tolist()
        # The liked train items in order, so a prefix's liked set is one slice.
        self.liked_items = train_items[train_liked]
        # Per rating, so an array: a list would take about 36 bytes per rating (ML-32M: 0.9 GB).
        self._liked_cum = np.concatenate(([0], np.cumsum(train_liked)))
        # The per-user offsets above as arrays too, for resetting many rows at once (reset_rows);
        # the lists keep the single-row paths free of numpy scalar overhead.
        self._hist_lo = train_indptr[:-1]
        self._pad_lo = pad_lo

    def _set_starts(self, max_prefix: np.ndarray, eligible: np.ndarray, why: str) -> None:
        """Record each user's largest start prefix and who can start (subclasses call it)."""
        self.max_prefix = max_prefix
        self.eligible = eligible
        self.max_prefix_list: list[int] = max_prefix.tolist()
        #: int64 ``(n_eligible,)``, read-only: the users that can start an episode in this mode.
        self.users = np.flatnonzero(eligible).astype(np.int64)
        self.users.setflags(write=False)
        self.users_list: list[int] = self.users.tolist()
        if self.users.size == 0:
            raise ValueError(f"no user can start an episode in {self.mode} mode: it needs {why}")
        self.eligible_reason = why

    def _levels(self, ratings: np.ndarray, part: str) -> np.ndarray:
        """int8 levels of a split part's ratings; a ``ValueError`` for a rating off the scale."""
        try:
            return rating_levels(self.rating_scale, ratings, f"split.{part}_ratings")
        except ValueError as exc:
            raise ValueError(
                f"{exc}; every rating must be one of split.data.rating_scale"
            ) from None

    def _check_split(
        self,
        train_indptr: np.ndarray,
        train_items: np.ndarray,
        train_ratings: np.ndarray,
        test_indptr: np.ndarray,
        test_items: np.ndarray,
        test_ratings: np.ndarray,
    ) -> None:
        for part, indptr, items, ratings in (
            ("train", train_indptr, train_items, train_ratings),
            ("test", test_indptr, test_items, test_ratings),
        ):
            if indptr.shape != (self.n_users + 1,) or indptr[0] != 0 or indptr[-1] != items.size:
                raise ValueError(f"split.{part}_indptr is not a CSR index over {self.n_users} users")
            if items.size and (items.min() < 0 or items.max() >= self.n_items):
                raise ValueError(
                    f"split.{part}_items holds item indices outside [0, {self.n_items})"
                )
            if ratings.shape != items.shape:
                raise ValueError(f"split.{part}_ratings must hold one rating per item")
        # One rating per (user, item): a duplicate would make an item both history and target.
        users = np.concatenate(
            (np.repeat(np.arange(self.n_users), np.diff(train_indptr)),
             np.repeat(np.arange(self.n_users), np.diff(test_indptr)))
        )  # fmt: skip
        keys = np.sort(users * self.n_items + np.concatenate((train_items, test_items)))
        if np.any(keys[1:] == keys[:-1]):
            raise ValueError(
                "split has a user who rated the same item twice; expected one rating per (user, item)"
            )

    # ----------------------------------------------------------------- start states
    def draw_start(self, rng: np.random.Generator) -> tuple[int, int]:
        """A uniformly random eligible user and, in train mode, a uniform prefix length.

        :param rng: the episode's generator (the env's ``np_random``)
        :return: ``(user, prefix)``
        """
        user = self.users_list[rng.integers(len(self.users_list))]
        if self.mode == "train":
            return user, int(rng.integers(1, self.max_prefix_list[user] + 1))
        return user, self.max_prefix_list[user]

    def check_start(self, options: Mapping[str, Any], rng: np.random.Generator) -> tuple[int, int]:
        """The ``(user, prefix)`` of ``reset(options={"user": u[, "prefix": p]})``.

        :param options: ``{"user": u}`` and, in train mode, optionally ``"prefix": p``
        :param rng: draws the prefix when ``options`` gives none (train mode)
        :raises ValueError: a user out of range or not eligible, a bad prefix
        """
        user = options["user"]
        if isinstance(user, (bool, np.bool_)) or not isinstance(user, (int, np.integer)):
            raise ValueError(
                f'options["user"] must be an integer user index or "next", got {user!r}'
            )
        user = int(user)
        if not 0 <= user < self.n_users:
            raise ValueError(
                f'options["user"]={user} is out of range: user indices are 0..{self.n_users - 1}; '
                f"choose one of env.unwrapped.users"
            )
        if not self.eligible[user]:
            raise ValueError(
                f"user {user} cannot start an episode in {self.mode} mode (it needs "
                f"{self.eligible_reason}); choose one of env.unwrapped.users"
            )
        prefix = options.get("prefix")
        if prefix is None:
            if self.mode == "train":
                return user, int(rng.integers(1, self.max_prefix_list[user] + 1))
            return user, self.max_prefix_list[user]
        if self.mode != "train":
            raise ValueError('options["prefix"] is only allowed in train mode')
        hi = self.max_prefix_list[user]
        prefix = check_int('options["prefix"]', prefix, 1, hi)
        return user, prefix

    def new_state(self) -> EpisodeState:
        """A preallocated :class:`~recsim_env.episode_state.EpisodeState` for this simulator."""
        return EpisodeState(self.n_items, self.history_len, n_user_features=self.user_features.shape[1])

    def new_batch(self, num_envs: int) -> BatchState:
        """A preallocated :class:`~recsim_env.episode_state.BatchState` of ``num_envs`` rows."""
        return BatchState(
            num_envs, self.n_items, self.history_len, n_user_features=self.user_features.shape[1],
            rating_dtype=self.rating_value_table.dtype,
        )

    def _write_history(self, state: EpisodeState, user: int, prefix: int, scratch: np.ndarray) -> None:
        """The parts of a start state every simulator shares: history, liked, excluded, counters."""
        lo = self.hist_lo[user]
        hi = lo + prefix
        p_lo = self.pad_lo[user] + prefix
        state.history[:] = self.padded_tokens[p_lo : p_lo + self.history_len]
        scratch.fill(False)
        scratch[self.hist_items[lo:hi]] = True
        state.excluded[:] = np.packbits(scratch, bitorder="little")
        scratch.fill(False)
        scratch[self.liked_items[self._liked_cum[lo] : self._liked_cum[hi]]] = True
        state.liked[:] = np.packbits(scratch, bitorder="little")
        state.user_obs[:] = self.user_features[user]
        state.user = user
        state.prefix = prefix
        state.history_size = prefix
        state.steps = 0
        state.last_action = -1
        state.last_rating = 0
        state.misses = 0
        state.like_probability = 0.0

    def reset(self, state: EpisodeState, user: int, prefix: int, scratch: np.ndarray) -> None:
        """Write user ``user``'s start state (first ``prefix`` train items) into ``state``.

        :param state: the episode state to overwrite (arrays written in place)
        :param user: user index
        :param prefix: number of train items in the start history
        :param scratch: bool ``(n_items,)`` work array
        """
        raise NotImplementedError

    def _write_history_rows(
        self, batch: BatchState, rows: np.ndarray, users: np.ndarray, prefixes: np.ndarray
    ) -> None:
        """:meth:`_write_history` for the rows ``rows`` of ``batch`` at once (arrays of equal length)."""
        lo = self._hist_lo[users]
        hi = lo + prefixes
        starts = self._pad_lo[users] + prefixes
        batch.history[rows] = self.padded_tokens[starts[:, None] + np.arange(self.history_len)]
        bits = np.zeros((rows.size, self.n_items), dtype=bool)
        index, segment = concatenated_ranges(lo, hi)
        bits[segment, self.hist_items[index]] = True
        batch.excluded[rows] = np.packbits(bits, axis=1, bitorder="little")
        bits.fill(False)
        index, segment = concatenated_ranges(self._liked_cum[lo], self._liked_cum[hi])
        bits[segment, self.liked_items[index]] = True
        batch.liked[rows] = np.packbits(bits, axis=1, bitorder="little")
        batch.user_obs[rows] = self.user_features[users]
        batch.user[rows] = users
        batch.prefix[rows] = prefixes
        batch.history_size[rows] = prefixes
        batch.steps[rows] = 0
        batch.misses[rows] = 0
        batch.like_probability[rows] = 0.0

    def reset_rows(
        self,
        batch: BatchState,
        rows: np.ndarray,
        users: np.ndarray,
        prefixes: np.ndarray,
        scratch: np.ndarray,
    ) -> None:
        """:meth:`reset_row` for several rows: ``rows[j]`` starts user ``users[j]`` at ``prefixes[j]``.

        One row at a time below :attr:`batch_reset_rows` rows, else :meth:`_reset_rows_batched`
        (a fixed number of array operations); both write exactly what one :meth:`reset_row` per
        row writes (``tests/test_vector_env.py`` checks each path against ``SyncVectorEnv``).

        :param rows: int64 distinct row indices
        :param users: int64 user indices, one per row
        :param prefixes: int64 start prefixes, one per row
        """
        if self.batch_reset_rows is not None and rows.size >= self.batch_reset_rows:
            self._reset_rows_batched(batch, rows, users, prefixes)
            return
        for i, user, prefix in zip(rows.tolist(), users.tolist(), prefixes.tolist()):
            self.reset_row(batch, i, user, prefix, scratch)

    def _reset_rows_batched(
        self, batch: BatchState, rows: np.ndarray, users: np.ndarray, prefixes: np.ndarray
    ) -> None:
        """:meth:`reset_rows` as array operations (simulators that set :attr:`batch_reset_rows`)."""
        raise NotImplementedError

    def reset_row(self, batch: BatchState, i: int, user: int, prefix: int, scratch: np.ndarray) -> None:
        """:meth:`reset` for row ``i`` of a :class:`~recsim_env.episode_state.BatchState`."""
        row = batch.row(i)
        self.reset(row, user, prefix, scratch)
        batch.n_targets_left[i], batch.n_liked_left[i] = row.n_targets_left, row.n_liked_left
        batch.misses[i] = row.misses
        batch.like_probability[i] = row.like_probability
        batch.user[i] = user
        batch.prefix[i] = prefix
        batch.history_size[i] = prefix
        batch.steps[i] = 0

    def step(
        self, state: EpisodeState, action: int, rng: np.random.Generator
    ) -> tuple[float, bool, bool, int, bool]:
        """Recommend item ``action`` (a valid item index) to the user of ``state``.

        :param rng: the episode's generator (the learned user model draws its likes from it)
        :return: ``(reward, terminated, truncated, rating, liked)``
        """
        raise NotImplementedError

    def step_batch(
        self,
        batch: BatchState,
        actions: np.ndarray,
        rngs: list[np.random.Generator],
        active: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`step` for every row of ``batch`` at once.

        :param actions: int64 ``(num_envs,)`` valid item indices
        :param rngs: each row's generator
        :param active: bool ``(num_envs,)``: rows that really step (the others are about to be
            reset: their outcome is discarded and they must draw nothing)
        :return: ``(reward float64, terminated, truncated, rating int64, liked)``, each ``(num_envs,)``
        """
        raise NotImplementedError

    def info(self, state: EpisodeState, rating: int, liked: bool) -> dict[str, Any]:
        """The ``info`` dict of the single environment after ``reset`` or ``step``."""
        raise NotImplementedError

    def batch_info(self, batch: BatchState, rating: np.ndarray, liked: np.ndarray) -> dict[str, Any]:
        """:meth:`info` of every row, as arrays (without Gymnasium's ``"_key"`` masks)."""
        raise NotImplementedError

    def prefix_observations(self, users: np.ndarray, prefixes: np.ndarray) -> dict[str, np.ndarray]:
        """Observations of ``users`` after their first ``prefixes`` train items, nothing recommended.

        Any prefix ``0 <= p <= n_train(u)`` is allowed (not only valid episode starts), so that
        logged states after the last liked train item can be built too.

        :param users: int ``(B,)`` user indices
        :param prefixes: int ``(B,)`` prefix lengths
        :return: the Dict observation batch (``"excluded"`` = the prefix's items)
        """
        users = np.asarray(users, dtype=np.int64)
        prefix = np.asarray(prefixes, dtype=np.int64)
        n = users.size
        lo = self._hist_lo[users]
        start = self._pad_lo[users] + prefix
        history = self.padded_tokens[start[:, None] + np.arange(self.history_len)]
        # Every (row, item) pair of the prefixes, flattened, to scatter the liked bits.
        total = int(prefix.sum())
        rows = np.repeat(np.arange(n), prefix)
        flat = np.repeat(lo - (np.cumsum(prefix) - prefix), prefix) + np.arange(total)
        sel = self.hist_liked[flat]
        mask = np.zeros((n, self.n_items), dtype=bool)
        mask[rows[sel], self.hist_items[flat[sel]]] = True
        liked = np.packbits(mask, axis=1, bitorder="little").reshape(n, self.n_bytes)
        mask[rows, self.hist_items[flat]] = True  # nothing recommended yet: excluded = history
        user = {"user": self.user_features[users]} if self.has_user_features else {}
        return {
            **user,
            "history": history,
            "liked": liked,
            "excluded": np.packbits(mask, axis=1, bitorder="little").reshape(n, self.n_bytes),
        }

    def start_observations(
        self, users: np.ndarray, prefixes: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Batched start observations (see ``MovieLensRecEnv.start_observations``).

        :param users: int ``(B,)`` user indices (train mode: users of :attr:`users`)
        :param prefixes: train mode only: int ``(B,)`` prefix lengths in ``[1, max_prefix]``;
            default each user's largest valid prefix
        """
        users = np.asarray(users)
        if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
            raise ValueError(f"users must be a 1-D integer array of user indices, got {users!r}")
        users = users.astype(np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise ValueError(f"users must be user indices in [0, {self.n_users - 1}]")
        if self.mode == "test":
            if prefixes is not None:
                raise ValueError("prefixes are only allowed in train mode")
            prefix = self.n_train[users]
        elif prefixes is None:
            bad = users[~self.eligible[users]]
            if bad.size:
                raise ValueError(
                    f"users {bad[:5].tolist()} cannot start a train episode "
                    f"(they need {self.eligible_reason})"
                )
            prefix = self.max_prefix[users]
        else:
            prefix = np.asarray(prefixes)
            if prefix.shape != users.shape or not np.issubdtype(prefix.dtype, np.integer):
                raise ValueError("prefixes must be an integer array shaped like users")
            prefix = prefix.astype(np.int64)
            if np.any(prefix < 1) or np.any(prefix > self.max_prefix[users]):
                raise ValueError(
                    f"each prefix must lie in [1, max_prefixes[user]] of its user "
                    f"({self.max_prefix_reason})"
                )
        return self.prefix_observations(users, prefix)

    #: What bounds a train-mode prefix (for error messages).
    max_prefix_reason = ""
    #: :meth:`reset_rows` writes this many rows or more with :meth:`_reset_rows_batched`
    #: (None: always row by row).
    batch_reset_rows: int | None = None

    def observation_space(self) -> spaces.Dict:
        """The Dict observation space (see the ``MovieLensRecEnv`` docstring); without user
        features it has no ``"user"`` field."""
        high_user = np.array([c - 1 for c in self.user_feature_cardinalities], dtype=np.int32)
        user = (
            {"user": spaces.Box(low=0, high=high_user, shape=(len(high_user),), dtype=np.int32)}
            if self.has_user_features else {}
        )  # fmt: skip
        return spaces.Dict(
            {
                **user,
                "history": spaces.Box(
                    low=0, high=self.n_items, shape=(self.history_len,), dtype=np.int32
                ),
                "liked": spaces.Box(low=0, high=255, shape=(self.n_bytes,), dtype=np.uint8),
                "excluded": spaces.Box(low=0, high=255, shape=(self.n_bytes,), dtype=np.uint8),
            }
        )
