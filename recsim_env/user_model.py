"""The learned user model of ``MovieLensRec-v0``: a like probability and a rating for any item.

:func:`fit_like_model` learns, from the **train part of a split only**, how likely a user in a
given state (the items consumed so far, and the liked ones among them) is to like any item,
and which rating a like gets; :func:`load_like_model` caches the fit like the parsed data.
:class:`recsim_env.model_user.ModelSimulator` turns it into episodes.

The model (``user_model="ease"``; chosen on the validation slice, figures in the README):

* Two EASE item-item matrices (Steck, WWW 2019), closed form, numpy only: ``B`` on the binary
  matrix of every train rating ("what does a user with these items watch") and ``B_L`` on the
  liked train ratings only ("what does a user with these likes like"). In a state with the
  consumed items ``C`` and the liked items ``L`` (``L`` within ``C``), item ``i`` gets
  ``s = sum_{j in C} B[j, i]`` and ``s_L = sum_{j in L} B_L[j, i]``.
* A logistic link, ``P(like) = sigmoid(w . [1, log(s+ + EPS), log(s_L+ + EPS), log(1 + |C|)])``
  (``x+ = max(x, 0)``; increasing in both scores, as the held-out like rate is), fitted by
  Newton's method on the validation slice (:func:`recsim_env.holdout_last` of the train part):
  the label of an item is whether the user liked it in the held-out tail of their train
  sequence, over every item not in the user's earlier train items. So ``P(like)`` is the
  probability that the user likes the item in their next stretch of activity, the event the
  replay simulator rewards, now defined for every item. ``s`` and ``s_L`` are clipped to the
  range seen in that fit (no extrapolation). The EASE matrices are then refitted on the whole
  train part with the same settings.
* The rating of a like: the top rating of the scale (5 on MovieLens) with probability
  ``sigmoid(logit(g) + d_u + d_i)``, else the rating just below it (4; :func:`like_ratings`),
  where ``g`` is the share of top ratings among the train likes rated one of the two and
  ``d_u``, ``d_i`` are the user's and the item's shrunk log-odds deviations from it
  (``SHRINK`` pseudo-likes at rate ``g``).

Nothing here reads the test part of the split: the cache key hashes the train arrays only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsim_env.dataset import Split
from recsim_env.files import atomic_write, read_signed_npz, savez

logger = logging.getLogger(__name__)

#: ``user_model`` values: the replay user and the learned models.
USER_MODELS: tuple[str, ...] = ("replay", "ease")
#: Bumped whenever the fit changes, so that cached fits are rebuilt.
MODEL_FORMAT_VERSION = 2
#: EASE ``l2`` by dataset when ``user_model_kwargs`` gives none (chosen on the validation slice).
DEFAULT_L2: dict[str, float] = {"ml-100k": 1000.0, "ml-1m": 3000.0}
#: ``l2`` for datasets outside :data:`DEFAULT_L2` (hand-made splits).
FALLBACK_L2 = 500.0
#: Pseudo-likes that shrink a user's or an item's share of 5-star likes towards the global one.
SHRINK = 5.0
#: Fraction of each train sequence held out to fit the link.
VALIDATION_FRACTION = 0.2
#: Most (user, item) rows the link is fitted on; beyond it non-likes are subsampled (seeded)
#: and weighted up, so that ML-1M's 22 million rows fit in memory.
MAX_LINK_ROWS = 2_000_000
#: Offset of the link's log scores (EASE scores of likely items are 0.01 .. 1).
EPS = 0.01
#: Settings of ``user_model_kwargs`` and their defaults.
USER_MODEL_DEFAULTS: dict[str, Any] = {"l2": None, "leave_rate": 0.02}


@dataclass(frozen=True)
class UserModelSettings:
    """Checked settings of a learned user model (``user_model_kwargs`` of the environment).

    :param l2: EASE L2 regularisation (> 0); ``None``: :data:`DEFAULT_L2` of the dataset
    :param leave_rate: after ``k`` consecutive non-liked recommendations the user leaves with
        probability ``min(1, leave_rate * k)`` (in ``[0, 1]``; default 0.02; 0 = never leaves)
    """

    l2: float | None = None
    leave_rate: float = 0.02

    @classmethod
    def from_kwargs(cls, user_model: str, kwargs: Mapping[str, Any] | None) -> UserModelSettings:
        """Check ``user_model`` and its ``user_model_kwargs``; a clear ``ValueError`` otherwise."""
        if user_model not in USER_MODELS:
            raise ValueError(
                f"user_model must be one of {list(USER_MODELS)}, got {user_model!r}"
            )
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"user_model_kwargs must be a dict, got {kwargs!r}")
        if user_model == "replay":
            if kwargs:
                raise ValueError(
                    f"user_model_kwargs {dict(kwargs)!r} are settings of a learned user model; "
                    f"the replay user has none (use user_model='ease')"
                )
            return cls()
        unknown = sorted(set(kwargs) - set(USER_MODEL_DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown user_model_kwargs {unknown}; allowed: {sorted(USER_MODEL_DEFAULTS)}"
            )
        l2 = kwargs.get("l2")
        if l2 is not None:
            if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not (
                math.isfinite(l2) and l2 > 0
            ):
                raise ValueError(f"user_model_kwargs['l2'] must be a number > 0, got {l2!r}")
            l2 = float(l2)
        leave = kwargs.get("leave_rate", USER_MODEL_DEFAULTS["leave_rate"])
        if isinstance(leave, bool) or not isinstance(leave, numbers.Real) or not (
            0.0 <= leave <= 1.0
        ):
            raise ValueError(
                f"user_model_kwargs['leave_rate'] must be a number in [0, 1], got {leave!r}"
            )
        return cls(l2=l2, leave_rate=float(leave))


@dataclass(frozen=True, eq=False)
class LikeModel:
    """A fitted like model (see the module docstring).

    :param b_all: float32 ``(n_items, n_items)`` EASE weights on every train rating
    :param b_like: float32 ``(n_items, n_items)`` EASE weights on the liked train ratings
    :param link: float64 ``(4,)`` weights of ``[1, log(s+ + EPS), log(s_L+ + EPS), log(1 + |C|)]``
    :param clip: float64 ``(4,)`` ``[s_min, s_max, s_L_min, s_L_max]`` of the link's fit
    :param five_logit: ``logit(g)``, the top-rating (5-star) share of the train likes in log-odds
    :param user_five: float64 ``(n_users,)`` user log-odds deviations ``d_u``
    :param item_five: float64 ``(n_items,)`` item log-odds deviations ``d_i``
    :param l2: the EASE regularisation used
    :param like_threshold: the like threshold the model was fitted with
    """

    b_all: np.ndarray
    b_like: np.ndarray
    link: np.ndarray
    clip: np.ndarray
    five_logit: float
    user_five: np.ndarray
    item_five: np.ndarray
    l2: float
    like_threshold: float

    @property
    def n_items(self) -> int:
        return int(self.b_all.shape[0])

    def state_scores(
        self, consumed: np.ndarray, liked: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(s, s_L)`` of every item for a batch of states.

        :param consumed: bool ``(B, n_items)`` consumed items ``C`` of each state
        :param liked: bool ``(B, n_items)`` liked items ``L`` of each state
        :return: two float32 ``(B, n_items)`` arrays
        """
        consumed = np.asarray(consumed, dtype=np.float32)
        liked = np.asarray(liked, dtype=np.float32)
        return consumed @ self.b_all, liked @ self.b_like

    def probability(self, s: np.ndarray, s_like: np.ndarray, n_consumed: np.ndarray) -> np.ndarray:
        """``P(like)`` from the state scores (float64, shape of ``s``).

        :param s: ``s`` of the items (any shape)
        :param s_like: ``s_L``, same shape
        :param n_consumed: ``|C|``, broadcastable to that shape
        """
        w, c = self.link, self.clip
        s = np.log(np.clip(np.asarray(s, dtype=np.float64), c[0], c[1]) + EPS)
        sl = np.log(np.clip(np.asarray(s_like, dtype=np.float64), c[2], c[3]) + EPS)
        z = w[0] + w[1] * s + w[2] * sl + w[3] * np.log1p(np.asarray(n_consumed, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-z))

    def like_probabilities(self, consumed: np.ndarray, liked: np.ndarray) -> np.ndarray:
        """float64 ``(B, n_items)``: ``P(like)`` of every item in each state, 0 on consumed items.

        :param consumed: bool ``(B, n_items)`` consumed items of each state
        :param liked: bool ``(B, n_items)`` liked items of each state (a subset of ``consumed``)
        """
        consumed = np.asarray(consumed, dtype=bool)
        s, sl = self.state_scores(consumed, liked)
        p = self.probability(s, sl, consumed.sum(axis=1, keepdims=True))
        p[consumed] = 0.0
        return p

    def five_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float64: probability that a like of ``items[k]`` by ``users[k]`` gets the top rating (5)."""
        z = self.five_logit + self.user_five[users] + self.item_five[items]
        return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def like_ratings(rating_scale: tuple[float, ...], like_threshold: float) -> tuple[float, float]:
    """The two ratings a simulated like gets: ``(lower, top)``.

    ``top`` is the highest rating of the scale, ``lower`` the one just below it when that is a
    like (``>= like_threshold``), else ``top`` too: ``(4, 5)`` on MovieLens' 1..5 with the
    default threshold 4, ``(5, 5)`` with threshold 5, ``(4.5, 5.0)`` on half stars.

    :param rating_scale: the dataset's ratings, increasing
    :param like_threshold: smallest rating that counts as a like
    """
    top = rating_scale[-1]
    below = rating_scale[-2] if len(rating_scale) > 1 else top
    return (below if below >= like_threshold else top), top


def _number(value: float) -> float:
    """``value`` as JSON writes it in a cache key: an int when whole (as before half stars)."""
    return int(value) if float(value).is_integer() else float(value)


def _train_matrix(split: Split, like_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(n_users, n_items)`` matrices of every train rating and of the liked ones."""
    indptr = np.asarray(split.train_indptr, dtype=np.int64)
    rows = np.repeat(np.arange(split.n_users), np.diff(indptr))
    items = np.asarray(split.train_items, dtype=np.int64)
    x = np.zeros((split.n_users, split.n_items), dtype=np.float32)
    x[rows, items] = 1.0
    liked = np.asarray(split.train_ratings) >= like_threshold
    x_like = np.zeros_like(x)
    x_like[rows[liked], items[liked]] = 1.0
    return x, x_like


