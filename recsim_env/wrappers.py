"""Observation wrappers that make ``MovieLensRec-v0`` usable by generic (MLP) policies.

The environment's observation is compact but not meant to be read as numbers: ``"liked"`` and
``"excluded"`` are packed bits (one byte holds 8 items), ``"history"`` holds item *ids* and
``"user"`` categorical codes. A generic policy (SB3's ``MultiInputPolicy``, whose
``CombinedExtractor`` flattens every Box and casts it to float, or a CleanRL-style MLP) would
read byte 37 of ``"liked"`` as the magnitude 37 and item 1,000 as "larger" than item 10.
:class:`MultiHotObservation` turns every field into 0/1 indicators (multi-hot over the
catalogue, one-hot per user feature), :class:`MultiHotVectorObservation` does the same for a
vector environment. Both are numpy only (no torch).

```python
>>> import gymnasium as gym
>>> import recsim_env
>>> from recsim_env import MultiHotObservation
>>> env = MultiHotObservation(gym.make("MovieLensRec-v0"))  # doctest: +SKIP
>>> obs, info = env.reset(seed=0)  # doctest: +SKIP
>>> {k: (v.shape, v.dtype) for k, v in obs.items()}  # doctest: +SKIP
{'excluded': ((1682,), dtype('uint8')), 'history': ((1682,), dtype('uint8')), 'liked': ((1682,), dtype('uint8')), 'user': ((30,), dtype('uint8'))}

```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorObservationWrapper
from gymnasium.vector.utils import batch_space

__all__ = ["HISTORY_ENCODINGS", "MultiHotObservation", "MultiHotVectorObservation"]

#: Values of the ``history`` argument: 0/1 indicators, or recency weights in ``(0, 1]``.
HISTORY_ENCODINGS: tuple[str, ...] = ("multi_hot", "recency")
#: The observation fields of ``MovieLensRec-v0`` that the wrappers encode (``"user"`` only when
#: the dataset has user features).
_FIELDS: tuple[str, ...] = ("excluded", "history", "liked", "user")


class _MultiHotEncoder:
    """The encoding shared by the single and the vector wrapper; works on any leading batch axes.

    Everything it needs is read from the environment's single observation space: the number of
    items is ``observation_space["history"].high`` (tokens are ``item + 1``), the number of codes
    of each user feature ``observation_space["user"].high + 1``.
    """

    def __init__(
        self, source: spaces.Space, history: str, recency_decay: float, flatten: bool
    ) -> None:
        if not isinstance(source, spaces.Dict) or set(source.spaces) not in (set(_FIELDS), set(_FIELDS) - {"user"}):
            raise ValueError(
                f"expected the Dict observation space of MovieLensRec-v0 with keys "
                f"{list(_FIELDS)}, got {source!r}"
            )
        if history not in HISTORY_ENCODINGS:
            raise ValueError(f"history must be one of {HISTORY_ENCODINGS}, got {history!r}")
        decay = float(recency_decay)
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"recency_decay must be in (0, 1], got {recency_decay!r}")
        hist = source["history"]
        user = source.spaces.get("user", spaces.Box(0, np.zeros(0, np.int32), (0,), np.int32))
        self.n_items = n_items = int(np.max(hist.high))
        self.history_len = int(hist.shape[0])
        n_bytes = (n_items + 7) // 8
        for key in ("liked", "excluded"):
            if source[key].shape != (n_bytes,) or source[key].dtype != np.uint8:
                raise ValueError(
                    f"observation field {key!r} must be uint8 ({n_bytes},) packed bits for "
                    f"{n_items} items, got {source[key]!r}"
                )
        if np.any(user.low != 0):
            raise ValueError(f"user feature codes must start at 0, got low={user.low}")
        self.cardinalities = (np.asarray(user.high, dtype=np.int64) + 1).reshape(-1)
        # int64 even with no user feature (an empty cumsum is float)
        self.offsets = np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int64)
        self.n_user = int(self.cardinalities.sum())
        self.history = history
        self.recency_decay = decay
        self.flatten = bool(flatten)
        # Weight of history slot j (oldest first, most recent last): decay ** age, age 0 = last.
        ages = np.arange(self.history_len - 1, -1, -1)
        self.weights = (decay**ages).astype(np.float32)

        hist_dtype = np.uint8 if history == "multi_hot" else np.float32
        self.has_user = "user" in source.spaces  # no field for a dataset without user features (then none here)
        user_space = {"user": spaces.Box(0, 1, (self.n_user,), np.uint8)} if self.has_user else {}
        self.dict_space = spaces.Dict(
            {
                **user_space,
                "history": spaces.Box(0, 1, (n_items,), hist_dtype),
                "liked": spaces.Box(0, 1, (n_items,), np.uint8),
                "excluded": spaces.Box(0, 1, (n_items,), np.uint8),
            }
        )  # Dict sorts its keys: excluded, history, liked, user
        self.keys = tuple(self.dict_space.spaces)
        sizes = [self.dict_space[k].shape[0] for k in self.keys]
        ends = np.cumsum(sizes).tolist()
        self.field_slices = {k: slice(e - s, e) for k, s, e in zip(self.keys, sizes, ends)}
        self.space: spaces.Space = (
            spaces.flatten_space(self.dict_space) if self.flatten else self.dict_space
        )

    def __call__(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | np.ndarray:
        tokens = np.asarray(obs["history"])
        batch = tokens.shape[:-1]
        tokens = tokens.reshape(-1, self.history_len)
        rows, slots = np.nonzero(tokens)  # padding (token 0) marks nothing
        items = tokens[rows, slots].astype(np.intp) - 1
        if self.history == "multi_hot":
            history = np.zeros((tokens.shape[0], self.n_items), np.uint8)
            history[rows, items] = 1
        else:  # an item twice in the window keeps its most recent (largest) weight
            history = np.zeros((tokens.shape[0], self.n_items), np.float32)
            np.maximum.at(history, (rows, items), self.weights[slots])

        out = {
            "excluded": self._unpack(obs["excluded"]),
            "history": history.reshape(*batch, self.n_items),
            "liked": self._unpack(obs["liked"]),
        }
        if self.has_user:
            codes = np.asarray(obs["user"]).reshape(-1, self.cardinalities.size)
            if np.any(codes < 0) or np.any(codes >= self.cardinalities):
                raise ValueError(
                    f"user feature codes must lie in [0, {(self.cardinalities - 1).tolist()}], "
                    f"got {codes.tolist()}"
                )
            user = np.zeros((codes.shape[0], self.n_user), np.uint8)
            user[np.arange(codes.shape[0])[:, None], codes + self.offsets] = 1
            out["user"] = user.reshape(*batch, self.n_user)
        if not self.flatten:
            return out
        return np.concatenate([out[k] for k in self.keys], axis=-1, dtype=self.space.dtype)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        return np.unpackbits(
            np.asarray(packed, dtype=np.uint8), axis=-1, count=self.n_items, bitorder="little"
        )


class _EncodingAttributes:
    """The encoding's settings, read from the wrapper's :class:`_MultiHotEncoder`."""

    _encoder: _MultiHotEncoder

    @property
    def n_items(self) -> int:
        """Catalogue size (the length of the multi-hot fields)."""
        return self._encoder.n_items

    @property
    def history(self) -> str:
        """The history encoding, ``"multi_hot"`` or ``"recency"``."""
        return self._encoder.history

    @property
    def recency_decay(self) -> float:
        """Weight ratio of consecutive history slots with ``history="recency"``."""
        return self._encoder.recency_decay

    @property
    def flatten(self) -> bool:
        """Whether the observation is one flat ``Box``."""
        return self._encoder.flatten

    @property
    def dict_observation_space(self) -> spaces.Dict:
        """The (single) Dict space of the encoded fields (the observation space unless ``flatten``)."""
        return self._encoder.dict_space

    @property
    def field_slices(self) -> dict[str, slice]:
        """Slice of each field in a flat observation row (``flatten=True``), in key order."""
        return dict(self._encoder.field_slices)


class MultiHotObservation(
    _EncodingAttributes,
    gym.ObservationWrapper[Any, Any, dict[str, np.ndarray]],
    gym.utils.RecordConstructorArgs,
):
    """
    Multi-hot / one-hot observations of ``MovieLensRec-v0`` for generic policies.

    Each field of the environment's Dict observation becomes 0/1 indicators that an MLP can
    read: the packed bits of ``"liked"`` and ``"excluded"`` are unpacked to one column per item,
    the item tokens of ``"history"`` become a multi-hot over the catalogue, and each
    categorical user feature a one-hot block. The keys stay the same (``gymnasium.spaces.Dict``
    sorts them: ``excluded``, ``history``, ``liked``, ``user``); the item column ``i`` is item
    index ``i``, the action that recommends it. Rewards, ``info``, actions and episodes are
    untouched, so ``reset(seed=...)`` is exactly as deterministic as the environment.

    ## Observation Space

    A ``Dict`` of ``Box(low=0, high=1)`` spaces (``n_items`` = 1,682 for ml-100k, 3,706 for
    ml-1m):

    | Key          | Shape            | Dtype   | Values | Meaning                                                            |
    |--------------|------------------|---------|--------|--------------------------------------------------------------------|
    | `"excluded"` | `(n_items,)`     | uint8   | 0/1    | 1 for items that cannot be recommended now (unpacked `"excluded"`): `action_masks() == (obs["excluded"] == 0)` |
    | `"history"`  | `(n_items,)`     | uint8 or float32 | 0/1 or `(0, 1]` | the items of the last `history_len` tokens: 1 each (`history="multi_hot"`, uint8), or `recency_decay ** age` with age 0 for the most recent (`history="recency"`, float32); 0 elsewhere and for padding |
    | `"liked"`    | `(n_items,)`     | uint8   | 0/1    | 1 for the long-term liked items (unpacked `"liked"`)               |
    | `"user"`     | `(sum(card),)`   | uint8   | 0/1    | one-hot of each user feature, concatenated: gender (2), age group (7), occupation (21): 30 columns, exactly 3 ones |

    With ``flatten=True`` the observation is the single ``Box`` that
    ``gymnasium.spaces.flatten_space`` makes of that Dict: the four fields concatenated in
    key order (``excluded``, ``history``, ``liked``, ``user``; ``self.field_slices[key]`` is
    each field's slice), shape ``(3 * n_items + 30,)``, uint8 (float32 with
    ``history="recency"``). It equals ``gymnasium.spaces.flatten(dict_space, dict_obs)``
    (what ``gymnasium.wrappers.FlattenObservation`` would give) without the intermediate dict.

    Why uint8: SB3 stores a Box observation in its replay buffer with the space's dtype (1 byte
    per item here, 4 with float32) and casts it to float in ``preprocess_obs``; it divides by
    255 only for *image* spaces (3-D uint8 Boxes bounded by [0, 255]), never for these 1-D
    Boxes bounded by [0, 1], so the network sees exactly 0.0 and 1.0.

    ## Memory

    Bytes per observation, with ``n_items`` items and the 30 user columns:

    | Encoding                          | Bytes per observation | ml-100k (1,682) | ml-1m (3,706) |
    |-----------------------------------|-----------------------|-----------------|---------------|
    | environment (packed, int32 ids)   | ``2 * ceil(n_items / 8) + 4 * history_len + 12`` | 514 | 1,020 |
    | ``history="multi_hot"`` (default) | ``3 * n_items + 30``  | 5,076           | 11,148        |
    | ``history="recency"``             | ``6 * n_items + 30``  | 10,122          | 22,266        |

    ``flatten`` does not change the size. An SB3 ``DictReplayBuffer`` transition holds the
    observation and the next observation (it has no ``optimize_memory_usage``), an int64
    action and three float32 scalars (reward, done, timeout): ``6 * n_items + 80`` bytes with
    the default encoding, 10,172 bytes on ml-100k (1,048 unwrapped), so 200,000 transitions
    take about 1.9 GiB (ml-1m: 22,316 bytes, about 4.2 GiB); with ``flatten=True`` SB3's
    plain ``ReplayBuffer`` stores the same bytes. On-policy rollout buffers (PPO, A2C) store
    float32 whatever the dtype: 4 bytes per column.

    ## Action masks

    ``action_masks()`` returns the wrapped environment's mask unchanged (found with
    ``get_wrapper_attr``, so any Gymnasium wrapper may sit in between), and the wrapper itself
    answers ``get_wrapper_attr("action_masks")`` as outer wrappers and SB3's ``DummyVecEnv``
    ask it, which is how sb3-contrib's ``MaskablePPO`` reaches it. With ``slate_size=1`` it
    equals ``obs["excluded"] == 0``.

    ```python
    >>> import gymnasium as gym
    >>> import recsim_env
    >>> from recsim_env import MultiHotObservation
    >>> from stable_baselines3 import PPO  # doctest: +SKIP
    >>> env = MultiHotObservation(gym.make("MovieLensRec-v0"))  # doctest: +SKIP
    >>> model = PPO("MultiInputPolicy", env).learn(10_000)  # doctest: +SKIP
    >>> flat = MultiHotObservation(gym.make("MovieLensRec-v0"), flatten=True)  # doctest: +SKIP
    >>> flat.observation_space  # doctest: +SKIP
    Box(0, 1, (5076,), uint8)

    ```

    ``observation(obs)`` also accepts a batch (every field with the same leading axes), e.g.
    ``env.observation(env.unwrapped.start_observations(users))``.

    :param env: a ``MovieLensRec-v0`` environment (``gym.make`` result, possibly wrapped); any
        environment with its Dict observation space works (the item count is read from
        ``observation_space["history"].high``, the user-feature sizes from
        ``observation_space["user"].high + 1``). For ``gym.make_vec`` use
        :class:`MultiHotVectorObservation`
    :param history: ``"multi_hot"`` (default): 1 for every item in the last ``history_len``
        tokens, uint8; ``"recency"``: weight ``recency_decay ** age`` (age 0 = most recent
        slot, in steps of the history window), float32, so an MLP can tell the last item from
        the twentieth
    :param recency_decay: decay per history slot of ``history="recency"``, in ``(0, 1]``
        (default 0.9: the oldest of 20 slots weighs ``0.9 ** 19`` = 0.135); ignored otherwise
    :param flatten: ``False`` (default): a Dict observation (SB3 ``MultiInputPolicy``);
        ``True``: one flat ``Box`` (SB3 ``MlpPolicy``, CleanRL-style MLPs)
    """

    def __init__(
        self,
        env: gym.Env,
        history: str = "multi_hot",
        recency_decay: float = 0.9,
        flatten: bool = False,
    ) -> None:
        if isinstance(env, VectorEnv):
            raise TypeError(
                "MultiHotObservation wraps a single environment; wrap a vector environment "
                "(gym.make_vec) with MultiHotVectorObservation"
            )
        # Recorded in env.spec, so gym.make(env.spec) (and Gymnasium's check_env, which
        # remakes the environment to check rendering) rebuilds the wrapper too.
        gym.utils.RecordConstructorArgs.__init__(
            self, history=history, recency_decay=recency_decay, flatten=flatten
        )
        gym.ObservationWrapper.__init__(self, env)
        enc = _MultiHotEncoder(env.observation_space, history, recency_decay, flatten)
        self._encoder = enc
        self.observation_space = enc.space

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray] | np.ndarray:
        """Encode an observation of the wrapped environment (or a batch of them).

        :param observation: the environment's Dict observation; every field may carry the same
            leading batch axes
        :return: the Dict (or, with ``flatten=True``, the flat array) described in the class
            docstring, with the same leading axes; fresh arrays
        """
        return self._encoder(observation)

    def action_masks(self) -> np.ndarray:
        """The wrapped environment's ``action_masks()``, unchanged (bool ``(n_items,)``)."""
        return self.env.get_wrapper_attr("action_masks")()


