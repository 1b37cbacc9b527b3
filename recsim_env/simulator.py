"""The simulated MovieLens user: start states, like and reward, transition and episode end.

The rules of ``MovieLensRec-v0``'s user live here, in one place, and everything that builds
states or outcomes uses them: the single environment (:mod:`recsim_env.env`, the Gymnasium
face), the native vector environment (:mod:`recsim_env.vector_env`), the agents' scoring
(``agents.scoring``) and the logged-data sampler (``agents.next_item``).

:class:`ReplaySimulator` (``user_model="replay"``, the default) is the replay user of the LSRWRL
paper: an episode replays one real user, and a recommended item is liked only when it is one of
the user's remaining logged target items rated ``>= like_threshold``. :class:`ModelSimulator`
(``user_model="ease"``) is a learned user (:mod:`recsim_env.user_model`) who may like any item;
its rules are in its docstring. :class:`UserSimulator` holds what both share, and
:func:`make_simulator` picks one. The replay rules:

* **Start states** (:meth:`ReplaySimulator.draw_start`, :meth:`ReplaySimulator.check_start`):
  train mode draws a user and a prefix of their train sequence (history = the prefix, targets
  = the rest of it); test mode starts from the whole train history with the test items as
  targets. :meth:`ReplaySimulator.prefix_observations` builds the observation of any prefix.
* **Like and reward** (:meth:`ReplaySimulator.step`, :meth:`ReplaySimulator.step_batch`): a
  remaining target with rating ``r`` earns ``reward_map[r]`` and is consumed; it is liked when
  ``r >= like_threshold``; anything else earns 0. Ratings are those of the dataset's rating
  scale (whole or half stars, or 1 for every interaction of an implicit log).
* **Transition**: a like appends the item to the history and the liked set; every
  recommended item joins the ``"excluded"`` set (no repeats); nothing else changes.
* **Episode end**: terminated when no liked target is left, truncated after ``max_steps``.
* **Slates** (:meth:`ReplaySimulator.step_slate`, :meth:`ReplaySimulator.step_slate_batch`,
  settings in :class:`SlateResponse`): the user scans a slate of ``k`` items in order, up to a
  depth drawn per step (``"independent"``: all ``k``; ``"cascade"``: position ``i`` (1-based)
  with probability ``examine ** (i - 1)``). Each examined position whose item is a remaining
  target is consumed as above (liked ones join the history in slate order); ``"cascade"``
  stops after the first like. A position that repeats an earlier one, or holds an item
  already excluded, is never consumed. Every item of the slate joins ``"excluded"``, so a
  target shown but not consumed (not examined) is lost: it can never be consumed later.
  With ``k = 1`` this is exactly the single-item rule.

The per-episode state (:class:`EpisodeState` for one user, :class:`BatchState` for
``num_envs`` users) is preallocated once by the environment and updated in place, so that
``reset``/``step`` never touch pandas.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from recsim_env.dataset import DATASETS, STAR_RATINGS, MovieLensData, Split, rating_levels

#: Episode modes: replay the train split, or start from the train history and target the test part.
MODES: tuple[str, ...] = ("train", "test")
#: Whole-star MovieLens ratings (ML-100K, ML-1M); other datasets have their own
#: :attr:`~recsim_env.dataset.MovieLensData.rating_scale`.
RATINGS: tuple[int, ...] = STAR_RATINGS
#: How the user responds to a slate (see :class:`SlateResponse`).
RESPONSES: tuple[str, ...] = ("independent", "cascade")
#: Default ``examine`` of the ``"cascade"`` response: the probability of going on to the next
#: position after one without a like (position ``i`` is examined with ``examine ** (i - 1)``).
DEFAULT_EXAMINE: float = 0.8


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


class EpisodeState:
    """One user's episode, updated in place by :meth:`ReplaySimulator.step`.

    :param n_items: number of items
    :param history_len: length of the ``"history"`` observation
    :param model: also allocate the learned user model's per-item state scores
    :param n_user_features: length of the ``"user"`` observation (default 3, MovieLens)
    """

    __slots__ = (
        "user", "prefix", "history", "excluded", "liked", "targets", "user_obs", "history_size",
        "steps", "n_targets_left", "n_liked_left", "last_action", "last_rating", "score",
        "score_like", "misses", "like_probability",
    )  # fmt: skip

    def __init__(
        self, n_items: int, history_len: int, model: bool = False, n_user_features: int = 3
    ) -> None:
        n_bytes = (n_items + 7) // 8
        self.user = -1  # -1: not reset yet
        self.prefix = 0
        self.history = np.zeros(history_len, dtype=np.int32)
        # Packed bits of the items in the history or recommended this episode: the "excluded"
        # observation, and action_masks() is its complement (one array, so they always agree).
        self.excluded = np.zeros(n_bytes, dtype=np.uint8)
        self.liked = np.zeros(n_bytes, dtype=np.uint8)
        self.targets = np.zeros(n_items, dtype=np.int8)  # rating level of each remaining target, else 0
        self.user_obs = np.zeros(n_user_features, dtype=np.int32)
        self.history_size = 0
        self.steps = 0
        self.n_targets_left = 0
        self.n_liked_left = 0
        self.last_action = -1
        self.last_rating = 0
        # Learned user model only: the state scores s and s_L of every item, and the run of
        # consecutive misses (see recsim_env.user_model).
        self.score = np.zeros(n_items, dtype=np.float32) if model else None
        self.score_like = np.zeros(n_items, dtype=np.float32) if model else None
        self.misses = 0
        self.like_probability = 0.0


class BatchState:
    """``num_envs`` users' episodes as 2-D arrays, updated in place by :meth:`ReplaySimulator.step_batch`.

    :param num_envs: number of users stepped together
    :param n_items: number of items
    :param history_len: length of the ``"history"`` observation
    :param model: also allocate the learned user model's per-item state scores
    :param n_user_features: length of the ``"user"`` observation (default 3, MovieLens)
    :param rating_dtype: dtype of the ratings the simulator reports (``last_rating``)
    """

    def __init__(
        self, num_envs: int, n_items: int, history_len: int, model: bool = False, n_user_features: int = 3,
        rating_dtype: Any = np.int64,
    ) -> None:
        n, m = num_envs, n_items
        n_bytes = (n_items + 7) // 8
        self.rows = np.arange(n)
        self.row_offset = self.rows * m  # flat index of (row, item 0)
        self.byte_offset = self.rows * n_bytes
        self.targets = np.zeros((n, m), dtype=np.int8)  # rating level of each remaining target, else 0
        # Packed bits of the items in the history or recommended this episode: the "excluded"
        # observation; action_masks() is its complement.
        self.excluded = np.zeros((n, n_bytes), dtype=np.uint8)
        self.history = np.zeros((n, history_len), dtype=np.int32)
        self.liked = np.zeros((n, n_bytes), dtype=np.uint8)
        self.user_obs = np.zeros((n, n_user_features), dtype=np.int32)
        self.user = np.full(n, -1, dtype=np.int64)
        self.prefix = np.zeros(n, dtype=np.int64)
        self.history_size = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.n_targets_left = np.zeros(n, dtype=np.int64)
        self.n_liked_left = np.zeros(n, dtype=np.int64)
        self.last_flat = self.row_offset.copy()  # flat (row, item) index of the last actions
        self.last_rating = np.zeros(n, dtype=rating_dtype)
        # Flat views, so a step indexes (row, item) pairs with one integer array.
        self.targets_flat = self.targets.reshape(-1)
        self.excluded_flat = self.excluded.reshape(-1)
        self.liked_flat = self.liked.reshape(-1)
        self.score = np.zeros((n, m), dtype=np.float32) if model else None
        self.score_like = np.zeros((n, m), dtype=np.float32) if model else None
        self.misses = np.zeros(n, dtype=np.int64)
        self.like_probability = np.zeros(n, dtype=np.float64)

    def row(self, i: int) -> EpisodeState:
        """Sub-env ``i`` as an :class:`EpisodeState` whose arrays are views of this batch's rows.

        Only the arrays are shared; the scalar fields of the returned object are copies.
        """
        view = EpisodeState.__new__(EpisodeState)
        view.history, view.excluded = self.history[i], self.excluded[i]
        view.liked, view.targets, view.user_obs = self.liked[i], self.targets[i], self.user_obs[i]
        view.score = None if self.score is None else self.score[i]
        view.score_like = None if self.score_like is None else self.score_like[i]
        return view


_BITS = (1 << np.arange(8)).astype(np.uint8)


def concatenated_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges ``[lo[j], hi[j])`` one after another, and the ``j`` of each element.

    :param lo: int64 ``(k,)`` range starts
    :param hi: int64 ``(k,)`` range ends, ``hi >= lo``
    :return: ``(index, segment)``, int64 ``(sum(hi - lo),)`` each
    """
    lengths = hi - lo
    segment = np.repeat(np.arange(lengths.size), lengths)
    index = np.arange(segment.size) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
    return index, segment