def ease_weights(x: np.ndarray, l2: float) -> np.ndarray:
    """EASE: ``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + l2 I)^-1``, zero diagonal.

    :param x: float32 ``(n_users, n_items)`` binary interaction matrix
    :param l2: L2 regularisation (> 0)
    :return: float32 ``(n_items, n_items)``
    """
    gram = (x.T @ x).astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def _features(s: np.ndarray, sl: np.ndarray, n_consumed: np.ndarray) -> np.ndarray:
    """``[1, log(s+ + EPS), log(s_L+ + EPS), log(1 + |C|)]`` rows (float64)."""
    s = np.maximum(s.astype(np.float64), 0.0)
    sl = np.maximum(sl.astype(np.float64), 0.0)
    return np.column_stack(
        (np.ones_like(s), np.log(s + EPS), np.log(sl + EPS), np.log1p(n_consumed.astype(np.float64)))
    )


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, weights: np.ndarray, l2: float = 1e-6, iters: int = 50
) -> np.ndarray:
    """Weighted logistic regression by Newton's method (deterministic).

    :param features: float64 ``(n, k)`` (include a constant column for an intercept)
    :param labels: ``(n,)`` 0/1
    :param weights: ``(n,)`` row weights
    :param l2: ridge on every weight, for a well-posed Hessian
    :param iters: most Newton steps (stops earlier when a step is below 1e-10)
    :return: float64 ``(k,)`` weights
    """
    theta = np.zeros(features.shape[1])
    ridge = l2 * np.eye(features.shape[1]) * weights.sum()
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(features @ theta)))
        grad = features.T @ (weights * (p - labels)) + ridge @ theta
        hess = (features * (weights * p * (1.0 - p))[:, None]).T @ features + ridge
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta


