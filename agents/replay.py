"""A Dict replay buffer whose memory per transition does not grow with the catalogue.

SB3's ``DictReplayBuffer`` keeps every observation field twice per transition (observation and
next observation). ``MovieLensRec-v0``'s ``"liked"`` and ``"excluded"`` fields are packed bits
of the whole catalogue, ``ceil(n_items / 8)`` bytes each, so at ML-32M's 87,585 items one
transition costs about 44 KB there. :class:`CompactDictReplayBuffer` stores the other fields as
SB3 does and each packed-bit field as the positions of its set bits:

* Per vector-env slot, an append-only *item log* (a ring of int32 bit positions). An
  observation's field is ``base | bits(log[start:start + length])``: a chain of set bits that
  grows step by step. Within an episode ``"liked"`` and ``"excluded"`` only grow (a step adds
  the recommended items to ``"excluded"`` and the liked ones to ``"liked"``), so the next
  observation extends the same chain by the few new positions, and the observation of the
  following transition (SB3 passes the same array) costs nothing.
* A field that lost a bit (a new episode, or any other change) starts a new chain: its set
  bits are written to the log when that is cheaper than the packed bytes (``4 * popcount <=
  n_bytes``), else the packed bytes are kept once as the chain's *base* in a pool. A chain
  also restarts when the new positions would cost more than a base. So one observation never
  adds more than ``n_bytes`` (plus 16 bytes of reference) per field.
* Eviction: when SB3's circular index overwrites a row, the log before the oldest stored
  observation's chain is free for reuse (the ring) and a base no stored observation (nor the
  slot's current chain) references returns to the pool.

Any uint8 content is stored exactly (the bits are positions, whatever they mean), so sampled
batches are bit-identical to ``DictReplayBuffer``'s for the same indices; ``sample`` draws the
same random numbers, so with the same seed it returns the same batches. Sampling rebuilds the
packed fields of a batch at once (one ``np.bitwise_or.at`` over the batch's positions).

Used through SB3's own arguments::

    DQN("MultiInputPolicy", env, replay_buffer_class=CompactDictReplayBuffer)

:func:`agents.make_agent` and ``make train`` use it for ``dqn`` and ``qrdqn`` unless
``replay_buffer="sb3"`` (:class:`agents.config.TrainConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.type_aliases import DictReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from recsim_env.episode_state import BIT_VALUES, concatenated_ranges

#: The packed-bit fields of ``MovieLensRec-v0``'s observation (the default ``bitset_keys``).
BITSET_KEYS: tuple[str, ...] = ("liked", "excluded")
#: Bytes of one stored bit position in the item log.
_POSITION_BYTES = np.dtype(np.int32).itemsize
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64)


def _bits_of(rows: np.ndarray, byte: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, position)`` of every set bit of the bytes ``values`` at ``(rows, byte)`` (little bit
    order, as ``np.packbits(..., bitorder="little")``), in the given order, positions ascending."""
    hit, bit = np.nonzero(np.unpackbits(values[:, None], axis=1, bitorder="little"))
    return rows[hit], byte[hit] * 8 + bit


