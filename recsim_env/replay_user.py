"""The replay user of ``MovieLensRec-v0`` (``user_model="replay"``, the default) and its rules.

The replay user of the LSRWRL paper: an episode replays one real user, and a recommended item
is liked only when it is one of the user's remaining logged target items rated
``>= like_threshold``. Its rules:

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
  settings in :class:`recsim_env.slates.SlateResponse`): the user scans a slate of ``k`` items
  in order, up to a depth drawn per step (``"independent"``: all ``k``; ``"cascade"``:
  position ``i`` (1-based) with probability ``examine ** (i - 1)``). Each examined position
  whose item is a remaining target is consumed as above (liked ones join the history in slate
  order); ``"cascade"`` stops after the first like. A position that repeats an earlier one,
  or holds an item already excluded, is never consumed. Every item of the slate joins
  ``"excluded"``, so a target shown but not consumed (not examined) is lost: it can never be
  consumed later. With ``k = 1`` this is exactly the single-item rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsim_env.episode_state import BIT_VALUES, BatchState, EpisodeState, concatenated_ranges
from recsim_env.user_simulator import UserSimulator

__all__ = ["ReplaySimulator"]


class ReplaySimulator(UserSimulator):
    """The replay user of ``MovieLensRec-v0`` (``user_model="replay"``; rules in the module docstring).

    Arguments: those of :class:`~recsim_env.user_simulator.UserSimulator`.
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
        batch.excluded_flat[batch.byte_offset + (a >> 3)] |= BIT_VALUES[a & 7]
        batch.n_targets_left -= rating > 0
        batch.n_liked_left -= liked
        if np.count_nonzero(liked):
            rows = liked.nonzero()[0]
            item = a[rows]
            history = batch.history
            history[rows, :-1] = history[rows, 1:]
            history[rows, -1] = item + 1
            batch.liked_flat[batch.byte_offset[rows] + (item >> 3)] |= BIT_VALUES[item & 7]
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
        :param depth: positions the user is willing to examine
            (:meth:`~recsim_env.slates.SlateResponse.depth`)
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
        bit = BIT_VALUES[slates & 7]
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