class SlateResponse:
    """The validated slate settings of an environment and the user's examination draw.

    One place checks ``slate_size``, ``response`` and ``examine`` for the single and the
    vector environment. The response rule itself is :meth:`ReplaySimulator.step_slate`.

    :param slate_size: items per recommendation, ``1 <= slate_size <= n_items`` (default 1: the
        single-item environment)
    :param response: ``"independent"`` (the user examines every position) or ``"cascade"``
        (position ``i``, 1-based, examined with probability ``examine ** (i - 1)``; the user
        stops after the first like)
    :param examine: ``"cascade"`` only: probability in ``[0, 1]`` of going on to the next
        position (default :data:`DEFAULT_EXAMINE`); must be ``None`` for ``"independent"``
    :param n_items: number of items of the dataset (the largest slate)
    """

    def __init__(
        self, slate_size: int, response: str, examine: float | None, n_items: int
    ) -> None:
        self.slate_size = check_int("slate_size", slate_size, 1, n_items)
        if response not in RESPONSES:
            raise ValueError(f"response must be one of {list(RESPONSES)}, got {response!r}")
        self.response: str = response
        if response == "independent":
            if examine is not None:
                raise ValueError(
                    "examine only applies to response='cascade' (independent: every position "
                    f"is examined); got examine={examine!r}: drop it or set response='cascade'"
                )
            self.examine: float | None = None
        else:
            if examine is None:
                examine = DEFAULT_EXAMINE
            if isinstance(examine, (bool, np.bool_)) or not isinstance(
                examine, (int, float, np.integer, np.floating)
            ) or not 0.0 <= float(examine) <= 1.0:
                raise ValueError(
                    f"examine must be a probability in [0, 1] (cascade: position i is examined "
                    f"with probability examine ** (i - 1)), got {examine!r}"
                )
            self.examine = float(examine)
        #: the cascade stops at the first like; the independent response consumes every target.
        self.stop_at_like: bool = response == "cascade"
        # Position i (0-based) is examined iff u < examine ** i for one uniform u per step, so
        # examining i implies examining every earlier position (the cascade).
        self._powers = (
            None if self.examine is None else self.examine ** np.arange(self.slate_size, dtype=np.float64)
        )

    def depth(self, rng: np.random.Generator) -> int:
        """Positions the user is willing to examine this step (``"cascade"``: one ``rng.random()``).

        :param rng: the episode's generator (the env's ``np_random``); not used by
            ``"independent"``
        """
        if self._powers is None:
            return self.slate_size
        return int(np.count_nonzero(rng.random() < self._powers))

    def depth_batch(self, rngs: list[np.random.Generator], rows: np.ndarray) -> np.ndarray:
        """int64 ``(len(rngs),)``: :meth:`depth` for the sub-envs ``rows``, ``slate_size`` elsewhere.

        Only the generators of ``rows`` are drawn from, so each sub-env's generator follows
        exactly a single environment's.

        :param rngs: one generator per sub-env
        :param rows: indices of the sub-envs that step (not the ones being reset)
        """
        depth = np.full(len(rngs), self.slate_size, dtype=np.int64)
        if self._powers is not None:
            for i in rows.tolist():
                depth[i] = np.count_nonzero(rngs[i].random() < self._powers)
        return depth