def _set_bits(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, position)`` of every set bit of a uint8 ``(n, n_bytes)`` array, row by row."""
    # flatnonzero of a bool array is several times faster than nonzero of the uint8 array.
    flat = np.flatnonzero(packed != 0)
    rows, byte = np.divmod(flat, packed.shape[1])
    return _bits_of(rows, byte, packed.reshape(-1)[flat])


class _BitsetStore:
    """One packed-bit field of every stored observation and next observation (module docstring).

    :param rows: rows of the replay buffer (``buffer_size // n_envs``)
    :param n_envs: vector-env slots
    :param n_bytes: bytes of the field
    """

    def __init__(self, rows: int, n_envs: int, n_bytes: int) -> None:
        self.n_envs, self.n_bytes = n_envs, n_bytes
        # Reference of each stored field, [row, slot, 0: observation / 1: next observation]:
        # absolute log position of its chain, the chain's length then, its base in the pool (-1: none).
        self.start = np.zeros((rows, n_envs, 2), dtype=np.int64)
        self.length = np.zeros((rows, n_envs, 2), dtype=np.int32)
        self.base = np.full((rows, n_envs, 2), -1, dtype=np.int32)
        # The slot's current chain (the last field represented): its bits, start and base.
        self.tip = np.zeros((n_envs, n_bytes), dtype=np.uint8)
        self.tip_start = np.zeros(n_envs, dtype=np.int64)
        self.tip_base = np.full(n_envs, -1, dtype=np.int32)
        # Item log: a ring per slot; absolute position p lives at log[slot, p % capacity]. Positions
        # in [live, end) are kept; live is the oldest stored observation's chain start.
        self.log = np.zeros((n_envs, 0), dtype=np.int32)
        self.end = np.zeros(n_envs, dtype=np.int64)
        self.live = np.zeros(n_envs, dtype=np.int64)
        # Base pool, with the number of references to each base (stored fields + current chains).
        self.pool = np.zeros((0, n_bytes), dtype=np.uint8)
        self.refs = np.zeros(0, dtype=np.int64)
        self.free = np.zeros(0, dtype=np.int64)  # unused pool rows (a stack)

    # -- sizes ---------------------------------------------------------------------------------

    @property
    def fixed_nbytes(self) -> int:
        """Bytes allocated for every row at construction (references and current chains)."""
        return sum(a.nbytes for a in (self.start, self.length, self.base, self.tip, self.tip_start,
                                      self.tip_base, self.end, self.live))

    @property
    def variable_nbytes(self) -> int:
        """Bytes of the item log and the base pool (they grow with what is stored)."""
        return sum(a.nbytes for a in (self.log, self.pool, self.refs, self.free))

    @property
    def live_positions(self) -> int:
        """Positions kept in the item logs of all slots."""
        return int((self.end - self.live).sum())

    @property
    def live_bases(self) -> int:
        """Bases in the pool that something references."""
        return int(self.pool.shape[0] - self.free.size)

    # -- adding --------------------------------------------------------------------------------

    def add(self, row: int, obs: np.ndarray, next_obs: np.ndarray) -> None:
        """Store the field of one vector step's observations and next observations at ``row``."""
        for which, value in enumerate((obs, next_obs)):
            start, length, base = self._represent(value)
            self.start[row, :, which], self.length[row, :, which], self.base[row, :, which] = start, length, base
            self._acquire(base)

    def evict(self, row: int) -> None:
        """Drop the references of ``row`` (about to be overwritten)."""
        self._release(self.base[row].ravel())

    def set_oldest(self, row: int) -> None:
        """``row`` now holds the oldest stored observations: the log before their chains is free."""
        self.live[:] = self.start[row, :, 0]

    def _represent(self, value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Make every slot's current chain hold ``value`` (uint8 ``(n_envs, n_bytes)``) and
        return its references ``(start, length, base)``."""
        x = np.asarray(value).reshape(self.n_envs, self.n_bytes).astype(np.uint8, copy=False)
        if not np.array_equal(x, self.tip):  # equal: SB3 passes the last next observation again
            changed = np.flatnonzero(x != self.tip)
            rows, byte = np.divmod(changed, self.n_bytes)
            now, before = x.reshape(-1)[changed], self.tip.reshape(-1)[changed]
            rows_new, positions = _bits_of(rows, byte, now & ~before)
            n_new = np.bincount(rows_new, minlength=self.n_envs)
            # A new chain where the field lost a bit, or where a base costs less than the new positions.
            restart = _POSITION_BYTES * n_new > self.n_bytes
            restart[rows[(before & ~now) != 0]] = True
            if restart.any():
                rows_new, positions = self._restart(np.flatnonzero(restart), x, rows_new, positions)
            self._append(rows_new, positions)
            self.tip.reshape(-1)[changed] = now
        return self.tip_start.copy(), (self.end - self.tip_start).astype(np.int32), self.tip_base.copy()

    def _restart(self, slots: np.ndarray, x: np.ndarray, rows: np.ndarray, positions: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Start new chains holding ``x`` in ``slots``: a packed base when denser than the
        positions would be, else all positions. Returns the positions to append: those of
        ``(rows, positions)`` outside ``slots`` and the new chains', sorted by slot."""
        self._release(self.tip_base[slots])
        self.tip_start[slots] = self.end[slots]
        self.tip_base[slots] = -1
        dense = _POSITION_BYTES * _POPCOUNT[x[slots]].sum(axis=1) > self.n_bytes
        if dense.any():
            packed = slots[dense]
            index = self._allocate(packed.size)
            self.pool[index] = x[packed]
            self.tip_base[packed] = index
            self._acquire(index)  # the current chain's reference
        sparse = slots[~dense]
        sparse_rows, sparse_positions = _set_bits(x[sparse])
        keep = ~np.isin(rows, slots)
        rows = np.concatenate((rows[keep], sparse[sparse_rows]))
        positions = np.concatenate((positions[keep], sparse_positions))
        order = np.argsort(rows, kind="stable")
        return rows[order], positions[order]

    def _append(self, rows: np.ndarray, positions: np.ndarray) -> None:
        """Append bit positions to the slots' logs (``rows`` sorted ascending)."""
        if rows.size == 0:
            return
        counts = np.bincount(rows, minlength=self.n_envs)
        needed = int((self.end + counts - self.live).max())
        if needed > self.log.shape[1]:
            self._grow(needed)
        first = np.cumsum(counts) - counts
        at = self.end[rows] + np.arange(rows.size) - first[rows]
        self.log[rows, at % self.log.shape[1]] = positions
        self.end += counts

    def _grow(self, needed: int) -> None:
        capacity = max(2 * self.log.shape[1], needed, 16)
        log = np.zeros((self.n_envs, capacity), dtype=np.int32)
        if self.log.shape[1]:
            index, slot = concatenated_ranges(self.live, self.end)
            log[slot, index % capacity] = self.log[slot, index % self.log.shape[1]]
        self.log = log

    def _allocate(self, n: int) -> np.ndarray:
        """``n`` unused pool rows (the pool doubles when too few are free)."""
        if self.free.size < n:
            size = self.pool.shape[0]
            grown = max(2 * size, size + n - self.free.size, 4)
            self.pool = np.concatenate((self.pool, np.zeros((grown - size, self.n_bytes), dtype=np.uint8)))
            self.refs = np.concatenate((self.refs, np.zeros(grown - size, dtype=np.int64)))
            self.free = np.concatenate((self.free, np.arange(size, grown)))
        index, self.free = self.free[self.free.size - n :].copy(), self.free[: self.free.size - n]
        return index

    def _acquire(self, base: np.ndarray) -> None:
        np.add.at(self.refs, base[base >= 0], 1)

    def _release(self, base: np.ndarray) -> None:
        base = base[base >= 0]
        if base.size:
            np.subtract.at(self.refs, base, 1)
            unused = np.unique(base[self.refs[base] == 0])
            self.free = np.concatenate((self.free, unused))

    # -- sampling ------------------------------------------------------------------------------

    def rebuild(self, rows: np.ndarray, slots: np.ndarray, which: int) -> np.ndarray:
        """The packed field (uint8 ``(B, n_bytes)``) of the stored (next) observations at ``(rows, slots)``.

        :param which: 0 for the observations, 1 for the next observations
        """
        start, length, base = (a[rows, slots, which] for a in (self.start, self.length, self.base))
        out = np.zeros((rows.size, self.n_bytes), dtype=np.uint8)
        has_base = base >= 0
        if has_base.any():
            out[has_base] = self.pool[base[has_base]]
        index, segment = concatenated_ranges(start, start + length)
        if index.size:
            positions = self.log[slots[segment], index % self.log.shape[1]]
            np.bitwise_or.at(out.reshape(-1), segment * self.n_bytes + (positions >> 3), BIT_VALUES[positions & 7])
        return out


class CompactDictReplayBuffer(DictReplayBuffer):
    """SB3's ``DictReplayBuffer`` with the packed-bit fields stored as item ids (module docstring).

    A drop-in ``replay_buffer_class`` for DQN, QR-DQN and any SB3 off-policy algorithm on a Dict
    observation: ``add``, ``sample``, ``reset``, saving and loading (pickle) behave as SB3's, and
    sampled batches are bit-identical to ``DictReplayBuffer``'s. The fields of ``bitset_keys``
    are not in :attr:`observations` / :attr:`next_observations` (SB3's arrays hold the other
    fields); :meth:`sample` rebuilds them.

    :param buffer_size: capacity in transitions (all vector-env slots together, as SB3)
    :param observation_space: the Dict observation space
    :param action_space: the action space
    :param device: torch device of the sampled tensors
    :param n_envs: vector-env slots
    :param optimize_memory_usage: must be False: SB3's Dict buffers do not support it, and the
        next observation costs only its new bits here anyway
    :param handle_timeout_termination: as SB3's (a truncated transition's ``done`` is sampled
        as 0)
    :param bitset_keys: the packed-bit fields (1-D uint8 ``Box`` spaces; default
        :data:`BITSET_KEYS`). Memory is small when they are sparse and only grow within an
        episode; any content is stored exactly
    :raises ValueError: ``optimize_memory_usage=True``, or a key of ``bitset_keys`` missing from
        the space or not a 1-D uint8 ``Box``
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        bitset_keys: Sequence[str] = BITSET_KEYS,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError("CompactDictReplayBuffer does not take optimize_memory_usage=True (SB3's Dict buffers "
                             "do not either; a next observation costs only its new bits here): set it to False")
        if not isinstance(observation_space, spaces.Dict):
            raise ValueError(f"CompactDictReplayBuffer needs a Dict observation space, got {observation_space!r}; "
                             "use SB3's ReplayBuffer")
        keys = tuple(bitset_keys)
        for key in keys:
            space = observation_space.spaces.get(key)
            if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 1):
                raise ValueError(f"bitset key {key!r} must be a 1-D uint8 Box of the observation space (packed "
                                 f"bits), got {space!r}; pass bitset_keys= with the packed-bit fields, or use "
                                 "SB3's DictReplayBuffer (replay_buffer='sb3')")
        others = spaces.Dict({k: s for k, s in observation_space.spaces.items() if k not in keys})
        super().__init__(buffer_size, others, action_space, device, n_envs, False, handle_timeout_termination)
        self.observation_space = observation_space
        self.obs_shape = get_obs_shape(observation_space)  # type: ignore[assignment]
        self.bitset_keys = keys
        self._new_stores()

    def _new_stores(self) -> None:
        self.bitsets = {key: _BitsetStore(self.buffer_size, self.n_envs, self.obs_shape[key][0])
                        for key in self.bitset_keys}

    def reset(self) -> None:
        """Empty the buffer (SB3's ``reset``), the item logs and base pools included."""
        super().reset()
        self._new_stores()

    def add(  # type: ignore[override]
        self,
        obs: dict[str, np.ndarray],
        next_obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Store one vector step (SB3's ``add``: ``next_obs`` holds the terminal observations of
        the slots whose episode ended)."""
        row = self.pos
        for key, store in self.bitsets.items():
            if self.full:
                store.evict(row)
            store.add(row, obs[key], next_obs[key])
        super().add(obs, next_obs, action, reward, done, infos)
        oldest = self.pos if self.full else 0
        for store in self.bitsets.values():
            store.set_oldest(oldest)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> DictReplayBufferSamples:
        # As DictReplayBuffer._get_samples, the same random draw included.
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        obs_ = self._normalize_obs(self._fields(batch_inds, env_indices, 0), env)
        next_obs_ = self._normalize_obs(self._fields(batch_inds, env_indices, 1), env)
        assert isinstance(obs_, dict) and isinstance(next_obs_, dict)
        return DictReplayBufferSamples(
            observations={key: self.to_torch(obs) for key, obs in obs_.items()},
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations={key: self.to_torch(obs) for key, obs in next_obs_.items()},
            dones=self.to_torch(
                self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
            ).reshape(-1, 1),
            rewards=self.to_torch(self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env)),
        )

    def _fields(self, rows: np.ndarray, slots: np.ndarray, which: int) -> dict[str, np.ndarray]:
        """The observation (``which=0``) or next observation (1) fields at ``(rows, slots)``, in
        the observation space's key order."""
        stored = self.observations if which == 0 else self.next_observations
        return {key: self.bitsets[key].rebuild(rows, slots, which) if key in self.bitsets
                else stored[key][rows, slots, :] for key in self.observation_space.spaces}

    # -- memory --------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes of every array the buffer holds now."""
        return self._fixed_nbytes() + sum(store.variable_nbytes for store in self.bitsets.values())

    def _fixed_nbytes(self) -> int:
        arrays = [*self.observations.values(), *self.next_observations.values(), self.actions, self.rewards,
                  self.dones, self.timeouts]
        return sum(a.nbytes for a in arrays) + sum(store.fixed_nbytes for store in self.bitsets.values())

    @property
    def fixed_bytes_per_transition(self) -> float:
        """Bytes per transition allocated at construction: SB3's arrays of the other fields,
        actions, rewards, dones and timeouts, the references of the packed-bit fields."""
        return self._fixed_nbytes() / (self.buffer_size * self.n_envs)

    @property
    def bytes_per_transition(self) -> float:
        """Bytes per transition in use: :attr:`fixed_bytes_per_transition` plus the item logs and
        base pools divided by the stored transitions (so, once full, :attr:`nbytes` per
        transition of capacity). Before the first transition: the fixed part alone."""
        capacity, stored = self.buffer_size * self.n_envs, self.size() * self.n_envs
        variable = sum(store.variable_nbytes for store in self.bitsets.values())
        if not stored:
            return self._fixed_nbytes() / capacity
        return (self._fixed_nbytes() * stored + variable * capacity) / (capacity * stored)


def dict_replay_bytes_per_transition(observation_space: spaces.Dict, action_space: spaces.Space) -> int:
    """Bytes one transition takes in SB3's ``DictReplayBuffer`` (no memory optimisation).

    ``2 * sum(obs field bytes)`` (observation and next observation, stored in their own
    dtypes: int32 user and history, uint8 packed liked and excluded bits) + the action (int64 for
    ``Discrete``) + reward, done and timeout (float32 each).

    :param observation_space: the Dict observation space
    :param action_space: the action space
    """
    obs = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in observation_space.spaces.values())
    action_dtype = np.dtype(action_space.dtype)
    action_dtype = np.dtype(np.float32) if action_dtype == np.float64 else action_dtype
    action = int(np.prod(action_space.shape or (1,))) * action_dtype.itemsize
    return 2 * obs + action + 3 * np.dtype(np.float32).itemsize


def replay_bytes_per_transition(buffer: ReplayBuffer) -> float:
    """Bytes per transition of a replay buffer as it is: :attr:`CompactDictReplayBuffer.bytes_per_transition`
    (measured), or for SB3's buffers their arrays per transition of capacity (allocated up front).

    :param buffer: the buffer (``model.replay_buffer``)
    """
    if isinstance(buffer, CompactDictReplayBuffer):
        return buffer.bytes_per_transition
    arrays = [buffer.actions, buffer.rewards, buffer.dones, buffer.timeouts]
    for name in ("observations", "next_observations"):
        value = getattr(buffer, name, None)
        arrays += list(value.values()) if isinstance(value, dict) else [] if value is None else [value]
    return sum(a.nbytes for a in arrays) / (buffer.buffer_size * buffer.n_envs)


#: The replay buffer class of each :data:`agents.config.REPLAY_BUFFERS` name.
REPLAY_BUFFER_CLASSES: dict[str, type[DictReplayBuffer]] = {
    "compact": CompactDictReplayBuffer,
    "sb3": DictReplayBuffer,
}