def _link_rows(
    split: Split, like_threshold: float, l2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and weights of the link's fit on the validation slice of ``split``."""
    from recsim_env.splits import holdout_last

    val = holdout_last(split, VALIDATION_FRACTION)
    x, x_like = _train_matrix(val, like_threshold)
    s = x @ ease_weights(x, l2)
    sl = x_like @ ease_weights(x_like, l2)
    indptr = np.asarray(val.test_indptr, dtype=np.int64)
    rows = np.repeat(np.arange(val.n_users), np.diff(indptr))
    label = np.zeros_like(x, dtype=bool)
    keep = np.asarray(val.test_ratings) >= like_threshold
    label[rows[keep], np.asarray(val.test_items, dtype=np.int64)[keep]] = True
    candidate = x == 0  # every item not in the user's earlier train items
    n_consumed = np.broadcast_to(x.sum(axis=1, keepdims=True), x.shape)
    y = label[candidate]
    weights = np.ones(y.size)
    if y.size > MAX_LINK_ROWS:  # subsample the non-likes (seeded), weighted up to stay unbiased
        rate = (MAX_LINK_ROWS - y.sum()) / (~y).sum()
        u = np.random.default_rng(0).random(y.size)
        chosen = y | (u < rate)
        weights = np.where(y, 1.0, 1.0 / rate)[chosen]
        idx = np.flatnonzero(candidate.reshape(-1))[chosen]
        y = y[chosen]
        feats = _features(s.reshape(-1)[idx], sl.reshape(-1)[idx], n_consumed.reshape(-1)[idx])
    else:
        feats = _features(s[candidate], sl[candidate], n_consumed[candidate])
    return feats, y.astype(np.float64), weights


def _five_model(split: Split, like_threshold: float) -> tuple[float, np.ndarray, np.ndarray]:
    ratings = np.asarray(split.train_ratings)
    lower, top = like_ratings(split.data.rating_scale, like_threshold)
    liked = ratings >= lower  # a simulated like is rated top or, below it, lower
    users = np.repeat(np.arange(split.n_users), np.diff(split.train_indptr))[liked]
    items = np.asarray(split.train_items, dtype=np.int64)[liked]
    five = (ratings[liked] == top).astype(np.float64)
    g = float(np.clip(five.mean() if five.size else 0.5, 1e-3, 1 - 1e-3))

    def deviation(keys: np.ndarray, n: int) -> np.ndarray:
        count = np.bincount(keys, minlength=n)
        fives = np.bincount(keys, weights=five, minlength=n)
        rate = (fives + SHRINK * g) / (count + SHRINK)
        return np.log(rate / (1 - rate)) - math.log(g / (1 - g))

    return (math.log(g / (1 - g)), deviation(users, split.n_users),
            deviation(items, split.n_items))  # fmt: skip


def fit_like_model(split: Split, like_threshold: float = 4, l2: float | None = None) -> LikeModel:
    """Fit the like model on the train part of ``split`` (module docstring); deterministic.

    :param split: the split; only its train part is read
    :param like_threshold: smallest rating (of the dataset's scale) that counts as a like (default 4)
    :param l2: EASE regularisation; ``None``: :data:`DEFAULT_L2` of ``split.data.name``
    :return: the fitted model
    """
    if l2 is None:
        l2 = DEFAULT_L2.get(split.data.name, FALLBACK_L2)
    feats, y, weights = _link_rows(split, like_threshold, l2)
    if y.sum() == 0:
        raise ValueError(
            "cannot fit the user model: no user likes an item in the held-out tail of their "
            f"train sequence (like_threshold={like_threshold}); the split is too small"
        )
    # The score range of the fit (features hold log(x+ + EPS); undo it).
    lo_hi = np.exp([feats[:, 1].min(), feats[:, 1].max(), feats[:, 2].min(), feats[:, 2].max()])
    clip = np.maximum(lo_hi - EPS, 0.0)
    link = fit_logistic(feats, y, weights)
    x, x_like = _train_matrix(split, like_threshold)
    five_logit, user_five, item_five = _five_model(split, like_threshold)
    return LikeModel(
        b_all=ease_weights(x, l2), b_like=ease_weights(x_like, l2), link=link, clip=clip,
        five_logit=five_logit, user_five=user_five, item_five=item_five, l2=float(l2),
        like_threshold=_number(like_threshold),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------

_ARRAYS = ("b_all", "b_like", "link", "clip", "user_five", "item_five")


def train_signature(split: Split, like_threshold: float, l2: float | None) -> str:
    """Cache key of a fit: the model's settings and a hash of the split's **train** arrays.

    The test part is not hashed: it cannot change the fit, so it must not change the key.
    """
    digest = hashlib.sha256()
    for array in (split.train_indptr, split.train_items, split.train_ratings):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    if l2 is None:
        l2 = DEFAULT_L2.get(split.data.name, FALLBACK_L2)
    return json.dumps(
        {"version": MODEL_FORMAT_VERSION, "model": "ease", "dataset": split.data.name,
         "n_users": split.n_users, "n_items": split.n_items, "like_threshold": _number(like_threshold),
         "l2": float(l2), "validation_fraction": VALIDATION_FRACTION, "shrink": SHRINK,
         "max_link_rows": MAX_LINK_ROWS, "eps": EPS, "train_sha256": digest.hexdigest()},
        sort_keys=True,
    )  # fmt: skip


def _read(path: Path, signature: str) -> LikeModel | None:
    try:
        npz = read_signed_npz(path, signature)
        if npz is None:
            return None
        return LikeModel(**{k: npz[k] for k in _ARRAYS}, **json.loads(str(npz["meta"])))
    except Exception as exc:  # an unreadable cache is refitted, never fatal
        logger.warning("Ignoring unreadable user-model cache %s (%s); refitting", path, exc)
        return None


def _write(path: Path, signature: str, model: LikeModel) -> None:
    meta = {"five_logit": model.five_logit, "l2": model.l2, "like_threshold": model.like_threshold}
    arrays = {"signature": np.array(signature), "meta": np.array(json.dumps(meta)),
              **{k: getattr(model, k) for k in _ARRAYS}}  # fmt: skip
    try:
        atomic_write(path, lambda tmp: savez(tmp, arrays))
    except OSError as exc:
        logger.warning("Could not write the user-model cache %s (%s)", path, exc)


def load_like_model(
    split: Split,
    like_threshold: float = 4,
    l2: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LikeModel:
    """:func:`fit_like_model`, cached in ``<cache>/user_models/`` (see :func:`train_signature`).

    A fit takes seconds (ML-100K) to a few minutes (ML-1M, loaded machine); later calls with
    the same train part and settings load the ``.npz`` instead.

    :param split: the split; only its train part is read
    :param like_threshold: smallest rating that counts as a like
    :param l2: EASE regularisation; ``None``: :data:`DEFAULT_L2` of the dataset
    :param cache_dir: cache directory (default :func:`recsim_env.download.cache_root`)
    """
    from recsim_env.download import cache_root

    signature = train_signature(split, like_threshold, l2)
    key = hashlib.sha256(signature.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", split.data.name)  # hand-made names may hold "/"
    path = cache_root(cache_dir) / "user_models" / f"{name}-ease-{key}.npz"
    model = _read(path, signature)
    if model is None:
        model = fit_like_model(split, like_threshold, l2)
        _write(path, signature, model)
    return model
