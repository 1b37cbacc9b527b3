"""The ``render_mode="rgb_array"`` picture of a ``MovieLensRec-v0`` session, drawn with numpy only.

The frame is a grid of square cells, :data:`COLUMNS` cells wide and :data:`CELL` pixels a side,
with one background pixel between neighbouring cells. From top to bottom:

1. **History band**, ``ceil(history_len / COLUMNS)`` cell rows: one cell per slot of the
   ``"history"`` observation, in its order (oldest first, wrapping after :data:`COLUMNS`). A
   padding slot is :data:`EMPTY`; an item is coloured by its first genre
   (:func:`item_colours`), or :data:`NO_GENRE` when the dataset lists none for it.
2. one blank cell row;
3. **Recommendation band**, ``ceil(max_steps / COLUMNS)`` cell rows: cell ``t`` is the
   episode's ``t``-th recommendation: :data:`HIT` (a liked target), :data:`DISLIKED` (a target
   rated below ``like_threshold``), :data:`MISS` (not a target); slots not used yet are
   :data:`EMPTY`. A slate is one cell, coloured by its best position (any like: :data:`HIT`).
4. one blank cell row;
5. **Progress bar**, the middle half (8 px) of one cell row: its first
   ``round(width * steps / max_steps)`` pixel columns are :data:`PROGRESS`, the rest
   :data:`EMPTY`.

The frame's shape depends only on ``history_len`` and ``max_steps`` (:func:`frame_shape`), so
every frame of an environment has the same size, as video recorders need; with the defaults
(``history_len=20``, ``max_steps=50``) it is ``(96, 400, 3)`` ``uint8``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsim_env.dataset import AGE_GROUP_LOWER_BOUNDS, USER_FEATURES

#: Side of one cell in pixels (its last pixel row and column are background).
CELL: int = 16
#: Cells per row; longer bands wrap onto further rows.
COLUMNS: int = 25

#: Colours (RGB, uint8).
BACKGROUND: tuple[int, int, int] = (24, 24, 24)
EMPTY: tuple[int, int, int] = (60, 60, 60)
NO_GENRE: tuple[int, int, int] = (230, 230, 230)
HIT: tuple[int, int, int] = (40, 200, 70)
DISLIKED: tuple[int, int, int] = (255, 176, 0)
MISS: tuple[int, int, int] = (140, 140, 140)
PROGRESS: tuple[int, int, int] = (80, 150, 255)

#: Outcome codes of one recommendation, as the environments record them.
OUTCOME_NONE, OUTCOME_MISS, OUTCOME_DISLIKED, OUTCOME_HIT = 0, 1, 2, 3

_OUTCOME_COLOURS = np.array([EMPTY, MISS, DISLIKED, HIT], dtype=np.uint8)


def slate_outcome(rating: np.ndarray, like_threshold: float) -> np.ndarray:
    """Rendering outcome code of each slate (last axis): its best position's outcome.

    :param rating: ``(..., k)`` rating of each consumed position's item, 0 elsewhere
    :param like_threshold: smallest rating that counts as a like
    :return: int8 ``(...)``: ``OUTCOME_HIT`` if any position was liked, else
        ``OUTCOME_DISLIKED`` if any was consumed, else ``OUTCOME_MISS``
    """
    rating = np.asarray(rating)
    return np.where(
        (rating >= like_threshold).any(axis=-1),
        OUTCOME_HIT,
        np.where((rating > 0).any(axis=-1), OUTCOME_DISLIKED, OUTCOME_MISS),
    ).astype(np.int8)


def _rows(n: int) -> int:
    return -(-n // COLUMNS)


def frame_shape(history_len: int, max_steps: int) -> tuple[int, int, int]:
    """``(height, width, 3)`` in pixels of the frame of an environment.

    :param history_len: length of the ``"history"`` observation
    :param max_steps: recommendations per episode
    """
    return (_rows(history_len) + _rows(max_steps) + 3) * CELL, COLUMNS * CELL, 3


def item_colours(item_genres: np.ndarray) -> np.ndarray:
    """uint8 ``(n_items, 3)``: the colour of each item, from its first genre.

    Genre ``g`` of ``n_genres`` gets hue ``g / n_genres`` (saturation 0.6, value 0.95); an item
    without a genre gets :data:`NO_GENRE`.

    :param item_genres: bool ``(n_items, n_genres)`` genre indicator matrix
        (:attr:`recsim_env.MovieLensData.item_genres`)
    """
    genres = np.asarray(item_genres, dtype=bool)
    if genres.ndim != 2:
        raise ValueError(f"item_genres must be a 2-D (n_items, n_genres) array, got {genres.shape}")
    n_items, n_genres = genres.shape
    colours = np.tile(np.array(NO_GENRE, dtype=np.uint8), (n_items, 1))
    has = genres.any(axis=1)
    if n_genres and has.any():
        hue = genres[has].argmax(axis=1) / n_genres
        colours[has] = _hsv_to_rgb(hue, 0.6, 0.95)
    return colours


def _hsv_to_rgb(hue: np.ndarray, saturation: float, value: float) -> np.ndarray:
    sector = np.floor(hue * 6.0).astype(int) % 6
    f = hue * 6.0 - np.floor(hue * 6.0)
    p = np.full_like(f, value * (1.0 - saturation))
    q = value * (1.0 - saturation * f)
    t = value * (1.0 - saturation * (1.0 - f))
    v = np.full_like(f, value)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.stack(
        [np.choose(sector, [c[channel] for c in choices]) for channel in range(3)], axis=1
    )
    return np.rint(rgb * 255.0).astype(np.uint8)


def session_frame(
    history: np.ndarray,
    outcomes: np.ndarray,
    steps: int,
    max_steps: int,
    colours: np.ndarray,
) -> np.ndarray:
    """The frame of one session (layout in the module docstring).

    :param history: int ``(history_len,)`` item tokens of the ``"history"`` observation
        (item index + 1, 0 = padding)
    :param outcomes: int ``(max_steps,)`` outcome code of each recommendation so far
        (:data:`OUTCOME_MISS`, :data:`OUTCOME_DISLIKED`, :data:`OUTCOME_HIT`; 0 = not yet)
    :param steps: recommendations made in this episode
    :param max_steps: recommendations per episode
    :param colours: uint8 ``(n_items, 3)`` item colours (:func:`item_colours`)
    :return: uint8 ``(height, width, 3)`` RGB array, shape :func:`frame_shape`
    """
    history = np.asarray(history)
    n_hist, n_rec = _rows(history.size), _rows(max_steps)
    grid = np.empty((n_hist + n_rec + 3, COLUMNS, 3), dtype=np.uint8)
    grid[:] = BACKGROUND

    hist_cells = np.tile(np.array(EMPTY, dtype=np.uint8), (n_hist * COLUMNS, 1))
    real = history > 0
    hist_cells[: history.size][real] = colours[history[real] - 1]
    hist_cells[history.size :] = BACKGROUND
    grid[:n_hist] = hist_cells.reshape(n_hist, COLUMNS, 3)

    rec_cells = np.tile(np.array(BACKGROUND, dtype=np.uint8), (n_rec * COLUMNS, 1))
    rec_cells[:max_steps] = _OUTCOME_COLOURS[np.asarray(outcomes[:max_steps], dtype=np.intp)]
    grid[n_hist + 1 : n_hist + 1 + n_rec] = rec_cells.reshape(n_rec, COLUMNS, 3)

    frame = np.repeat(np.repeat(grid, CELL, axis=0), CELL, axis=1)
    # One background pixel between cells keeps neighbours of the same colour apart.
    frame[CELL - 1 :: CELL] = BACKGROUND
    frame[:, CELL - 1 :: CELL] = BACKGROUND

    top = (n_hist + n_rec + 2) * CELL
    bar = frame[top + CELL // 4 : top + CELL - CELL // 4]
    bar[:] = EMPTY
    filled = round(frame.shape[1] * min(max(int(steps), 0), max_steps) / max_steps)
    bar[:, :filled] = PROGRESS
    return frame


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


#: Labels of the 7 age groups.
AGE_GROUPS: tuple[str, ...] = _age_labels()


class SessionRenderer:
    """The ``"ansi"`` text and the ``"rgb_array"`` frame of a session, for both environments.

    :param simulator: the environment's simulator (:class:`recsim_env.replay_user.ReplaySimulator`);
        its split gives the titles and genres, its settings the like rule and rewards
    """

    def __init__(self, simulator: Any) -> None:
        data = simulator.split.data
        self.n_items = simulator.n_items
        self.like_threshold = simulator.like_threshold
        self.reward_map = simulator.reward_map
        self.max_steps = simulator.max_steps
        self.user_features = simulator.user_features
        self.titles = data.item_titles
        self.item_genres = data.item_genres
        self.user_raw_ids = data.user_raw_ids
        self.feature_names = data.user_feature_names
        self.feature_categories = data.user_feature_categories
        self.replay = simulator.user_model == "replay"
        self._item_colours: np.ndarray | None = None  # built on the first rgb_array frame

    def describe_user(self, user: int) -> str:
        """One line: user index, raw id and user features (MovieLens: gender, age group and
        occupation; a log: ``name value`` of each feature column)."""
        raw_id = self.user_raw_ids[user]
        if self.feature_names != USER_FEATURES:
            codes = self.user_features[user].tolist()
            shown = [
                f"{name} {self.feature_categories[j][code] if self.feature_categories else code}"
                for j, (name, code) in enumerate(zip(self.feature_names, codes))
            ]
            return f"user {user} (raw id {raw_id})" + (": " + ", ".join(shown) if shown else "")
        gender, age, occupation = (int(x) for x in self.user_features[user])
        gender_s = "FM"[gender] if gender in (0, 1) else "?"
        age_s = AGE_GROUPS[age] if 0 <= age < len(AGE_GROUPS) else "?"
        occ_s = OCCUPATIONS[occupation] if 0 <= occupation < len(OCCUPATIONS) else "?"
        return (
            f"user {user} (raw id {raw_id}): gender {gender_s}, "
            f"age {age_s}, occupation {occupation} ({occ_s})"
        )

    def text(
        self,
        user: int,
        history: np.ndarray,
        history_size: int,
        steps: int,
        action: int,
        rating: float,
        n_liked_left: int,
    ) -> str:
        """The ``"ansi"`` rendering: the user, the recent history and the last recommendation.

        ``n_liked_left`` is the replay user's number of liked targets left (not shown for a
        learned user model, which has no targets).
        """
        left = f"; {n_liked_left} liked targets left" if self.replay else ""
        recent = [int(t) - 1 for t in history[-5:] if t > 0]
        titles = " | ".join(str(self.titles[i]) for i in recent) or "(empty)"
        lines = [
            self.describe_user(user),
            f"history ({len(recent)} most recent of {history_size}, oldest first): {titles}",
        ]
        if action < 0:
            lines.append(f"step {steps}: no recommendation yet{left}")
        else:
            lines.append(
                f'step {steps}: recommended item {action} "{self.titles[action]}" -> '
                f"{self._outcome(rating)}{left}"
            )
        return "\n".join(lines) + "\n"

    def slate_text(
        self,
        user: int,
        history: np.ndarray,
        history_size: int,
        steps: int,
        slate: list[int],
        rating: np.ndarray,
        n_liked_left: int,
    ) -> str:
        """The ``"ansi"`` rendering in slate mode: the user, the recent history, the last slate.

        :param slate: the last slate's item indices (empty: none shown yet)
        :param rating: rating of each consumed position's item, 0 elsewhere
        """
        recent = [int(t) - 1 for t in history[-5:] if t > 0]
        titles = " | ".join(str(self.titles[i]) for i in recent) or "(empty)"
        lines = [
            self.describe_user(user),
            f"history ({len(recent)} most recent of {history_size}, oldest first): {titles}",
        ]
        if not slate:
            lines.append(f"step {steps}: no slate yet; {n_liked_left} liked targets left")
        else:
            lines.append(f"step {steps}: slate of {len(slate)}; {n_liked_left} liked targets left")
            for pos, (item, r) in enumerate(zip(slate, rating.tolist())):
                outcome = self._outcome(r) if r else "not consumed (reward 0)"
                lines.append(f'  {pos + 1:2d}. item {item} "{self.titles[item]}" -> {outcome}')
        return "\n".join(lines) + "\n"

    def _outcome(self, rating: float) -> str:
        if rating > 0 and rating >= self.like_threshold:
            return f"LIKED (rating {rating}, reward {self.reward_map[rating]:g})"
        if rating > 0:
            return f"watched, not liked (rating {rating}, reward {self.reward_map[rating]:g})"
        return "not a target (reward 0)" if self.replay else "not liked (reward 0)"

    def frame(self, history: np.ndarray, outcomes: np.ndarray, steps: int) -> np.ndarray:
        """The ``rgb_array`` frame of one session (layout in the module docstring)."""
        if self._item_colours is None:
            genres = np.asarray(self.item_genres)
            if genres.ndim != 2 or genres.shape[0] != self.n_items:
                raise ValueError(
                    f"split.data.item_genres must be a bool (n_items={self.n_items}, n_genres) "
                    f"array to colour the rgb_array frame, got shape {genres.shape}"
                )
            self._item_colours = item_colours(genres)
        return session_frame(history, outcomes, steps, self.max_steps, self._item_colours)