def slate_settings(
    simulator: UserSimulator, slate_size: int, response: str, examine: float | None
) -> tuple[SlateResponse, spaces.Space]:
    """The validated :class:`SlateResponse` of an environment on ``simulator`` and its action space.

    Shared by the single and the vector environment: ``Discrete(n_items)`` for one item per
    step, ``MultiDiscrete([n_items] * k)`` for slates, which only the replayed user answers.

    :raises ValueError: bad slate settings, or ``slate_size > 1`` with a learned user model
    """
    slate = SlateResponse(slate_size, response, examine, simulator.n_items)
    if slate.slate_size > 1 and not isinstance(simulator, ReplaySimulator):
        raise ValueError(
            f"slate_size={slate.slate_size} needs user_model='replay' (the slate responses are "
            f"defined for the replayed user); user_model={simulator.user_model!r} takes one item "
            "per step"
        )
    n = simulator.n_items
    space: spaces.Space = (
        spaces.Discrete(n) if slate.slate_size == 1
        else spaces.MultiDiscrete(np.full(slate.slate_size, n, dtype=np.int64))
    )  # fmt: skip
    return slate, space

class UserSimulator:
    """What every simulated user shares: settings, the split, start states and observations.

    Subclasses (:class:`ReplaySimulator`, :class:`ModelSimulator`) decide which users can
    start, and the like, reward, transition and episode-end rules (:meth:`reset`,
    :meth:`step`, :meth:`step_batch`).

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
        :func:`default_reward_map`)
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
        """A preallocated :class:`EpisodeState` for this simulator."""
        return EpisodeState(self.n_items, self.history_len, n_user_features=self.user_features.shape[1])

    def new_batch(self, num_envs: int) -> BatchState:
        """A preallocated :class:`BatchState` of ``num_envs`` rows for this simulator."""
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
        """:meth:`reset` for row ``i`` of a :class:`BatchState`."""
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


class ReplaySimulator(UserSimulator):
    """The replay user of ``MovieLensRec-v0`` (``user_model="replay"``; rules in the module docstring).

    Arguments: those of :class:`UserSimulator`.
    """

    user_model = "replay"
    max_prefix_reason = "its last liked train position"
    #: Batched resets from this many rows on. Fewer rows are cheaper one by one: on ML-100K one
    #: row takes about 16 us alone and 60 us batched, 64 rows about 960 us one by one and 550 us
    #: batched (a vector env whose sub-envs all truncate together).
    batch_reset_rows: int = 8

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        split = self.split
        thr = self.like_threshold
        level = self.like_level
        train_indptr = self.train_indptr
        n_train = self.n_train
        train_items, train_ratings, train_liked = self.hist_items, self.hist_ratings, self.hist_liked
        if self.mode == "train":
            # Largest prefix that still leaves a liked target: the last liked position >= 1.
            position = np.arange(train_items.size) - np.repeat(train_indptr[:-1], n_train)
            candidates = np.append(np.where(train_liked & (position >= 1), position, 0), 0)
            del position
            # The appended 0 keeps reduceat in range; empty segments are zeroed after.
            last_liked = np.maximum.reduceat(candidates, train_indptr[:-1]) * (n_train > 0)
            max_prefix, eligible = last_liked, last_liked >= 1
            self.tgt_items, self.tgt_ratings, tgt_liked = train_items, train_ratings, train_liked
            self.tgt_lo = self.hist_lo
            self.tgt_hi: list[int] = train_indptr[1:].tolist()
            why = "a train sequence of >= 2 items with a liked item after the first"
        else:
            test_indptr = np.asarray(split.test_indptr, dtype=np.int64)
            test_ratings = self._levels(split.test_ratings, "test")
            test_liked = test_ratings >= level
            test_user_of = np.repeat(np.arange(self.n_users), np.diff(test_indptr))
            n_liked_test = np.bincount(test_user_of, weights=test_liked, minlength=self.n_users)
            max_prefix, eligible = n_train, n_liked_test >= 1
            self.tgt_items = np.asarray(split.test_items, dtype=np.intp)
            self.tgt_ratings, tgt_liked = test_ratings, test_liked
            self.tgt_lo = test_indptr[:-1].tolist()
            self.tgt_hi = test_indptr[1:].tolist()
            why = f"at least one test rating >= like_threshold={thr}"
        self._tgt_lo = np.asarray(self.tgt_lo, dtype=np.int64)
        self._tgt_hi = np.asarray(self.tgt_hi, dtype=np.int64)
        # per rating, so an array; in train mode the targets are the train ratings: shared
        self._tgt_liked_cum = (self._liked_cum if tgt_liked is train_liked
                               else np.concatenate(([0], np.cumsum(tgt_liked))))
        self._set_starts(max_prefix, eligible, why)

    def reset(self, state: EpisodeState, user: int, prefix: int, scratch: np.ndarray) -> None:
        """Write user ``user``'s start state (first ``prefix`` train items) into ``state``.

        ``excluded`` gets the whole history (at a start state nothing has been recommended
        yet); ``targets`` the rating of each target item (0 elsewhere).
        """
        self._write_history(state, user, prefix, scratch)
        targets = state.targets
        targets.fill(0)
        if self.mode == "train":
            t_lo, t_hi = self.hist_lo[user] + prefix, self.tgt_hi[user]
        else:
            t_lo, t_hi = self.tgt_lo[user], self.tgt_hi[user]
        targets[self.tgt_items[t_lo:t_hi]] = self.tgt_ratings[t_lo:t_hi]
        state.n_targets_left = t_hi - t_lo
        state.n_liked_left = int(self._tgt_liked_cum[t_hi] - self._tgt_liked_cum[t_lo])

    def _reset_rows_batched(
        self, batch: BatchState, rows: np.ndarray, users: np.ndarray, prefixes: np.ndarray
    ) -> None:
        """:meth:`reset` for the rows ``rows`` of ``batch`` at once."""
        self._write_history_rows(batch, rows, users, prefixes)
        if self.mode == "train":
            t_lo, t_hi = self._hist_lo[users] + prefixes, self._tgt_hi[users]
        else:
            t_lo, t_hi = self._tgt_lo[users], self._tgt_hi[users]
        batch.targets[rows] = 0
        index, segment = concatenated_ranges(t_lo, t_hi)
        batch.targets[rows[segment], self.tgt_items[index]] = self.tgt_ratings[index]
        batch.n_targets_left[rows] = t_hi - t_lo
        batch.n_liked_left[rows] = self._tgt_liked_cum[t_hi] - self._tgt_liked_cum[t_lo]

    # ----------------------------------------------------------------- like, reward, transition
    def step(
        self, state: EpisodeState, action: int, rng: np.random.Generator | None = None
    ) -> tuple[float, bool, bool, int, bool]:
        """Recommend item ``action`` (a valid item index) to the user of ``state``.

        :param rng: unused (replay draws nothing)
        :return: ``(reward, terminated, truncated, rating, liked)``: ``rating`` is the rating
            of the item if it was a remaining target, else 0 (an int on a whole-number rating
            scale, else a float)
        """
        rating = int(state.targets[action])
        state.excluded[action >> 3] |= 1 << (action & 7)
        liked = False
        reward = 0.0
        if rating:
            state.targets[action] = 0
            state.n_targets_left -= 1
            reward = self.reward_list[rating]
            if rating >= self.like_level:
                liked = True
                history = state.history
                history[:-1] = history[1:]
                history[-1] = action + 1
                state.liked[action >> 3] |= 1 << (action & 7)
                state.history_size += 1
                state.n_liked_left -= 1
        value = self.rating_values[rating]
        state.steps += 1
        state.last_action = action
        state.last_rating = value
        terminated = state.n_liked_left == 0
        truncated = not terminated and state.steps >= self.max_steps
        return reward, terminated, truncated, value, liked

    def step_batch(
        self,
        batch: BatchState,
        actions: np.ndarray,
        rngs: list[np.random.Generator] | None = None,
        active: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`step` for every row of ``batch`` at once (``rngs`` and ``active`` unused: replay
        draws nothing, and an inactive row is overwritten by its reset)."""
        a = actions
        flat = batch.row_offset + a
        rating = batch.targets_flat[flat].astype(np.int64)  # level; 0 = not a remaining target
        reward = self.reward_table[rating]
        liked = self.like_table[rating]
        batch.targets_flat[flat] = 0
        # One action per row, so the byte indices are distinct and |= needs no accumulation.
        batch.excluded_flat[batch.byte_offset + (a >> 3)] |= _BITS[a & 7]
        batch.n_targets_left -= rating > 0
        batch.n_liked_left -= liked
        if np.count_nonzero(liked):
            rows = liked.nonzero()[0]
            item = a[rows]
            history = batch.history
            history[rows, :-1] = history[rows, 1:]
            history[rows, -1] = item + 1
            batch.liked_flat[batch.byte_offset[rows] + (item >> 3)] |= _BITS[item & 7]
            batch.history_size[rows] += 1
        value = self.rating_value_table[rating]
        batch.steps += 1
        batch.last_flat = flat
        batch.last_rating = value
        terminated = batch.n_liked_left == 0
        truncated = (batch.steps >= self.max_steps) & ~terminated
        return reward, terminated, truncated, value, liked

    def info(self, state: EpisodeState, rating: int, liked: bool) -> dict[str, Any]:
        if self.mode == "test":  # only what the observation shows too: the targets are the answer
            return {"user": state.user, "prefix": state.prefix, "liked": liked}
        return {
            "user": state.user,
            "prefix": state.prefix,
            "rating": rating,
            "liked": liked,
            "n_targets_left": state.n_targets_left,
            "n_liked_left": state.n_liked_left,
        }

    def batch_info(self, batch: BatchState, rating: np.ndarray, liked: np.ndarray) -> dict[str, Any]:
        if self.mode == "test":  # as the single env: nothing that depends on the targets
            return {"user": batch.user.copy(), "prefix": batch.prefix.copy(), "liked": liked}
        return {
            "user": batch.user.copy(),
            "prefix": batch.prefix.copy(),
            "rating": rating,
            "liked": liked,
            "n_targets_left": batch.n_targets_left.copy(),
            "n_liked_left": batch.n_liked_left.copy(),
        }


    def step_slate(
        self, state: EpisodeState, slate: np.ndarray, depth: int, stop_at_like: bool
    ) -> tuple[float, bool, bool, np.ndarray, np.ndarray, int]:
        """Show the slate ``slate`` (valid item indices, best first) to the user of ``state``.

        The user examines positions ``0 .. depth - 1`` in order (stopping after the first like
        when ``stop_at_like``); an examined position whose item is a remaining target, not
        excluded before this slate and not repeated from an earlier position, is consumed as in
        :meth:`step` (liked ones join the history in slate order). Then every item of the slate
        joins ``excluded`` and any target among them that was not consumed is lost.

        :param state: the episode state (updated in place)
        :param slate: int64 ``(k,)`` item indices
        :param depth: positions the user is willing to examine (:meth:`SlateResponse.depth`)
        :param stop_at_like: stop after the first like (the cascade response)
        :return: ``(reward, terminated, truncated, rating, invalid, n_examined)``: ``rating``
            ``(k,)`` is the rating of each consumed position's item, 0 elsewhere (int64 on a
            whole-number rating scale, else float64);
            ``invalid`` bool ``(k,)`` marks positions repeating an earlier item or holding an
            item excluded before this slate; ``n_examined`` the positions examined
        """
        # Python lists for the k-long scan: at k ~ 10 a numpy call costs more than k list steps.
        k = slate.size
        items = slate.tolist()
        targets, excluded, thr = state.targets, state.excluded, self.like_level
        shown = targets[slate].tolist()  # 0 = not a remaining target
        excluded_bytes = excluded.tobytes()
        invalid = [False] * k
        seen: set[int] = set()
        for pos, a in enumerate(items):
            if a in seen:
                invalid[pos] = True
                shown[pos] = 0  # each distinct target of the slate once
            elif (excluded_bytes[a >> 3] >> (a & 7)) & 1:
                invalid[pos] = True
            seen.add(a)
        consumed = [0] * k
        n_examined = min(depth, k)
        liked: list[int] = []
        for pos in range(n_examined):
            r = shown[pos]
            if r:
                consumed[pos] = r
                if r >= thr:
                    liked.append(items[pos])
                    if stop_at_like:
                        n_examined = pos + 1
                        break
        reward = 0.0
        for r in consumed:  # left to right, the summation order of step_slate_batch
            reward += self.reward_list[r]
        # Every shown target leaves the targets, consumed or lost; every item is excluded.
        n_shown = k - shown.count(0)
        if n_shown:
            state.n_targets_left -= n_shown
            state.n_liked_left -= sum(r >= thr for r in shown)
            targets[slate] = 0
        for a in seen:
            excluded[a >> 3] |= 1 << (a & 7)
        if liked:
            history, bits = state.history, state.liked
            for a in liked:
                bits[a >> 3] |= 1 << (a & 7)
            m = len(liked)
            tokens = [a + 1 for a in liked]
            if m >= history.size:
                history[:] = tokens[m - history.size :]
            else:
                history[:-m] = history[m:]
                history[-m:] = tokens
            state.history_size += m
        state.steps += 1
        terminated = state.n_liked_left == 0
        truncated = not terminated and state.steps >= self.max_steps
        return (
            reward, terminated, truncated, self.rating_value_table[np.array(consumed, dtype=np.int64)],
            np.array(invalid), n_examined,
        )  # fmt: skip

    def step_slate_batch(
        self, batch: BatchState, slates: np.ndarray, depth: np.ndarray, stop_at_like: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`step_slate` for every row of ``batch`` at once.

        :param slates: int64 ``(num_envs, k)`` valid item indices
        :param depth: int64 ``(num_envs,)`` positions each user is willing to examine
        :param stop_at_like: stop after the first like (the cascade response)
        :return: ``(reward float64, terminated, truncated, rating, invalid, n_examined)``; the
            first three and ``n_examined`` ``(num_envs,)``, ``rating`` (as :meth:`step_slate`)
            and ``invalid`` bool ``(num_envs, k)``
        """
        n, k = slates.shape
        flat = batch.row_offset[:, None] + slates
        rating = batch.targets_flat[flat].astype(np.int64)  # level; 0 = not a remaining target
        byte = batch.byte_offset[:, None] + (slates >> 3)
        bit = _BITS[slates & 7]
        pos = np.arange(k)
        # repeated[i, p]: an earlier position q < p of row i holds the same item.
        earlier = pos[None, :, None] > pos[None, None, :]
        repeated = ((slates[:, :, None] == slates[:, None, :]) & earlier).any(axis=2)
        invalid = repeated | ((batch.excluded_flat[byte] & bit) != 0)
        shown = np.where(repeated, 0, rating)  # each distinct target of the slate once
        consumed = np.where(pos[None, :] < depth[:, None], shown, 0)
        n_examined = np.minimum(depth, k)
        if stop_at_like:
            likes = self.like_table[consumed]
            first = np.where(likes.any(axis=1), likes.argmax(axis=1), k)
            consumed[pos[None, :] > first[:, None]] = 0
            n_examined = np.minimum(n_examined, first + 1)
        reward = np.zeros(n)
        for j in range(k):  # left to right, the summation order of step_slate
            reward += self.reward_table[consumed[:, j]]
        liked = self.like_table[consumed]
        # Every shown target leaves the targets, consumed or lost; every item is excluded.
        batch.n_targets_left -= np.count_nonzero(shown, axis=1)
        batch.n_liked_left -= np.count_nonzero(self.like_table[shown], axis=1)
        batch.targets_flat[flat] = 0
        # Two items of one row may share a byte: bitwise_or.at accumulates, |= would not.
        np.bitwise_or.at(batch.excluded_flat, byte.ravel(), bit.ravel())
        n_liked = np.count_nonzero(liked, axis=1)
        if np.count_nonzero(n_liked):
            rows = n_liked.nonzero()[0]
            hit, m = liked[rows], n_liked[rows]
            np.bitwise_or.at(batch.liked_flat, byte[rows][hit], bit[rows][hit])
            # Liked tokens moved to the right end in slate order (stable sort), after the
            # history: the new history is the last history_len of history + liked tokens.
            order = np.argsort(hit, axis=1, kind="stable")
            tokens = np.take_along_axis(slates[rows] + 1, order, axis=1).astype(np.int32)
            combined = np.concatenate((batch.history[rows], tokens), axis=1)
            hl = self.history_len
            j = np.arange(hl)[None, :]
            index = np.where(j < hl - m[:, None], j + m[:, None], j + k)
            batch.history[rows] = np.take_along_axis(combined, index, axis=1)
            batch.history_size[rows] += m
        batch.steps += 1
        terminated = batch.n_liked_left == 0
        truncated = (batch.steps >= self.max_steps) & ~terminated
        return reward, terminated, truncated, self.rating_value_table[consumed], invalid, n_examined

    # ----------------------------------------------------------------- observations

class ModelSimulator(UserSimulator):
    """A learned user (``user_model="ease"``): any recommended item can be liked.

    The like model (:mod:`recsim_env.user_model`) is fitted on the train part of the split
    only, deterministically, and cached; the test part is never read.

    * **Start states**: as replay (train mode: a user and a prefix of their train sequence;
      test mode: the whole train history), but every user with a train rating can start, and
      a train-mode prefix is uniform in ``[1, n_train]``: no targets are needed.
    * **Like**: recommending item ``a`` draws ``u ~ U(0, 1)`` from the episode's generator;
      the user likes ``a`` when ``u < P(like | state, a)``. An item in ``"excluded"``
      (consumed, or already recommended this episode) is never liked: the model would
      otherwise let a policy repeat its best guess until it is liked. No item keeps a logged
      rating: the outcome of a logged item is drawn like any other, so the episode depends on
      the train part only.
    * **Rating and reward**: a like gets the top rating of the dataset's scale (5 on MovieLens)
      with the model's top-rating probability, else the rating just below it (4), or the top
      one when that rating is no like (:func:`recsim_env.user_model.like_ratings`); reward
      ``reward_map[rating]``. A miss has no rating
      (``info["rating"] = 0``) and reward 0, whatever ``reward_map`` gives ratings below
      ``like_threshold`` (those apply to replay only).
    * **Transition**: as replay. A like appends the item to the history and the liked set (and
      updates the state scores); every recommended item joins ``"excluded"``.
    * **Episode end**: after ``k`` consecutive misses the user leaves (``terminated``) with
      probability ``min(1, leave_rate * k)``; truncated after ``max_steps``.

    Each step draws exactly three uniforms (like, rating, leave) from the episode's generator,
    so a sub-env of the vector env and a single env with the same seed agree.

    :param user_model: the model's name (``"ease"``)
    :param user_model_kwargs: its settings (:class:`recsim_env.user_model.UserModelSettings`:
        ``l2``, ``leave_rate``)
    :param kwargs: the arguments of :class:`UserSimulator`
    """

    user_model = "ease"
    max_prefix_reason = "its train length"

    def __init__(
        self,
        *,
        user_model: str = "ease",
        user_model_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from recsim_env.user_model import UserModelSettings, like_ratings, load_like_model

        settings = UserModelSettings.from_kwargs(user_model, user_model_kwargs)
        if user_model == "replay":
            raise ValueError("ModelSimulator needs a learned user_model; use ReplaySimulator")
        super().__init__(**kwargs)
        self.user_model = user_model
        self.settings = settings
        self.leave_rate = settings.leave_rate
        self.model = load_like_model(self.split, self.like_threshold, settings.l2)
        # A like gets the top rating or the one below it (when that is a like): 5 or 4 on MovieLens.
        low, _top = like_ratings(self.rating_scale, self.like_threshold)
        self.top_level = len(self.rating_scale)
        self.low_like_level = self.rating_scale.index(low) + 1
        n_train = self.n_train
        self._set_starts(n_train.copy(), n_train >= 1, "at least one train rating")

    def new_state(self) -> EpisodeState:
        return EpisodeState(self.n_items, self.history_len, model=True, n_user_features=self.user_features.shape[1])

    def new_batch(self, num_envs: int) -> BatchState:
        return BatchState(
            num_envs, self.n_items, self.history_len, model=True, n_user_features=self.user_features.shape[1],
            rating_dtype=self.rating_value_table.dtype,
        )

    def reset(self, state: EpisodeState, user: int, prefix: int, scratch: np.ndarray) -> None:
        """Write the start state and the state scores ``s``, ``s_L`` of its items."""
        self._write_history(state, user, prefix, scratch)
        lo = self.hist_lo[user]
        consumed = self.hist_items[lo : lo + prefix]
        liked = self.liked_items[self._liked_cum[lo] : self._liked_cum[lo + prefix]]
        state.score[:] = self.model.b_all[consumed].sum(axis=0)
        state.score_like[:] = self.model.b_like[liked].sum(axis=0)
        state.targets.fill(0)
        state.n_targets_left = state.n_liked_left = -1  # no targets: not a replay episode

    def _outcome(
        self, users: np.ndarray, items: np.ndarray, score: np.ndarray, score_like: np.ndarray,
        n_consumed: np.ndarray, excluded: np.ndarray, misses: np.ndarray, draws: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rule, on arrays (one entry per stepping user), shared by :meth:`step` and
        :meth:`step_batch` so that both compute bit-identical outcomes."""
        p = self.model.probability(score, score_like, n_consumed)
        p = np.where(excluded, 0.0, p)
        liked = draws[:, 0] < p
        five = draws[:, 1] < self.model.five_probability(users, items)
        rating = np.where(liked, np.where(five, self.top_level, self.low_like_level), 0)
        misses = np.where(liked, 0, misses + 1)
        leave = ~liked & (draws[:, 2] < np.minimum(1.0, self.leave_rate * misses))
        return p, liked, rating, misses, leave

    def step(
        self, state: EpisodeState, action: int, rng: np.random.Generator
    ) -> tuple[float, bool, bool, int, bool]:
        """Recommend item ``action``: draw the like, the rating and the leave (class docstring).

        :return: ``(reward, terminated, truncated, rating, liked)``; ``rating`` is 0 on a miss
        """
        draws = rng.random(3)[None]
        excluded = bool((state.excluded[action >> 3] >> (action & 7)) & 1)
        items = np.array([action])
        p, liked_a, rating_a, misses_a, leave_a = self._outcome(
            np.array([state.user]), items, state.score[items], state.score_like[items],
            np.array([state.history_size]), np.array([excluded]), np.array([state.misses]), draws,
        )  # fmt: skip
        liked, level = bool(liked_a[0]), int(rating_a[0])
        rating = self.rating_values[level]
        state.excluded[action >> 3] |= 1 << (action & 7)
        if liked:
            history = state.history
            history[:-1] = history[1:]
            history[-1] = action + 1
            state.liked[action >> 3] |= 1 << (action & 7)
            state.history_size += 1
            state.score += self.model.b_all[action]
            state.score_like += self.model.b_like[action]
        state.misses = int(misses_a[0])
        state.like_probability = float(p[0])
        state.steps += 1
        state.last_action = action
        state.last_rating = rating
        terminated = bool(leave_a[0])
        truncated = not terminated and state.steps >= self.max_steps
        return self.reward_list[level], terminated, truncated, rating, liked

    def step_batch(
        self,
        batch: BatchState,
        actions: np.ndarray,
        rngs: list[np.random.Generator],
        active: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = actions.size
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        rating = np.zeros(n, dtype=self.rating_value_table.dtype)
        liked = np.zeros(n, dtype=bool)
        rows = active.nonzero()[0]
        if rows.size == 0:
            return reward, terminated, truncated, rating, liked
        a = actions[rows]
        draws = np.stack([rngs[i].random(3) for i in rows.tolist()])
        byte = batch.excluded[rows, a >> 3]
        excluded = ((byte >> (a & 7).astype(np.uint8)) & 1).astype(bool)
        p, liked_r, rating_r, misses_r, leave_r = self._outcome(
            batch.user[rows], a, batch.score[rows, a], batch.score_like[rows, a],
            batch.history_size[rows], excluded, batch.misses[rows], draws,
        )  # fmt: skip
        batch.excluded_flat[batch.byte_offset[rows] + (a >> 3)] |= _BITS[a & 7]
        hit = rows[liked_r]
        if hit.size:
            item = actions[hit]
            history = batch.history
            history[hit, :-1] = history[hit, 1:]
            history[hit, -1] = item + 1
            batch.liked_flat[batch.byte_offset[hit] + (item >> 3)] |= _BITS[item & 7]
            batch.history_size[hit] += 1
            batch.score[hit] += self.model.b_all[item]
            batch.score_like[hit] += self.model.b_like[item]
        batch.misses[rows] = misses_r
        batch.like_probability[rows] = p
        batch.steps[rows] += 1
        batch.last_flat[rows] = batch.row_offset[rows] + a
        batch.last_rating[rows] = rating[rows] = self.rating_value_table[rating_r]
        liked[rows] = liked_r
        reward[rows] = self.reward_table[rating_r]
        terminated[rows] = leave_r
        truncated[rows] = ~leave_r & (batch.steps[rows] >= self.max_steps)
        return reward, terminated, truncated, rating, liked

    def info(self, state: EpisodeState, rating: int, liked: bool) -> dict[str, Any]:
        # Nothing here depends on the test part (the model never reads it), so both modes
        # report the drawn rating and the probability it was drawn with.
        return {
            "user": state.user,
            "prefix": state.prefix,
            "rating": rating,
            "liked": liked,
            "like_probability": state.like_probability,
            "misses": state.misses,
        }

    def batch_info(self, batch: BatchState, rating: np.ndarray, liked: np.ndarray) -> dict[str, Any]:
        return {
            "user": batch.user.copy(),
            "prefix": batch.prefix.copy(),
            "rating": rating,
            "liked": liked,
            "like_probability": batch.like_probability.copy(),
            "misses": batch.misses.copy(),
        }


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
    """The simulator of ``user_model``: :class:`ReplaySimulator` or :class:`ModelSimulator`.

    A simulator is read-only once built (the episode state lives in :class:`EpisodeState` /
    :class:`BatchState`), so environments built on the same ``split_data`` (or ``data``) object
    with the same settings share one: ``make train``'s 64 training environments hold the
    catalogue-sized tables once, not 64 times (ML-32M: about 0.7 GB each). It lives as long as
    an environment uses it.

    :param user_model: ``"replay"`` (default) or a learned model of
        :data:`recsim_env.user_model.USER_MODELS` (``"ease"``)
    :param user_model_kwargs: settings of a learned model (none for replay)
    :param kwargs: the arguments of :class:`UserSimulator`
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
