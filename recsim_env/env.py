"""``MovieLensRec-v0``: a recommender-as-agent MDP that replays one real MovieLens user per episode.

The reward rule, the start states and the termination rule live here, in
:class:`MovieLensRecEnv`; :class:`recsim_env.vector_env.MovieLensRecVectorEnv` runs the same
rules on ``num_envs`` users at once through the shared (private) :class:`_EpisodeTables`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from recsim_env.dataset import AGE_GROUP_LOWER_BOUNDS, USER_FEATURE_CARDINALITIES, Split
from recsim_env.rendering import (
    OUTCOME_DISLIKED,
    OUTCOME_HIT,
    OUTCOME_MISS,
    item_colours,
    session_frame,
)

#: Datasets the environment can load by name.
DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m")
#: Episode modes: replay the train split, or start from the train history and target the test part.
MODES: tuple[str, ...] = ("train", "test")
#: Valid MovieLens ratings.
RATINGS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Keys that ``reset(options=...)`` accepts (single and vector environment).
RESET_OPTIONS: tuple[str, ...] = ("user", "prefix")

#: ML-1M occupation names by code (``ml-1m/README``); ML-100K codes are mapped onto them.
OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


def _age_labels() -> tuple[str, ...]:
    bounds = AGE_GROUP_LOWER_BOUNDS
    labels = [f"under {bounds[1]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in zip(bounds[1:-1], bounds[2:])]
    return (*labels, f"{bounds[-1]}+")


AGE_GROUPS: tuple[str, ...] = _age_labels()


def unpack_bits(packed: np.ndarray, n_items: int, name: str = "packed") -> np.ndarray:
    """Bool item mask of a packed-bit observation field (``"liked"`` or ``"excluded"``).

    Item ``i`` is bit ``i % 8`` (least significant first) of byte ``i // 8``, i.e. the inverse
    of ``np.packbits(mask, bitorder="little")``. ``env.action_masks()`` equals
    ``~unpack_bits(obs["excluded"], n_items)``.

    :param packed: uint8 array ``(..., ceil(n_items / 8))``, one observation or a batch
    :param n_items: number of items of the dataset
    :param name: the field's name, for the error message (default ``"packed"``)
    :return: bool array ``(..., n_items)``
    """
    packed = np.asarray(packed, dtype=np.uint8)
    n_bytes = (int(n_items) + 7) // 8
    if packed.ndim == 0 or packed.shape[-1] != n_bytes:
        raise ValueError(
            f"{name} must have {n_bytes} bytes in its last axis for n_items={n_items}, "
            f"got shape {packed.shape}"
        )
    return np.unpackbits(packed, axis=-1, count=int(n_items), bitorder="little").astype(bool)


def unpack_liked(liked: np.ndarray, n_items: int) -> np.ndarray:
    """Bool liked-item mask of a packed ``"liked"`` observation (see :func:`unpack_bits`).

    :param liked: uint8 array ``(..., ceil(n_items / 8))``, one observation or a batch
    :param n_items: number of items of the dataset
    :return: bool array ``(..., n_items)``
    """
    return unpack_bits(liked, n_items, "liked")


def default_reward_map(like_threshold: int = 4) -> dict[int, float]:
    """The default reward of a recommended target item by rating: ``rating / 5`` on a like, else 0.

    :param like_threshold: smallest rating that counts as a like (default 4)
    """
    return {r: (r / 5.0 if r >= like_threshold else 0.0) for r in RATINGS}


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")
    return int(value)


def check_reset_options(options: Any) -> None:
    """Reject ``reset(options=...)`` that is not a mapping or has keys beyond :data:`RESET_OPTIONS`.

    A misspelt key (``{"usr": 5}``) would otherwise start a random user without a word.
    """
    if options is None:
        return
    allowed = ", ".join(repr(k) for k in RESET_OPTIONS)
    if not isinstance(options, Mapping):
        raise ValueError(f"reset options must be a dict with keys {allowed}, got {options!r}")
    unknown = [key for key in options if key not in RESET_OPTIONS]
    if unknown:
        raise ValueError(f"unknown reset options {unknown!r}; allowed keys: {allowed}")


def _rating_key(key: Any) -> int:
    """The rating of a ``reward_map`` key: an integer, or its decimal string as JSON writes it."""
    # JSON object keys are strings: spec.to_json() turns {4: 1.0} into {"4": 1.0}.
    if isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key:
        rating = int(key)
    elif isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        rating = int(key)
    else:
        raise ValueError(
            f'reward_map keys must be integer ratings 1..5 (or their strings such as "4", '
            f"as JSON stores them), got {key!r}"
        )
    if not 1 <= rating <= 5:
        raise ValueError(f"reward_map keys must be ratings 1..5, got {key!r}")
    return rating


def _reward_table(reward_map: Mapping[int | str, float] | None, like_threshold: int) -> np.ndarray:
    """float64 ``(6,)``: reward of a consumed target by rating; index 0 (no target) is 0."""
    if reward_map is None:
        reward_map = default_reward_map(like_threshold)
    if not isinstance(reward_map, Mapping):
        raise ValueError(f"reward_map must be a mapping rating -> reward, got {reward_map!r}")
    table = np.zeros(len(RATINGS) + 1, dtype=np.float64)
    seen: dict[int, Any] = {}
    for key, reward in reward_map.items():
        rating = _rating_key(key)
        if rating in seen:
            raise ValueError(
                f"reward_map gives rating {rating} twice (keys {seen[rating]!r} and {key!r})"
            )
        seen[rating] = key
        try:
            value = float(reward)
        except (TypeError, ValueError):
            raise ValueError(f"reward_map[{rating}] must be a number, got {reward!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"reward_map[{rating}] must be finite, got {reward!r}")
        table[int(rating)] = value
    return table


def _load_split(
    dataset: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    split: str,
    train_ratio: float,
    split_seed: int,
) -> Split:
    # Imported here: the data layer (pandas) is only needed when no split is injected.
    from recsim_env.movielens import load_movielens
    from recsim_env.splits import split_ratings

    data = load_movielens(dataset, data_dir, download=download)
    return split_ratings(data, split, train_ratio, split_seed)


class _EpisodeTables:
    """Per-user arrays precomputed once, so that ``reset``/``step`` never touch pandas.

    Shared by the single and the vector environment so both draw and build start states
    exactly alike.
    """

    def __init__(
        self,
        *,
        dataset: str,
        mode: str,
        data_dir: str | os.PathLike | None,
        download: bool,
        split: str,
        train_ratio: float,
        split_seed: int,
        history_len: int,
        like_threshold: int,
        reward_map: Mapping[int | str, float] | None,
        max_steps: int,
        split_data: Split | None,
    ) -> None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.mode = mode
        self.history_len = _check_int("history_len", history_len, 1)
        self.like_threshold = _check_int("like_threshold", like_threshold, 1, 5)
        self.max_steps = _check_int("max_steps", max_steps, 1)
        self.reward_table = _reward_table(reward_map, self.like_threshold)
        self.reward_list: list[float] = self.reward_table.tolist()
        self.reward_map: dict[int, float] = {r: self.reward_list[r] for r in RATINGS}

        if split_data is None:
            split_data = _load_split(dataset, data_dir, download, split, train_ratio, split_seed)
        elif not isinstance(split_data, Split):
            raise ValueError(
                f"split_data must be a recsim_env.Split (from split_ratings), "
                f"got {type(split_data).__name__}"
            )
        self.split = split_data
        data = split_data.data
        self.n_users = split_data.n_users
        self.n_items = split_data.n_items
        if self.n_items < 1:
            raise ValueError("the dataset has no items")
        self.n_bytes = (self.n_items + 7) // 8
        self.user_features = np.ascontiguousarray(data.user_features, dtype=np.int32)
        self.titles = data.item_titles
        self.item_genres = data.item_genres
        self._item_colours: np.ndarray | None = None  # built on the first rgb_array frame
        self.user_raw_ids = data.user_raw_ids

        thr = self.like_threshold
        train_indptr = np.asarray(split_data.train_indptr, dtype=np.int64)
        test_indptr = np.asarray(split_data.test_indptr, dtype=np.int64)
        train_items = np.asarray(split_data.train_items, dtype=np.intp)
        test_items = np.asarray(split_data.test_items, dtype=np.intp)
        train_ratings = np.asarray(split_data.train_ratings, dtype=np.int8)
        test_ratings = np.asarray(split_data.test_ratings, dtype=np.int8)
        self._check_split(
            train_indptr, train_items, train_ratings, test_indptr, test_items, test_ratings
        )
        train_liked = train_ratings >= thr
        test_liked = test_ratings >= thr
        n_train = np.diff(train_indptr)

        # Histories always come from the train part.
        self.hist_items = train_items
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
        self.liked_cum: list[int] = np.concatenate(([0], np.cumsum(train_liked))).tolist()
        if mode == "train":
            # Largest prefix that still leaves a liked target: the last liked position >= 1.
            user_of = np.repeat(np.arange(self.n_users), n_train)
            position = np.arange(train_items.size) - train_indptr[:-1][user_of]
            candidates = np.append(np.where(train_liked & (position >= 1), position, 0), 0)
            # The appended 0 keeps reduceat in range; empty segments are zeroed after.
            last_liked = np.maximum.reduceat(candidates, train_indptr[:-1]) * (n_train > 0)
            self.max_prefix = last_liked
            self.eligible = last_liked >= 1
            self.tgt_items, self.tgt_ratings, tgt_liked = train_items, train_ratings, train_liked
            self.tgt_lo = self.hist_lo
            self.tgt_hi: list[int] = train_indptr[1:].tolist()
            why = "a train sequence of >= 2 items with a liked item after the first"
        else:
            test_user_of = np.repeat(np.arange(self.n_users), np.diff(test_indptr))
            n_liked_test = np.bincount(test_user_of, weights=test_liked, minlength=self.n_users)
            self.max_prefix = n_train
            self.eligible = n_liked_test >= 1
            self.tgt_items, self.tgt_ratings, tgt_liked = test_items, test_ratings, test_liked
            self.tgt_lo = test_indptr[:-1].tolist()
            self.tgt_hi = test_indptr[1:].tolist()
            why = f"at least one test rating >= like_threshold={thr}"
        self.tgt_liked_cum: list[int] = np.concatenate(([0], np.cumsum(tgt_liked))).tolist()
        self.max_prefix_list: list[int] = self.max_prefix.tolist()
        self.users = np.flatnonzero(self.eligible).astype(np.int64)
        self.users.setflags(write=False)
        self.users_list: list[int] = self.users.tolist()
        if self.users.size == 0:
            raise ValueError(f"no user can start an episode in {mode} mode: it needs {why}")
        self.eligible_reason = why

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
            bad_rating = ratings.size and (ratings.min() < 1 or ratings.max() > 5)
            if ratings.shape != items.shape or bad_rating:
                raise ValueError(f"split.{part}_ratings must be ratings 1..5, one per item")
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
        """A uniformly random eligible user and, in train mode, a uniform prefix length."""
        user = self.users_list[rng.integers(len(self.users_list))]
        if self.mode == "train":
            return user, int(rng.integers(1, self.max_prefix_list[user] + 1))
        return user, self.max_prefix_list[user]

    def check_start(self, options: Mapping[str, Any], rng: np.random.Generator) -> tuple[int, int]:
        """The ``(user, prefix)`` of ``reset(options={"user": u[, "prefix": p]})``."""
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
        prefix = _check_int('options["prefix"]', prefix, 1, hi)
        return user, prefix

    def write_start(
        self,
        user: int,
        prefix: int,
        history: np.ndarray,
        excluded: np.ndarray,
        liked: np.ndarray,
        targets: np.ndarray,
        scratch: np.ndarray,
    ) -> tuple[int, int]:
        """Write user ``user``'s start state (first ``prefix`` train items) into the buffers.

        ``excluded`` (packed bits, the complement of the action mask) gets the whole history
        (at a start state nothing has been recommended yet); ``targets`` the rating of each
        target item (0 elsewhere).

        :return: ``(n_targets, n_liked_targets)``
        """
        lo = self.hist_lo[user]
        hi = lo + prefix
        p_lo = self.pad_lo[user] + prefix
        history[:] = self.padded_tokens[p_lo : p_lo + self.history_len]
        scratch.fill(False)
        scratch[self.hist_items[lo:hi]] = True
        excluded[:] = np.packbits(scratch, bitorder="little")
        scratch.fill(False)
        scratch[self.liked_items[self.liked_cum[lo] : self.liked_cum[hi]]] = True
        liked[:] = np.packbits(scratch, bitorder="little")
        targets.fill(0)
        if self.mode == "train":
            t_lo, t_hi = hi, self.tgt_hi[user]
        else:
            t_lo, t_hi = self.tgt_lo[user], self.tgt_hi[user]
        targets[self.tgt_items[t_lo:t_hi]] = self.tgt_ratings[t_lo:t_hi]
        return t_hi - t_lo, self.tgt_liked_cum[t_hi] - self.tgt_liked_cum[t_lo]

    def start_observations(
        self, users: np.ndarray, prefixes: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
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
                    "each prefix must lie in [1, last liked train position] of its user"
                )
        n = users.size
        lo = np.asarray(self.hist_lo, dtype=np.int64)[users]
        start = np.asarray(self.pad_lo, dtype=np.int64)[users] + prefix
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
        return {
            "user": self.user_features[users],
            "history": history,
            "liked": liked,
            "excluded": np.packbits(mask, axis=1, bitorder="little").reshape(n, self.n_bytes),
        }

    # ----------------------------------------------------------------- spaces and text
    def observation_space(self) -> spaces.Dict:
        high_user = np.array([c - 1 for c in USER_FEATURE_CARDINALITIES], dtype=np.int32)
        return spaces.Dict(
            {
                "user": spaces.Box(low=0, high=high_user, shape=(len(high_user),), dtype=np.int32),
                "history": spaces.Box(
                    low=0, high=self.n_items, shape=(self.history_len,), dtype=np.int32
                ),
                "liked": spaces.Box(low=0, high=255, shape=(self.n_bytes,), dtype=np.uint8),
                "excluded": spaces.Box(low=0, high=255, shape=(self.n_bytes,), dtype=np.uint8),
            }
        )

    def describe_user(self, user: int) -> str:
        gender, age, occupation = (int(x) for x in self.user_features[user])
        gender_s = "FM"[gender] if gender in (0, 1) else "?"
        age_s = AGE_GROUPS[age] if 0 <= age < len(AGE_GROUPS) else "?"
        occ_s = OCCUPATIONS[occupation] if 0 <= occupation < len(OCCUPATIONS) else "?"
        return (
            f"user {user} (raw id {int(self.user_raw_ids[user])}): gender {gender_s}, "
            f"age {age_s}, occupation {occupation} ({occ_s})"
        )

    def render_text(
        self,
        user: int,
        history: np.ndarray,
        history_size: int,
        steps: int,
        action: int,
        rating: int,
        n_liked_left: int,
    ) -> str:
        recent = [int(t) - 1 for t in history[-5:] if t > 0]
        titles = " | ".join(str(self.titles[i]) for i in recent) or "(empty)"
        lines = [
            self.describe_user(user),
            f"history ({len(recent)} most recent of {history_size}, oldest first): {titles}",
        ]
        if action < 0:
            lines.append(f"step {steps}: no recommendation yet; {n_liked_left} liked targets left")
        else:
            if rating >= self.like_threshold:
                outcome = f"LIKED (rating {rating}, reward {self.reward_list[rating]:g})"
            elif rating > 0:
                reward = self.reward_list[rating]
                outcome = f"watched, not liked (rating {rating}, reward {reward:g})"
            else:
                outcome = "not a target (reward 0)"
            lines.append(
                f'step {steps}: recommended item {action} "{self.titles[action]}" -> {outcome}; '
                f"{n_liked_left} liked targets left"
            )
        return "\n".join(lines) + "\n"

    def render_frame(self, history: np.ndarray, outcomes: np.ndarray, steps: int) -> np.ndarray:
        """The ``rgb_array`` frame of one session (layout: :mod:`recsim_env.rendering`)."""
        if self._item_colours is None:
            genres = np.asarray(self.item_genres)
            if genres.ndim != 2 or genres.shape[0] != self.n_items:
                raise ValueError(
                    f"split.data.item_genres must be a bool (n_items={self.n_items}, n_genres) "
                    f"array to colour the rgb_array frame, got shape {genres.shape}"
                )
            self._item_colours = item_colours(genres)
        return session_frame(history, outcomes, steps, self.max_steps, self._item_colours)


class MovieLensRecEnv(gym.Env[dict[str, np.ndarray], int]):
    """
    ## Description

    A recommender system as a reinforcement-learning agent: the environment is one simulated
    MovieLens user per episode, replaying that user's real, time-ordered ratings (the MDP of the
    LSRWRL paper, `paper/LSRWRL.md`). At each step the agent
    recommends one movie; the user *likes* it when it is one of the user's not-yet-consumed
    target items with a rating ``>= like_threshold``.

    The data come from :func:`recsim_env.load_movielens` and are split per user by
    :func:`recsim_env.split_ratings` (chronological 80/20 by default); ``split_data`` injects an
    existing :class:`recsim_env.Split` instead.

    ## Action Space

    ``Discrete(n_items)``: action ``a`` recommends item index ``a`` (1,682 items for ml-100k,
    3,706 for ml-1m). Item index ``i`` is written as token ``i + 1`` in observations.

    ## Observation Space

    A ``Dict`` of integer ``Box`` spaces (ids are never ``Discrete``, which SB3 would one-hot):

    | Key         | Shape                   | Dtype  | Min | Max          | Meaning                                                          |
    |-------------|-------------------------|--------|-----|--------------|------------------------------------------------------------------|
    | `"user"`    | `(3,)`                  | int32  | 0   | `[1, 6, 20]` | gender (0 F, 1 M), age group (ML-1M's 7 groups), occupation code |
    | `"history"` | `(history_len,)`        | int32  | 0   | `n_items`    | last `history_len` item tokens (item + 1), 0-padded in front, most recent last |
    | `"liked"`   | `(ceil(n_items / 8),)`  | uint8  | 0   | 255          | long-term liked-item set, packed bits: item `i` is bit `i % 8` of byte `i // 8` |
    | `"excluded"`| `(ceil(n_items / 8),)`  | uint8  | 0   | 255          | items that cannot be recommended now, packed bits as `"liked"`: the episode's whole history (not only the last `history_len`) and every item recommended this episode |

    ``"excluded"`` makes the MDP Markov in its observation: a miss leaves the user's interest
    state (``"history"``, ``"liked"``) unchanged, as in the paper, but it always sets the
    recommended item's bit, so a deterministic policy can avoid repeats, and
    ``action_masks() == ~unpack_bits(obs["excluded"], n_items)`` exactly. It holds nothing about
    the targets (only the history and the agent's own actions); ``"liked"`` is a subset of it.

    Both item sets are packed (``np.packbits(mask, bitorder="little")``, undo it with
    :func:`recsim_env.unpack_bits`) so that an ML-100K observation takes 514 bytes and an ML-1M
    one 1,020 bytes; a replay buffer of 200,000 transitions (observation and next observation)
    then takes about 0.2 GiB (ML-100K) or 0.4 GiB (ML-1M). Every call returns fresh arrays.

    ## Rewards

    When the recommended item ``a`` is one of the episode's remaining target items, with rating
    ``r``, the reward is ``reward_map[r]`` and the item is consumed (it is no longer a target).
    By default ``reward_map = {r: r / 5 for r >= like_threshold, else 0}``: 0.8 for a 4, 1.0 for
    a 5. If ``r >= like_threshold`` (a *like*) the item is also appended to the history and to the
    liked set; otherwise the interest state does not change. Any other item gives reward 0 and
    leaves the interest state unchanged. Whatever the outcome, the recommended item joins
    ``"excluded"`` for the rest of the episode.

    ## Starting State

    * ``mode="train"``: a user drawn uniformly (``self.np_random``) among ``env.unwrapped.users``,
      the users whose train sequence has a liked item after its first position; then a prefix
      length ``p`` uniform in ``[1, last liked position]``. History = the first ``p`` train items,
      liked set = the liked items among them, targets = the rest of the train sequence (so at
      least one liked target remains).
    * ``mode="test"``: history = the user's whole train sequence, targets = the user's test items;
      ``env.unwrapped.users`` are the users with at least one liked test item. No test item is
      ever in a start history.

    In a start state nothing has been recommended yet, so ``"excluded"`` is the set of the start
    history's items (all ``p`` of them, or the whole train sequence in test mode).

    ``reset(options={"user": u})`` starts user ``u`` (``"prefix": p`` also fixes the prefix in
    train mode); ``reset(options={"user": "next"})`` visits ``env.unwrapped.users`` in order,
    wrapping around, so ``len(env.unwrapped.users)`` such resets recommend to every user once.
    ``env.unwrapped.start_observations(users)`` returns the start observations of many users at
    once (test mode: the whole train history, what evaluation scores from; train mode: the
    largest valid prefix unless ``prefixes`` are given). ``env.unwrapped.max_prefixes[u]`` is
    user ``u``'s largest start prefix (train mode: its last liked train position, 0 if it
    cannot start; test mode: its train length).

    ## Episode End

    1. Termination: no liked target is left.
    2. Truncation: ``max_steps`` recommendations (default 50), counted by the environment
       itself (not a ``TimeLimit`` wrapper) so the single and vector environments agree.
       ``truncated`` is only ``True`` when ``terminated`` is not.

    ``info`` (after ``reset`` and ``step``) holds ``"user"`` (user index), ``"prefix"`` (start
    history length) and ``"liked"`` (bool: the recommended item was liked, which the observation
    shows too). In train mode it also holds ``"rating"`` (rating of the recommended item if it was
    a remaining target, else 0; 0 after ``reset``), ``"n_targets_left"`` and ``"n_liked_left"``
    (remaining target items, all and liked): diagnostics of the training data. In test mode
    these three keys are left out, because they depend on the held-out targets (the rating
    of a non-liked test item, the recall denominator): no wrapper or agent can read the answer
    from ``info``. Use the reward, or :func:`recsim_env.evaluate_ranking` for ranking metrics.

    ``action_masks()`` marks the items that may be recommended now: not in the episode's history
    (the whole history, not only the last ``history_len``) and not yet recommended this episode,
    i.e. ``~unpack_bits(obs["excluded"], n_items)`` of the last observation. It never depends on
    the targets. Masks are advisory: a masked action is still a valid action (it gives reward 0).

    ## Arguments

    ```python
    >>> import gymnasium as gym
    >>> import recsim_env
    >>> env = gym.make("MovieLensRec-v0")  # doctest: +SKIP
    >>> env  # doctest: +SKIP
    <OrderEnforcing<PassiveEnvChecker<MovieLensRecEnv<MovieLensRec-v0>>>>
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> sorted(obs), obs["history"].shape, obs["liked"].shape, obs["excluded"].shape  # doctest: +SKIP
    (['excluded', 'history', 'liked', 'user'], (20,), (211,), (211,))
    >>> env = gym.make("MovieLensRec-v0", dataset="ml-1m", mode="test", data_dir="/path/to/root")  # doctest: +SKIP

    ```

    | Parameter        | Type                | Default       | Description                                                                |
    |------------------|---------------------|---------------|----------------------------------------------------------------------------|
    | `dataset`        | **str**             | `"ml-100k"`   | `"ml-100k"` or `"ml-1m"`                                                   |
    | `mode`           | **str**             | `"train"`     | `"train"` (replay the train split) or `"test"` (targets = test items)      |
    | `data_dir`       | **PathLike**        | `None`        | root holding `ml-100k/` or `ml-1m/`; else `MOVIELENS_DATA`, cache, download |
    | `download`       | **bool**            | `True`        | download the GroupLens zip if the files are nowhere else                   |
    | `split`          | **str**             | `"temporal"`  | per-user split: `"temporal"` (chronological) or `"random"`                 |
    | `train_ratio`    | **float**           | `0.8`         | fraction of each user's ratings in the train part                          |
    | `split_seed`     | **int**             | `0`           | seed of the random split                                                   |
    | `history_len`    | **int**             | `20`          | length of the `"history"` observation                                      |
    | `like_threshold` | **int**             | `4`           | smallest rating (1..5) that counts as a like                               |
    | `reward_map`     | **Mapping**         | `None`        | rating 1..5 (or "1".."5") -> reward of a consumed target; others give 0    |
    | `max_steps`      | **int**             | `50`          | recommendations per episode before truncation                              |
    | `render_mode`    | **str**             | `None`        | `"ansi"` (returns text), `"human"` (prints it) or `"rgb_array"` (picture)  |
    | `split_data`     | **Split**           | `None`        | use this split; `dataset`, `data_dir`, `download`, `split*` are ignored    |

    ``reset(options=...)`` accepts the keys ``"user"`` and ``"prefix"`` only; any other key, or
    a user index outside ``[0, n_users)``, is a ``ValueError``.

    Rendering (``metadata["render_modes"] = ["human", "ansi", "rgb_array"]``,
    ``metadata["render_fps"] = 4``): ``"ansi"`` and ``"human"`` give the user, the recent history
    and the last recommendation as text. ``"rgb_array"`` (what SB3's ``make_vec_env`` asks for,
    and what video recorders record) returns a deterministic uint8 ``(height, width, 3)``
    picture of the session, of constant shape (``(96, 400, 3)`` with the defaults), made of 16-px
    cells 25 to a row, top to bottom: the ``"history"`` slots (oldest first; item colour = hue of
    its first genre, near-white without a genre, dark grey for padding); a blank row; one cell
    per recommendation of this episode (green = liked target, amber = target rated below
    ``like_threshold``, grey = not a target, dark grey = not made yet; ``max_steps`` cells); a
    blank row; a progress bar of the steps used out of ``max_steps`` (blue). Exact colours and
    sizes: :mod:`recsim_env.rendering`.

    ## Vectorized environment

    :class:`recsim_env.MovieLensRecVectorEnv` steps ``num_envs`` users at once with numpy
    (``AutoresetMode.NEXT_STEP``); sub-environment ``i`` reset with ``seed + i`` follows exactly
    the episodes of a single environment reset with ``seed + i``.

    ```python
    >>> envs = gym.make_vec("MovieLensRec-v0", num_envs=64, vectorization_mode="vector_entry_point")  # doctest: +SKIP
    >>> envs  # doctest: +SKIP
    MovieLensRecVectorEnv(MovieLensRec-v0, num_envs=64)

    ```

    ## Version History

    * v0: Initial version.
    """

    metadata = {"render_modes": ["human", "ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        dataset: str = "ml-100k",
        mode: str = "train",
        data_dir: str | os.PathLike | None = None,
        download: bool = True,
        split: str = "temporal",
        train_ratio: float = 0.8,
        split_seed: int = 0,
        history_len: int = 20,
        like_threshold: int = 4,
        reward_map: Mapping[int | str, float] | None = None,
        max_steps: int = 50,
        render_mode: str | None = None,
        split_data: Split | None = None,
    ) -> None:
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
        self.render_mode = render_mode
        self.mode: str = tables.mode
        self.split: Split = tables.split
        self.users: np.ndarray = tables.users
        self.max_prefixes: np.ndarray = tables.max_prefix.view()
        self.max_prefixes.setflags(write=False)
        self.n_items: int = tables.n_items
        self.history_len: int = tables.history_len
        self.like_threshold: int = tables.like_threshold
        self.reward_map: dict[int, float] = tables.reward_map
        self.max_steps: int = tables.max_steps

        self.action_space = spaces.Discrete(self.n_items)
        self.observation_space = tables.observation_space()

        # Episode state, preallocated once.
        self._history = np.zeros(self.history_len, dtype=np.int32)
        # Packed bits of the items in the history or recommended this episode: the "excluded"
        # observation, and action_masks() is its complement (one array, so they always agree).
        self._excluded = np.zeros(tables.n_bytes, dtype=np.uint8)
        self._liked = np.zeros(tables.n_bytes, dtype=np.uint8)
        # Rating of each remaining target item, 0 elsewhere.
        self._targets = np.zeros(self.n_items, dtype=np.int8)
        self._scratch = np.zeros(self.n_items, dtype=bool)
        self._user_obs = np.zeros(3, dtype=np.int32)
        self._user = -1  # -1: not reset yet
        self._prefix = 0
        self._history_size = 0
        self._steps = 0
        self._n_targets_left = 0
        self._n_liked_left = 0
        self._last_action = -1
        self._last_rating = 0
        self._next_user = 0
        # Outcome code of each recommendation of the episode, kept only for rgb_array frames.
        self._outcomes = np.zeros(self.max_steps, np.int8) if render_mode == "rgb_array" else None

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode (a new user).

        :param seed: seeds ``self.np_random`` (user and prefix draws)
        :param options: ``{"user": u}`` starts user ``u`` (an element of ``self.users``), or
            ``{"user": "next"}`` the next user of ``self.users`` in order; in train mode
            ``{"user": u, "prefix": p}`` also fixes the prefix length ``p``; any other key, or a
            user index outside ``[0, n_users)``, is a ``ValueError``
        :return: ``(observation, info)``
        """
        check_reset_options(options)
        super().reset(seed=seed)
        tables = self._tables
        if options is not None and options.get("user") is not None:
            if isinstance(options["user"], str):
                if options["user"] != "next":
                    raise ValueError(
                        f'options["user"] must be a user index or "next", got {options["user"]!r}'
                    )
                options = {**options, "user": int(self.users[self._next_user % self.users.size])}
                self._next_user = (self._next_user + 1) % self.users.size
            user, prefix = tables.check_start(options, self.np_random)
        else:
            if options is not None and options.get("prefix") is not None:
                raise ValueError('options["prefix"] needs options["user"]')
            user, prefix = tables.draw_start(self.np_random)
        self._n_targets_left, self._n_liked_left = tables.write_start(
            user, prefix, self._history, self._excluded, self._liked, self._targets, self._scratch
        )
        self._user_obs[:] = tables.user_features[user]
        self._user = user
        self._prefix = prefix
        self._history_size = prefix
        self._steps = 0
        self._last_action = -1
        self._last_rating = 0
        if self._outcomes is not None:
            self._outcomes.fill(0)
        if self.render_mode == "human":
            self.render()
        return self._obs(), self._info(0, False)

    def step(
        self, action: int | np.integer | np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Recommend item ``action`` to the current user.

        :param action: item index in ``[0, n_items)`` (int, numpy integer or 0-d integer array)
        :return: ``(observation, reward, terminated, truncated, info)``
        """
        if type(action) is not int:
            action = self._check_action(action)
        elif not 0 <= action < self.n_items:
            raise ValueError(
                f"action must be an item index in [0, {self.n_items - 1}], got {action}"
            )
        if self._user < 0:
            raise ResetNeeded("Call reset() before step(): the episode has no user yet")
        rating = int(self._targets[action])
        self._excluded[action >> 3] |= 1 << (action & 7)
        liked = False
        reward = 0.0
        if rating:
            self._targets[action] = 0
            self._n_targets_left -= 1
            reward = self._tables.reward_list[rating]
            if rating >= self.like_threshold:
                liked = True
                history = self._history
                history[:-1] = history[1:]
                history[-1] = action + 1
                self._liked[action >> 3] |= 1 << (action & 7)
                self._history_size += 1
                self._n_liked_left -= 1
        self._steps += 1
        self._last_action = action
        self._last_rating = rating
        terminated = self._n_liked_left == 0
        truncated = not terminated and self._steps >= self.max_steps
        if self._outcomes is not None and self._steps <= self.max_steps:
            outcome = OUTCOME_HIT if liked else OUTCOME_DISLIKED if rating else OUTCOME_MISS
            self._outcomes[self._steps - 1] = outcome
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, truncated, self._info(rating, liked)

    def action_masks(self) -> np.ndarray:
        """bool ``(n_items,)``: ``True`` for items not in the history and not recommended yet.

        Exactly ``~unpack_bits(obs["excluded"], n_items)`` of the last observation. Never depends
        on the targets. For sb3-contrib ``MaskablePPO``.
        """
        if self._user < 0:
            raise ResetNeeded("Call reset() before action_masks()")
        return np.unpackbits(self._excluded, count=self.n_items, bitorder="little") == 0

    def render(self) -> str | np.ndarray | None:
        """Render the session in ``self.render_mode``.

        ``"ansi"`` returns the user, the recent history and the last recommendation with movie
        titles as text, ``"human"`` prints that text, ``"rgb_array"`` returns the picture of the
        session, uint8 ``(height, width, 3)`` (layout in :mod:`recsim_env.rendering`).
        """
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render without a render mode; "
                'use gym.make("MovieLensRec-v0", render_mode="ansi")'
            )
            return None
        if self._user < 0:
            raise ResetNeeded("Call reset() before render()")
        if self._outcomes is not None:
            return self._tables.render_frame(self._history, self._outcomes, self._steps)
        text = self._tables.render_text(
            self._user, self._history, self._history_size, self._steps,
            self._last_action, self._last_rating, self._n_liked_left,
        )  # fmt: skip
        if self.render_mode == "human":
            print(text, end="")
            return None
        return text

    # ----------------------------------------------------------------- extras
    def start_observations(
        self, users: np.ndarray, prefixes: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Batched start observations of many users, without touching the episode or the RNG.

        :param users: int ``(B,)`` user indices. Test mode: any user (start = whole train history).
            Train mode: users of ``self.users``
        :param prefixes: train mode only: int ``(B,)`` prefix lengths; default each user's
            largest valid prefix (up to its last liked train item)
        :return: ``{"user": (B, 3), "history": (B, history_len), "liked": (B, ceil(n_items / 8)),
            "excluded": (B, ceil(n_items / 8))}``, each row exactly the observation
            ``reset(options={"user": u[, "prefix": p]})`` returns (``"excluded"`` = the start
            history's items)
        """
        return self._tables.start_observations(users, prefixes)

    def _check_action(self, action: Any) -> int:
        if isinstance(action, np.ndarray):
            if action.shape != () or not np.issubdtype(action.dtype, np.integer):
                raise ValueError(
                    f"action must be a scalar item index in [0, {self.n_items - 1}], "
                    f"got an array of shape {action.shape} and dtype {action.dtype}"
                )
            action = action.item()
        elif isinstance(action, np.integer):
            action = int(action)
        if isinstance(action, bool) or not isinstance(action, int):
            raise ValueError(
                f"action must be an integer item index in [0, {self.n_items - 1}], got {action!r}"
            )
        if not 0 <= action < self.n_items:
            raise ValueError(
                f"action must be an item index in [0, {self.n_items - 1}], got {action}"
            )
        return action

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "user": self._user_obs.copy(),
            "history": self._history.copy(),
            "liked": self._liked.copy(),
            "excluded": self._excluded.copy(),
        }

    def _info(self, rating: int, liked: bool) -> dict[str, Any]:
        if self.mode == "test":  # only what the observation shows too: the targets are the answer
            return {"user": self._user, "prefix": self._prefix, "liked": liked}
        return {
            "user": self._user,
            "prefix": self._prefix,
            "rating": rating,
            "liked": liked,
            "n_targets_left": self._n_targets_left,
            "n_liked_left": self._n_liked_left,
        }