class MultiHotVectorObservation(_EncodingAttributes, VectorObservationWrapper):
    """
    :class:`MultiHotObservation` for a vector environment: the same encoding of a batch.

    Wraps ``gym.make_vec("MovieLensRec-v0", num_envs=n, vectorization_mode="vector_entry_point")``
    (the numpy :class:`recsim_env.MovieLensRecVectorEnv`; one batched encoding per step, of
    the order of the vector step itself: about 0.2 ms for 64 sub-envs on ml-100k) or any
    Gymnasium vector environment (``SyncVectorEnv``, ``AsyncVectorEnv``) of unwrapped
    ``MovieLensRec-v0`` environments. (``gym.make_vec(..., vectorization_mode="sync",
    wrappers=[MultiHotObservation])``, which wraps each sub-env, gives the same observations.) Each field gains a leading ``num_envs`` axis:
    ``single_observation_space`` is the Dict (or flat Box) of :class:`MultiHotObservation`,
    ``observation_space`` its batch (the fields of :class:`MultiHotObservation`, each
    ``(num_envs, ...)``).

    Gymnasium's ``VectorWrapper`` does not forward ``call``, ``get_attr``, ``set_attr`` or
    extra methods, so this wrapper forwards them: ``action_masks()`` returns the wrapped
    vector environment's bool ``(num_envs, n_items)`` masks (or stacks ``call("action_masks")``
    when it has no such method), and ``call("observation_space")`` /
    ``get_attr("observation_space")`` answer with the encoded single space.

    Memory per observation as in :class:`MultiHotObservation`, times ``num_envs``.

    :param env: a vector environment with the Dict observation of ``MovieLensRec-v0``
    :param history: ``"multi_hot"`` (default, uint8) or ``"recency"`` (float32), see
        :class:`MultiHotObservation`
    :param recency_decay: decay per history slot of ``history="recency"`` (default 0.9)
    :param flatten: ``True``: one flat Box per sub-env, ``(num_envs, 3 * n_items + 30)``
        (default ``False``)
    """

    def __init__(
        self,
        env: VectorEnv,
        history: str = "multi_hot",
        recency_decay: float = 0.9,
        flatten: bool = False,
    ) -> None:
        super().__init__(env)
        enc = _MultiHotEncoder(env.single_observation_space, history, recency_decay, flatten)
        self._encoder = enc
        self.single_observation_space = enc.space
        self.observation_space = batch_space(enc.space, env.num_envs)

    def observations(
        self, observations: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray] | np.ndarray:
        """Encode a batch of observations (leading ``num_envs`` axis), see the class docstring."""
        return self._encoder(observations)

    def action_masks(self) -> np.ndarray:
        """bool ``(num_envs, n_items)``: the wrapped vector environment's action masks."""
        method = getattr(self.env, "action_masks", None)
        if callable(method):
            return method()
        return np.stack(self.env.call("action_masks"))

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``call`` of the wrapped vector env; ``"observation_space"`` is the encoded one."""
        if name == "observation_space":
            return (self.single_observation_space,) * self.num_envs
        return self.env.call(name, *args, **kwargs)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``get_attr`` of the wrapped vector env; ``"observation_space"`` is the encoded one."""
        if name == "observation_space":
            return (self.single_observation_space,) * self.num_envs
        return self.env.get_attr(name)

    def set_attr(self, name: str, values: Any) -> None:
        """``set_attr`` of the wrapped vector environment."""
        self.env.set_attr(name, values)


def multi_hot_encoder(
    observation_space: spaces.Dict, history: str = "multi_hot", recency_decay: float = 0.9, flatten: bool = False
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray] | np.ndarray]:
    """The encoding of :class:`MultiHotObservation` as a function, for raw observation batches.

    For code that builds ``MovieLensRec-v0`` observations itself (e.g. the simulator's start
    observations a ranking evaluation scores) and feeds a model trained on wrapped ones. The
    function's ``space`` attribute is the encoded observation space.

    :param observation_space: the raw ``MovieLensRec-v0`` Dict observation space
    :param history: as :class:`MultiHotObservation`
    :param recency_decay: as :class:`MultiHotObservation`
    :param flatten: as :class:`MultiHotObservation`
    """
    return _MultiHotEncoder(observation_space, history, recency_decay, flatten)
