"""``MovieLensRec-v0``: the Gymnasium face of a recommender-as-agent MDP on real MovieLens users.

:class:`MovieLensRecEnv` holds the Gymnasium API, the argument checks and the contract
docstring; the rules of the simulated user (start states, like and reward, transition,
termination) live in the simulator's modules (:mod:`recsim_env.simulator` maps them), which
:class:`recsim_env.vector_env.MovieLensRecVectorEnv` shares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from recsim_env.dataset import DATASETS, MovieLensData, Split
from recsim_env.episode_state import EpisodeState
from recsim_env.rendering import (
    OUTCOME_DISLIKED,
    OUTCOME_HIT,
    OUTCOME_MISS,
    SessionRenderer,
    slate_outcome,
)
from recsim_env.rewards import RATINGS, default_reward_map
from recsim_env.simulator import make_simulator
from recsim_env.slates import RESPONSES, slate_settings
from recsim_env.user_simulator import MODES

__all__ = [
    "DATASETS", "MODES", "RATINGS", "RESET_OPTIONS", "RESPONSES", "MovieLensRecEnv",
    "check_reset_options", "default_reward_map", "unpack_bits", "unpack_liked",
]  # fmt: skip

#: Keys that ``reset(options=...)`` accepts (single and vector environment).
RESET_OPTIONS: tuple[str, ...] = ("user", "prefix")


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


class MovieLensRecEnv(gym.Env[dict[str, np.ndarray], int]):
    """
    ## Description

    A recommender system as a reinforcement-learning agent: the environment is one simulated
    MovieLens user per episode, replaying that user's real, time-ordered ratings (the MDP of the
    LSRWRL paper, `paper/LSRWRL.md`). At each step the agent
    recommends one movie (or a slate of ``slate_size`` movies, see *Slates*); the user *likes*
    it when it is one of the user's not-yet-consumed target items with a rating
    ``>= like_threshold``.

    The data come from :func:`recsim_env.load_movielens` (``dataset=``) or from any interaction
    log loaded by :func:`recsim_env.load_interactions` (``data=``), and are split per user by
    :func:`recsim_env.split_ratings` (chronological 80/20 by default); ``split_data`` injects an
    existing :class:`recsim_env.Split` instead. One environment id serves every dataset: what
    differs between datasets (items, rating scale, user features) is data, not a new MDP. The rules below are implemented once, by the
    simulator :class:`recsim_env.replay_user.ReplaySimulator` (``env.unwrapped.simulator``), which
    the vector environment, the agents' scoring and the logged-data sampler share.

    ## Action Space

    ``Discrete(n_items)``: action ``a`` recommends item index ``a`` (1,682 items for ml-100k,
    3,706 for ml-1m). Item index ``i`` is written as token ``i + 1`` in observations.
    With ``slate_size=k > 1``: ``MultiDiscrete([n_items] * k)``, the slate's items best first.

    ## Observation Space

    A ``Dict`` of integer ``Box`` spaces (ids are never ``Discrete``, which SB3 would one-hot):

    | Key         | Shape                   | Dtype  | Min | Max          | Meaning                                                          |
    |-------------|-------------------------|--------|-----|--------------|------------------------------------------------------------------|
    | `"user"`    | `(F,)`                  | int32  | 0   | cardinality - 1 | user feature codes; MovieLens (`F = 3`, max `[1, 6, 20]`): gender (0 F, 1 M), age group (ML-1M's 7 groups), occupation code; a log: its feature columns; no `"user"` key for a dataset without user features (ML-10M and later) |
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
    a 5 (in general ``r / max(rating scale)``: half stars on ML-10M and later, 0.9 for a 4.5;
    for implicit feedback every interaction is a like worth its value, 1 unless the log has a
    value column). If ``r >= like_threshold`` (a *like*) the item is also appended to the history and to the
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

    ## Slates

    ``slate_size=k > 1`` shows ``k`` items per step (``slate_size=1``, the default, is the
    single-item environment above, bit for bit, whatever ``response`` says). The user scans the
    slate in order, position 1 first, and ``response`` says how far:

    * ``"independent"`` (default): every position is examined; every remaining target in the
      slate is consumed (reward ``reward_map[r]`` each; the reward is their sum).
    * ``"cascade"``: position ``i`` is examined with probability ``examine ** (i - 1)``
      (``examine`` default 0.8; one ``self.np_random.random()`` draw per step decides how deep
      the user looks); the user consumes the examined targets in order and stops after the
      first like. Targets rated below ``like_threshold`` that the user examines before that are
      consumed (reward ``reward_map[r]``, 0 by default), as a single recommendation of them is.

    Transition: the liked consumed items join the history and the liked set in slate order; a
    slate without a like leaves the interest state unchanged. Every item of the slate joins
    ``"excluded"`` (shown counts as recommended, so the mask stays a function of the
    observation); a target that was shown but not consumed (beyond the cascade's stop) is lost:
    it can never be consumed later, and termination counts only the liked targets that can
    still be consumed. One slate is one step of ``max_steps``.

    Invalid slates are not an error: a position that repeats an earlier item of the slate, or
    holds an item ``action_masks()`` forbids, is shown but never consumed (its reward is 0:
    the slot is wasted) and is flagged in ``info["invalid"]``. Why not an error: MaskablePPO's
    ``MultiDiscrete`` masks are per position and cannot forbid repeats across positions, and
    Gymnasium's and SB3's checkers step with ``action_space.sample()``; in the single-item
    environment a masked item is likewise a valid action worth 0.

    ``action_masks()`` is the per-position mask repeated ``k`` times, bool
    ``(k * n_items,)``, the concatenated layout sb3-contrib's ``MaskablePPO`` expects.
    Agents that score items act through :class:`recsim_env.policies.TopKPolicy` (the ``k``
    highest-scoring allowed items, ties to the lower index) and
    :func:`recsim_env.evaluate_greedy`.

    ``info`` of a slate step: ``"liked"`` is bool ``(k,)`` (the position's item was consumed and
    liked; the observation shows it too), ``"invalid"`` bool ``(k,)`` and ``"n_examined"`` (int:
    positions examined: ``k`` for the independent response); in train mode also
    ``"consumed"`` bool ``(k,)``, ``"rating"`` int ``(k,)`` (rating of each consumed position's
    item, 0 elsewhere), ``"n_targets_left"`` and ``"n_liked_left"`` (targets that can still be
    consumed). Test mode leaves out ``"consumed"`` and ``"rating"``, as it leaves out the
    single-item ``"rating"``. ``render()`` shows the last slate position by position; the
    ``rgb_array`` cell of a step is green when any position was liked, amber when a target
    was consumed but none liked, grey otherwise.

    ```python
    >>> env = gym.make("MovieLensRec-v0", slate_size=10, response="cascade", examine=0.8)  # doctest: +SKIP
    >>> env.action_space  # doctest: +SKIP
    MultiDiscrete([1682 1682 1682 1682 1682 1682 1682 1682 1682 1682])

    ```

    ## User model

    Everything above describes the default ``user_model="replay"``, which is exactly the
    paper's replay (pinned bit for bit by ``tests/test_replay_pinned.py``). A replayed user
    likes only items in their remaining log; every item they never rated counts as disliked,
    although most were simply never shown to them. ``user_model="ease"`` replaces the replayed
    user by a learned one (:class:`recsim_env.model_user.ModelSimulator`, fitted by
    :mod:`recsim_env.user_model` on the train part of the split only, deterministically, and
    cached in ``<cache>/user_models/``), behind the same spaces and ``action_masks()``:

    * any user with a train rating can start (``env.unwrapped.users`` = all of them); train
      mode draws the prefix uniformly in ``[1, n_train]``, test mode starts from the whole
      train history;
    * the recommended item ``a`` is liked with probability ``P(like | state, a)`` (two EASE
      item-item models of the consumed and the liked items, through a logistic link calibrated
      on held-out likes), drawn from ``self.np_random``; an item in ``"excluded"`` (consumed
      or already recommended) is never liked. No logged item keeps its logged rating, so the
      episode depends on the train part only;
    * a like is rated 5 (with the model's 5-star probability) or 4, earns ``reward_map[rating]``
      and joins the history and the liked set as in replay; a miss earns 0 and changes
      nothing but ``"excluded"``;
    * after ``k`` consecutive misses the user leaves with probability
      ``min(1, leave_rate * k)`` (``terminated``); truncated after ``max_steps``;
    * ``action_masks()`` means the same as in replay: items not consumed and not yet
      recommended; a masked item would be a sure miss.
    * ``info`` holds ``"user"``, ``"prefix"``, ``"rating"`` (4 or 5 on a like, else 0; in
      general the top rating of the scale or the one below it),
      ``"liked"``, ``"like_probability"`` (of the recommended item) and ``"misses"``
      (consecutive misses so far), in both modes: none of it depends on the test part.

    ``user_model_kwargs`` sets ``l2`` (EASE regularisation, default per dataset) and
    ``leave_rate`` (default 0.02); anything else is a ``ValueError``.

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
    | `dataset`        | **str**             | `"ml-100k"`   | a MovieLens dataset of `recsim_env.DATASETS` (`"ml-100k"`, `"ml-1m"`, ...) |
    | `mode`           | **str**             | `"train"`     | `"train"` (replay the train split) or `"test"` (targets = test items)      |
    | `data_dir`       | **PathLike**        | `None`        | root holding `ml-100k/` or `ml-1m/`; else `MOVIELENS_DATA`, cache, download |
    | `download`       | **bool**            | `True`        | download the GroupLens zip if the files are nowhere else                   |
    | `split`          | **str**             | `"temporal"`  | per-user split: `"temporal"` (chronological) or `"random"`                 |
    | `train_ratio`    | **float**           | `0.8`         | fraction of each user's ratings in the train part                          |
    | `split_seed`     | **int**             | `0`           | seed of the random split                                                   |
    | `history_len`    | **int**             | `20`          | length of the `"history"` observation                                      |
    | `like_threshold` | **float**           | `None`        | smallest rating that counts as a like, within the rating scale; `None`: the dataset's (4 on MovieLens, every interaction of an implicit log) |
    | `reward_map`     | **Mapping**         | `None`        | rating (or its JSON string, "4", "3.5") -> reward of a consumed target; others give 0 |
    | `max_steps`      | **int**             | `50`          | recommendations per episode before truncation                              |
    | `render_mode`    | **str**             | `None`        | `"ansi"` (returns text), `"human"` (prints it) or `"rgb_array"` (picture)  |
    | `split_data`     | **Split**           | `None`        | use this split; `dataset`, `data_dir`, `download`, `split*` are ignored    |
    | `data`           | **MovieLensData**   | `None`        | a loaded dataset (`load_interactions`, `load_movielens`) to split with `split*`; `dataset`, `data_dir`, `download` are ignored; not with `split_data` |
    | `slate_size`     | **int**             | `1`           | items per step, `1..n_items`; `1` = `Discrete` actions, else `MultiDiscrete` |
    | `response`       | **str**             | `"independent"` | slate response model: `"independent"` or `"cascade"` (see *Slates*)      |
    | `examine`        | **float**           | `None`        | cascade only: probability in [0, 1] of examining the next position (default 0.8) |
    | `user_model`     | **str**             | `"replay"`    | the simulated user: `"replay"` (the logs) or `"ease"` (learned, see above)  |
    | `user_model_kwargs` | **Mapping**      | `None`        | settings of a learned user model: `l2`, `leave_rate`                       |

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

    * v0: Initial version; ``slate_size``, ``response`` and ``examine`` added (default: the
      single-item environment, unchanged); ``data`` added, ``like_threshold`` defaults to the
      dataset's (4 on MovieLens, unchanged), ratings may be half stars or implicit and user
      features per dataset.
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
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.simulator = sim = make_simulator(
            user_model=user_model, user_model_kwargs=user_model_kwargs, dataset=dataset, mode=mode,
            data_dir=data_dir, download=download, split=split,
            train_ratio=train_ratio, split_seed=split_seed, history_len=history_len,
            like_threshold=like_threshold, reward_map=reward_map, max_steps=max_steps,
            split_data=split_data, data=data,
        )  # fmt: skip
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
        self._slate, self.action_space = slate_settings(sim, slate_size, response, examine)
        self.slate_size: int = self._slate.slate_size
        self.response: str = self._slate.response
        self.examine: float | None = self._slate.examine
        self.user_model: str = sim.user_model
        self.observation_space = sim.observation_space()

        # Episode state, preallocated once and updated in place by the simulator.
        self._state = sim.new_state()
        self._scratch = np.zeros(self.n_items, dtype=bool)
        self._next_user = 0
        self._renderer = SessionRenderer(sim) if render_mode is not None else None
        # Outcome code of each recommendation of the episode, kept only for rgb_array frames.
        self._outcomes = np.zeros(self.max_steps, np.int8) if render_mode == "rgb_array" else None
        # The last slate and its consumed ratings, for the text rendering (slate mode only).
        self._last_slate = np.zeros(0, dtype=np.int64)
        self._last_rating = np.zeros(self.slate_size, dtype=np.int64)

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
        sim = self.simulator
        if options is not None and options.get("user") is not None:
            if isinstance(options["user"], str):
                if options["user"] != "next":
                    raise ValueError(
                        f'options["user"] must be a user index or "next", got {options["user"]!r}'
                    )
                options = {**options, "user": int(self.users[self._next_user % self.users.size])}
                self._next_user = (self._next_user + 1) % self.users.size
            user, prefix = sim.check_start(options, self.np_random)
        else:
            if options is not None and options.get("prefix") is not None:
                raise ValueError('options["prefix"] needs options["user"]')
            user, prefix = sim.draw_start(self.np_random)
        sim.reset(self._state, user, prefix, self._scratch)
        if self._outcomes is not None:
            self._outcomes.fill(0)
        if self.render_mode == "human":
            self.render()
        if self.slate_size > 1:
            self._last_slate = np.zeros(0, dtype=np.int64)
            zeros = np.zeros(self.slate_size, dtype=np.int64)
            return self._obs(), self._slate_info(zeros, zeros.astype(bool), 0)
        return self._obs(), self._info(0, False)

    def step(
        self, action: int | np.integer | np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Recommend item ``action`` (or the slate ``action``) to the current user.

        :param action: item index in ``[0, n_items)`` (int, numpy integer or 0-d integer array);
            with ``slate_size=k > 1`` a slate: ``k`` item indices (integer array or sequence),
            best first
        :return: ``(observation, reward, terminated, truncated, info)``
        """
        if self.slate_size > 1:
            return self._step_slate(action)
        if type(action) is not int:
            action = self._check_action(action)
        elif not 0 <= action < self.n_items:
            raise ValueError(
                f"action must be an item index in [0, {self.n_items - 1}], got {action}"
            )
        state = self._state
        if state.user < 0:
            raise ResetNeeded("Call reset() before step(): the episode has no user yet")
        reward, terminated, truncated, rating, liked = self.simulator.step(
            state, action, self.np_random
        )
        if self._outcomes is not None and state.steps <= self.max_steps:
            outcome = OUTCOME_HIT if liked else OUTCOME_DISLIKED if rating else OUTCOME_MISS
            self._outcomes[state.steps - 1] = outcome
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, truncated, self._info(rating, liked)

    def action_masks(self) -> np.ndarray:
        """bool ``(n_items,)``: ``True`` for items not in the history and not recommended yet.

        Exactly ``~unpack_bits(obs["excluded"], n_items)`` of the last observation. Never depends
        on the targets. For sb3-contrib ``MaskablePPO``. With ``slate_size=k > 1`` the same
        mask once per position, concatenated: bool ``(k * n_items,)``, the ``MultiDiscrete``
        layout ``MaskablePPO`` expects.
        """
        if self._state.user < 0:
            raise ResetNeeded("Call reset() before action_masks()")
        mask = np.unpackbits(self._state.excluded, count=self.n_items, bitorder="little") == 0
        return mask if self.slate_size == 1 else np.tile(mask, self.slate_size)

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
        state = self._state
        if state.user < 0:
            raise ResetNeeded("Call reset() before render()")
        assert self._renderer is not None
        if self._outcomes is not None:
            return self._renderer.frame(state.history, self._outcomes, state.steps)
        if self.slate_size > 1:
            text = self._renderer.slate_text(
                state.user, state.history, state.history_size, state.steps,
                self._last_slate.tolist(), self._last_rating, state.n_liked_left,
            )  # fmt: skip
            if self.render_mode == "human":
                print(text, end="")
                return None
            return text
        text = self._renderer.text(
            state.user, state.history, state.history_size, state.steps,
            state.last_action, state.last_rating, state.n_liked_left,
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
        :return: ``{"user": (B, F), "history": (B, history_len), "liked": (B, ceil(n_items / 8)),
            "excluded": (B, ceil(n_items / 8))}``, each row exactly the observation
            ``reset(options={"user": u[, "prefix": p]})`` returns (``"excluded"`` = the start
            history's items)
        """
        return self.simulator.start_observations(users, prefixes)

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

    def _step_slate(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        slate = self._check_slate(action)
        state = self._state
        if state.user < 0:
            raise ResetNeeded("Call reset() before step(): the episode has no user yet")
        depth = self._slate.depth(self.np_random)
        reward, terminated, truncated, rating, invalid, n_examined = self.simulator.step_slate(
            state, slate, depth, self._slate.stop_at_like
        )
        if self.render_mode is not None:  # a copy: the agent may reuse its action array
            self._last_slate, self._last_rating = slate.copy(), rating
        if self._outcomes is not None and state.steps <= self.max_steps:
            self._outcomes[state.steps - 1] = slate_outcome(rating, self.like_threshold)
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, truncated, self._slate_info(rating, invalid, n_examined)

    def _check_slate(self, action: Any) -> np.ndarray:
        k, hi = self.slate_size, self.n_items - 1
        slate = np.asarray(action)
        if slate.shape != (k,) or slate.dtype.kind not in "iu":
            raise ValueError(
                f"action must be a slate of {k} integer item indices in [0, {hi}] "
                f"(MultiDiscrete([n_items] * slate_size)), got {action!r}"
            )
        if slate.dtype != np.int64:
            slate = slate.astype(np.int64)
        # One comparison catches both ends: negatives wrap to huge unsigned values.
        if np.count_nonzero(slate.view(np.uint64) > hi):
            raise ValueError(f"slate items must be item indices in [0, {hi}], got {slate.tolist()}")
        return slate

    def _slate_info(self, rating: np.ndarray, invalid: np.ndarray, n_examined: int) -> dict[str, Any]:
        state = self._state
        info: dict[str, Any] = {
            "user": state.user,
            "prefix": state.prefix,
            "liked": rating >= self.like_threshold,
            "invalid": invalid,
            "n_examined": n_examined,
        }
        if self.mode == "test":  # a consumed target rated below the threshold is the answer
            return info
        info.update(
            consumed=rating > 0,
            rating=rating,
            n_targets_left=state.n_targets_left,
            n_liked_left=state.n_liked_left,
        )
        return info

    def _obs(self) -> dict[str, np.ndarray]:
        state = self._state
        user = {"user": state.user_obs.copy()} if self.simulator.has_user_features else {}
        return {
            **user,
            "history": state.history.copy(),
            "liked": state.liked.copy(),
            "excluded": state.excluded.copy(),
        }

    def _info(self, rating: int, liked: bool) -> dict[str, Any]:
        return self.simulator.info(self._state, rating, liked)
