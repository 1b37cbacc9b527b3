"""The one evaluator: full ranking over all items, top-k metrics, shared by every model.

Protocol (docs/evaluation.md): for every user with at least one test item, every item is ranked
by the model's score; the user's training items are excluded from the ranking; the relevant
items are *all* of the user's test items (whatever their rating).

* precision@k = hits / k
* recall@k    = hits / ``|test items|``
* NDCG@k      = DCG / IDCG with binary gains, DCG = sum over hit ranks r (1-based) of 1 / log2(r + 1),
  IDCG the DCG of min(k, ``|test items|``) hits at the top
* hit-rate@k  = 1 if hits > 0 else 0

Each is averaged over the evaluated users. Ties between equal scores are broken towards
the lower item index, so a constant scorer is deterministic.

:func:`evaluate_greedy` is the simulated counterpart: the return of a greedy recommender in
``MovieLensRec-v0``, one episode per user, restricted to the items each observation allows;
:func:`greedy_actions` is its choice (the best allowed item, or in slate mode the
``slate_size`` best, ranked as the evaluator ranks).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from recsim_env.dataset import Split
from recsim_env.env import unpack_bits

ScoreFn = Callable[[np.ndarray], np.ndarray]
#: ``obs_score_fn(observations) -> (B, n_items)``: item scores of a batch of Dict observations.
ObsScoreFn = Callable[[dict[str, np.ndarray]], np.ndarray]


def gather_csr(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the CSR rows ``rows`` of ``values``.

    :param indptr: CSR row pointer, ``(n_rows + 1,)``
    :param values: CSR values
    :param rows: row indices to gather, ``(B,)``
    :return: ``(row_position, value)``: for each gathered entry, its position in ``rows``
        (0..B-1) and its value
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    position = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return position, values[np.repeat(starts, lengths) + offsets]


#: Score cells (users x items) of one batch of :func:`evaluate_ranking` when ``batch_size`` is
#: None: 2^21 (8 MiB of float32 scores), so that its memory is bounded whatever the catalogue
#: (1,246 users per batch on ML-100K, 565 on ML-1M, 23 at 87,585 items).
BATCH_CELLS: int = 1 << 21


def top_k_items(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores of each row, best first (ties: lower index first).

    Exact, in about three passes over the scores: each row is cut into blocks of at most 64
    items, and the ``k``-th largest block maximum ``T`` is a lower bound of the row's ``k``-th
    largest score (``k`` blocks each hold an item ``>= T``); only the items ``>= T`` (ties
    included) are then sorted, by score and item index.

    :param scores: float array ``(B, n_items)`` without NaN
    :param k: number of items per row (clipped to ``n_items``)
    :return: int array ``(B, min(k, n_items))``
    """
    n_rows, n = scores.shape
    k = min(k, n)
    block = max(1, min(64, n // k))  # at least k blocks
    whole = (n // block) * block
    maxima = scores[:, :whole].reshape(n_rows, whole // block, block).max(axis=2)
    if whole < n:
        maxima = np.concatenate([maxima, scores[:, whole:].max(axis=1, keepdims=True)], axis=1)
    bound = np.partition(maxima, maxima.shape[1] - k, axis=1)[:, maxima.shape[1] - k]
    row, item = np.nonzero(scores >= bound[:, None])
    order = np.lexsort((item, -scores[row, item], row))
    row, item = row[order], item[order]
    rank = np.arange(row.size) - np.searchsorted(row, np.arange(n_rows))[row]
    keep = rank < k
    top = np.empty((n_rows, k), dtype=np.intp)
    top[row[keep], rank[keep]] = item[keep]
    return top


def greedy_actions(
    scores: np.ndarray, excluded: np.ndarray | None = None, slate_size: int = 1
) -> np.ndarray:
    """The greedy recommendation of each row of ``scores``: its best allowed item, or slate.

    :param scores: float ``(B, n_items)``, higher is better
    :param excluded: bool ``(B, n_items)``: items that may not be recommended (e.g.
        ``unpack_bits(obs["excluded"], n_items)``); ``None``: every item is allowed
    :param slate_size: ``1``: the argmax; ``k > 1``: the ``k`` highest-scoring allowed items,
        best first, ties to the lower item index (as :func:`top_k_items`, so a slate's items
        are the top-``k`` the ranking evaluator scores). Should fewer than ``k`` items be
        allowed, the remaining positions take excluded items (worth nothing), so the slate
        still has ``k`` distinct items
    :return: int64 ``(B,)`` for ``slate_size=1``, else ``(B, slate_size)``
    """
    scores = np.asarray(scores, dtype=np.float64)
    if excluded is not None:
        scores = np.where(excluded, -np.inf, scores)
    if slate_size == 1:
        return scores.argmax(axis=1)
    if slate_size > scores.shape[1]:
        raise ValueError(f"slate_size={slate_size} is larger than the {scores.shape[1]} items")
    return top_k_items(scores, slate_size).astype(np.int64)


def evaluate_ranking(
    score_fn: ScoreFn,
    split: Split,
    k: int = 10,
    users: np.ndarray | None = None,
    batch_size: int | None = None,
    exclude_train: bool = True,
    return_per_user: bool = False,
) -> dict:
    """Evaluate a scoring function with full ranking on a split's test part.

    :param score_fn: maps user indices (int64 ``(B,)``) to scores ``(B, n_items)`` over item
        indices; higher is better. NaN scores are an error; ``-inf`` means "never recommend".
    :param split: the train/test split; train items are excluded, test items are relevant
    :param k: cut-off of the metrics (default 10)
    :param users: users to evaluate (default: every user with at least one test item);
        users without test items are dropped
    :param batch_size: users scored per call of ``score_fn`` (default None: as many as make
        :data:`BATCH_CELLS` scores, at least one). Memory is that of one batch: the scores are
        never held for every user at once. The metrics do not depend on it
    :param exclude_train: remove each user's train items from its ranking (the protocol)
    :param return_per_user: also return the value of every evaluated user under ``"per_user"``
        (for paired significance tests, :mod:`recsim_env.significance`)
    :return: ``{"precision@k", "recall@k", "ndcg@k", "hit_rate@k", "n_users"}`` (floats, and
        ``n_users`` an int), plus, when asked, ``"per_user"``: ``{"user": int64 (n_users,),
        "precision@k": float64 (n_users,), ...}``, one array per metric aligned to ``"user"``,
        the evaluated users: those of ``users`` with a test item, in the order given (default:
        every user with a test item, ascending index). Each aggregate metric is exactly the
        mean of its per-user array
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size is None:
        batch_size = max(1, BATCH_CELLS // max(split.n_items, 1))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_test = np.diff(split.test_indptr)
    if users is None:
        users = np.flatnonzero(n_test > 0)
    else:
        users = np.asarray(users, dtype=np.int64)
        if users.ndim != 1 or (users.size and (users.min() < 0 or users.max() >= split.n_users)):
            raise ValueError(f"users must be a 1-D array of user indices in [0, {split.n_users})")
        users = users[n_test[users] > 0]
    if users.size == 0:
        raise ValueError("no user with test items to evaluate: the split's test part is empty")

    n_items = split.n_items
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    hits_all, ndcg_all = [], []
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size].astype(np.int64)
        # float32 scores stay float32 (a float64 copy would rank identically: the conversion is exact)
        scores = np.array(score_fn(batch), copy=True)
        if scores.dtype.kind != "f":
            scores = scores.astype(np.float64)
        if scores.shape != (batch.size, n_items):
            raise ValueError(
                f"score_fn returned shape {scores.shape}, expected ({batch.size}, {n_items}): "
                "one score per item index for each requested user"
            )
        if scores.size and np.isnan(scores.min()):  # min propagates NaN: one pass, no mask
            raise ValueError("score_fn returned NaN scores; check the model's output")
        if exclude_train:
            row, item = gather_csr(split.train_indptr, split.train_items, batch)
            scores[row, item] = -np.inf
        top = top_k_items(scores, k)
        # Hits: each top item looked up among the batch's (user, test item) keys, no (B, N) matrix.
        row, item = gather_csr(split.test_indptr, split.test_items, batch)
        test_keys = np.sort(row * n_items + item.astype(np.int64))
        top_keys = np.arange(batch.size)[:, None] * n_items + top
        found = np.minimum(np.searchsorted(test_keys, top_keys), test_keys.size - 1)
        hit_matrix = test_keys[found] == top_keys
        # An excluded (-inf) item can only reach the top-k if fewer than k items remain.
        hit_matrix &= np.isfinite(np.take_along_axis(scores, top, axis=1))
        hits_all.append(hit_matrix.sum(axis=1))
        dcg = (hit_matrix * discounts[: top.shape[1]]).sum(axis=1)
        ndcg_all.append(dcg / ideal[np.minimum(n_test[batch], k) - 1])

    hits = np.concatenate(hits_all).astype(np.float64)
    ndcg = np.concatenate(ndcg_all)
    precision = hits / k
    recall = hits / n_test[users]
    hit_rate = (hits > 0).astype(np.float64)
    result = {
        f"precision@{k}": float(precision.mean()),
        f"recall@{k}": float(recall.mean()),
        f"ndcg@{k}": float(ndcg.mean()),
        f"hit_rate@{k}": float(hit_rate.mean()),
        "n_users": int(users.size),
    }
    if return_per_user:
        result["per_user"] = {
            "user": users,
            f"precision@{k}": precision,
            f"recall@{k}": recall,
            f"ndcg@{k}": ndcg,
            f"hit_rate@{k}": hit_rate,
        }
    return result


def evaluate_greedy(
    obs_score_fn: ObsScoreFn | ScoreFn,
    env: Any,
    users: np.ndarray | None = None,
    masked: bool = True,
    by_user: bool = False,
    seed: int | None = None,
) -> dict[str, float]:
    """Simulated return of a greedy recommender: one episode per user, numpy only.

    Each episode starts with ``reset(options={"user": u})`` (the test-mode start state of a
    test-mode environment) and recommends, at every step, the item with the highest score
    ``obs_score_fn(obs)`` among the items the observation allows, ``~unpack_bits(
    obs["excluded"], n_items)`` (= ``action_masks()``: not in the history, not recommended yet),
    until termination or truncation. Ties go to the lower item index. Works with any agent
    that can score items: Q-values, policy logits, or a fixed popularity vector. In slate mode
    (``slate_size=k > 1``) each step shows the ``k`` best allowed items
    (:func:`greedy_actions`).

    :param obs_score_fn: maps a Dict observation batch (leading axis ``B``) to float scores
        ``(B, n_items)``; higher is better. With ``by_user=True``: maps user indices (int64
        ``(B,)``) to scores, as :func:`evaluate_ranking`'s ``score_fn`` (e.g. a baseline's
        ``score``)
    :param env: a ``MovieLensRec-v0`` environment (``gym.make``), stepped one user at a time,
        or a :class:`recsim_env.MovieLensRecVectorEnv` (``gym.make_vec(...,
        vectorization_mode="vector_entry_point")``), stepped ``num_envs`` users at a time
    :param users: users to simulate (default: ``env.unwrapped.users``, every user that can
        start an episode in the environment's mode)
    :param masked: restrict the choice to the allowed items (default True); ``False`` takes
        the plain argmax (top-``k``), as an unmasked ``predict(deterministic=True)`` does
    :param by_user: score by user index, once per episode (default False: by observation, at
        every step). The scores then ignore what happens within the episode (the history grows
        on each like); the mask still removes what was recommended
    :param seed: reset the environment once with this seed before the first episode (default
        None: leave its generators as they are); what the ``"cascade"`` response and a
        stochastic user model (``user_model="ease"``) draw depends on it
    :return: ``{"mean_return", "mean_length", "mean_likes", "mean_liked_items",
        "n_episodes"}``: per-user means of the episode return, its number of steps, of steps
        with a positive reward and of liked items (``info["liked"]``; a slate can hold several)
    :raises ValueError: a score batch of the wrong shape, or NaN scores
    """
    base = env.unwrapped
    users = np.asarray(base.users if users is None else users, dtype=np.int64)
    if users.ndim != 1:
        raise ValueError(f"users must be a 1-D array of user indices, got shape {users.shape}")
    vector = isinstance(env, gym.vector.VectorEnv)
    n = int(base.num_envs) if vector else 1
    n_items = int(base.n_items)
    slate_size = int(getattr(base, "slate_size", 1))
    returns, lengths, likes, liked_items = (np.zeros(users.size), np.zeros(users.size, np.int64),
                                            np.zeros(users.size, np.int64),
                                            np.zeros(users.size, np.int64))  # fmt: skip
    if seed is not None:
        env.reset(seed=seed)

    def checked(scores: Any, what: str) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n, n_items):
            raise ValueError(
                f"obs_score_fn returned shape {scores.shape}, expected ({n}, {n_items}): "
                f"one score per item for each {what} of the batch"
            )
        if np.isnan(scores).any():
            raise ValueError("obs_score_fn returned NaN scores")
        return scores

    for start in range(0, users.size, n):
        batch = users[start : start + n]
        real = batch.size
        if vector:  # pad the last batch by repeating users (not counted)
            obs, _ = env.reset(options={"user": np.resize(batch, n)})
        else:
            obs, _ = env.reset(options={"user": int(batch[0])})
            obs = {k: v[None] for k, v in obs.items()}
        user_scores = checked(obs_score_fn(np.resize(batch, n)), "user") if by_user else None
        running = np.ones(n, dtype=bool)
        while running[:real].any():
            scores = user_scores if by_user else checked(obs_score_fn(obs), "observation")
            excluded = unpack_bits(obs["excluded"], n_items, "excluded") if masked else None
            actions = greedy_actions(scores, excluded, slate_size)
            if vector:
                obs, reward, terminated, truncated, info = env.step(actions)
            else:
                obs, reward, terminated, truncated, info = env.step(
                    int(actions[0]) if slate_size == 1 else actions[0]
                )
                obs = {k: v[None] for k, v in obs.items()}
            reward = np.asarray(reward, dtype=np.float64).reshape(n)
            n_liked = np.asarray(info["liked"]).reshape(n, -1).sum(axis=1)
            sl = slice(start, start + real)
            returns[sl] += np.where(running, reward, 0.0)[:real]
            lengths[sl] += running[:real]
            likes[sl] += (running & (reward > 0))[:real]
            liked_items[sl] += np.where(running, n_liked, 0)[:real]
            running &= ~(np.asarray(terminated).reshape(n) | np.asarray(truncated).reshape(n))
    return {
        "mean_return": float(returns.mean()) if users.size else 0.0,
        "mean_length": float(lengths.mean()) if users.size else 0.0,
        "mean_likes": float(likes.mean()) if users.size else 0.0,
        "mean_liked_items": float(liked_items.mean()) if users.size else 0.0,
        "n_episodes": int(users.size),
    }
