"""The LSRWRL state encoder as an SB3 features extractor: long- and short-term interest."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.attention import POSITIONS, READOUTS, ShortTermEncoder
from agents.config import large_catalogue
from agents.deepfm import DeepFM

#: Observation keys this extractor reads (the ``MovieLensRec-v0`` Dict observation); ``"user"``
#: too when the dataset has user features (the observation of a dataset without has no such key).
OBSERVATION_KEYS: tuple[str, ...] = ("history", "liked")
#: Keys of a window batch for :meth:`LongShortExtractor.sequence_features` (see
#: :meth:`agents.next_item.LoggedNextItems.windows`); ``"user"`` too with user features.
WINDOW_KEYS: tuple[str, ...] = ("history", "history_liked", "liked_before")
#: Which interest vectors the features hold (``interests=``): both (the paper), or one of them
#: alone (an ablation).
INTERESTS: tuple[str, ...] = ("both", "long", "short")
#: How the liked set is pooled (``liked_pooling=``): through a dense multi-hot ``(B, N)`` or from
#: the liked items' ids (same values up to float rounding; see :class:`LongShortExtractor`), or
#: "auto" by the catalogue's size (:func:`agents.config.large_catalogue`). As
#: agents.config.ITEM_COMPUTES.
LIKED_POOLINGS: tuple[str, ...] = ("auto", "dense", "sparse")


def unpack_bits(packed: th.Tensor, n_items: int) -> th.Tensor:
    """Bool item mask of a packed-bit observation field (``liked`` or ``excluded``).

    Item ``i`` is bit ``i % 8`` (little bit order) of byte ``i // 8``, as
    ``np.packbits(mask, bitorder="little")`` writes it (the torch twin of
    :func:`recsim_env.unpack_bits`).

    :param packed: ``(B, ceil(n_items / 8))`` byte values, any dtype (SB3 hands them over as
        float32 after preprocessing; values must be integers in ``[0, 255]``)
    :param n_items: number of items ``N``
    :return: bool ``(B, N)``
    """
    codes = packed.round().to(th.uint8) if packed.is_floating_point() else packed.to(th.uint8)
    shifts = th.arange(8, dtype=th.uint8, device=packed.device)
    bits = (codes.unsqueeze(-1) >> shifts) & 1  # (B, L, 8), bit j of byte l = item 8l + j
    return bits.flatten(start_dim=1)[:, :n_items].bool()


def packed_item_indices(packed: th.Tensor, n_items: int) -> tuple[th.Tensor, th.Tensor]:
    """The set bits of a packed-bit observation field as ``(row, item)`` pairs, without a
    ``(B, N)`` intermediate: only the non-zero bytes are unpacked, so the cost is one pass over
    the ``(B, ceil(N / 8))`` bytes plus the set items.

    :param packed: ``(B, ceil(n_items / 8))`` byte values, any dtype (see :func:`unpack_bits`)
    :param n_items: number of items ``N`` (bits past it are ignored)
    :return: ``(rows, items)``, int64 ``(K,)`` each, rows ascending and items ascending within
        a row: exactly ``unpack_bits(packed, n_items).nonzero(as_tuple=True)``
    """
    codes = packed.round().to(th.uint8) if packed.is_floating_point() else packed.to(th.uint8)
    rows, byte = codes.nonzero(as_tuple=True)
    shifts = th.arange(8, dtype=th.uint8, device=packed.device)
    entry, bit = ((codes[rows, byte].unsqueeze(1) >> shifts) & 1).nonzero(as_tuple=True)
    items = byte[entry] * 8 + bit
    keep = items < n_items
    return rows[entry][keep], items[keep]


def packed_contains(packed: th.Tensor, items: th.Tensor) -> th.Tensor:
    """Whether each item is set in each row of a packed-bit field: ``unpack_bits(packed, N)[:, items]``
    read from the bytes of those items only.

    :param packed: ``(B, ceil(N / 8))`` byte values, any dtype (see :func:`unpack_bits`)
    :param items: int64 ``(K,)`` item indices in ``[0, N)``
    :return: bool ``(B, K)``
    """
    codes = packed.round().to(th.uint8) if packed.is_floating_point() else packed.to(th.uint8)
    return ((codes[:, items >> 3] >> (items & 7).to(th.uint8)) & 1).bool()


def unpack_liked_bits(liked: th.Tensor, n_items: int) -> th.Tensor:
    """Multi-hot liked-item matrix from the packed ``liked`` observation (see :func:`unpack_bits`).

    :param liked: ``(B, ceil(n_items / 8))`` byte values, any dtype
    :param n_items: number of items ``N``
    :return: float32 ``(B, N)`` with 1.0 where the item is liked
    """
    return unpack_bits(liked, n_items).to(th.float32)


class LongShortExtractor(BaseFeaturesExtractor):
    """LSRWRL state encoder: ``concat(long-term interest, short-term interest)``.

    Reads the ``MovieLensRec-v0`` Dict observation (``B`` = batch, ``n`` = history length,
    ``N`` = number of items, ``d`` = ``embed_dim``):

    ========= ===================== ==========================================================
    key       shape                 content
    ========= ===================== ==========================================================
    user      ``(B, F)``            user feature codes (cardinalities from the Box ``high``;
                                    MovieLens: gender, age group, occupation, 2, 7, 21); the
                                    key is absent for a dataset without user features
                                    (``F = 0``; a ``(0,)`` Box is accepted too)
    history   ``(B, n)``            last ``n`` item tokens (item + 1), 0 = padding, newest last
    liked     ``(B, ceil(N / 8))``  packed bits of the liked-item set (little bit order)
    ========= ===================== ==========================================================

    The ``excluded`` field (items that cannot be recommended now) is not an input of the
    interest encoder; the heads mask those items instead (``mask_excluded``, see
    :mod:`agents.masking`).

    **Short-term** (paper eqs. 2-5, :class:`~agents.attention.ShortTermEncoder`): token
    embeddings ``E`` (``(N + 1, d)``, row 0 = padding, kept at zero) plus sinusoidal positions,
    ``n_layers`` of masked ``n_heads``-head self-attention, average over real positions:
    ``(B, n) -> (B, n, d) -> (B, d)``. An empty history gives zeros.

    **Long-term** (paper eqs. 6-8, :class:`~agents.deepfm.DeepFM`): the liked set is unpacked to
    a multi-hot ``(B, N)`` and mean-pooled through the item table, ``m = multi_hot @ E[1:] /
    max(1, |liked|)``, ``(B, d)`` (zeros when nothing is liked). ``F + 1`` fields,
    ``(B, F + 1, d)``: one embedding per user feature (``d`` each; MovieLens: gender, age and
    occupation) and ``m``; first-order weights: one scalar per user-feature code and the mean of
    per-item scalars over the liked set, ``(B, F + 1)``. DeepFM returns ``y_FM + y_DNN``,
    ``(B, d)``. Without user features (``F = 0``) the long-term interest is DeepFM over the
    liked items alone.
    With ``liked_pooling="sparse"`` the same sums are taken over the liked items' ids instead
    (:func:`packed_item_indices` and an embedding bag): no ``(B, N)`` matrix, the cost grows
    with the liked items, not with the catalogue; the values equal the dense ones up to float
    rounding.

    **Output**: ``concat(long, short)`` (optionally layer-normalised), ``features_dim = 2 * embed_dim``;
    with ``interests="long"`` or ``"short"`` only that vector, ``features_dim = embed_dim`` (the
    other part is not computed).

    **Every prefix in one pass** (:meth:`sequence_features`, needs ``causal=True``): for a
    window of ``n`` logged items, the features of the state after each of them, ``(B, n, 2d)``.
    The short-term part is :meth:`~agents.attention.ShortTermEncoder.sequence_states`; the
    long-term part at position ``t`` pools the items liked before the window plus the window's
    liked items up to ``t`` (a cumulative mean), i.e. exactly the liked set of that prefix.

    :param observation_space: the environment's Dict observation space
    :param embed_dim: embedding size ``d`` of items, user features and both interest vectors
        (default 64)
    :param n_heads: attention heads; must divide ``embed_dim`` (default 1, as in the paper)
    :param n_layers: stacked self-attention layers (default 1, as in the paper)
    :param dropout: dropout probability in attention and the DeepFM DNN (default 0.0)
    :param dnn_hidden: hidden layer sizes of the DeepFM DNN part (default ``(128,)``)
    :param share_item_embeddings: one item table for both parts (default True) or two tables
    :param layer_norm: apply ``LayerNorm(2 * embed_dim)`` to the output (default False, as in
        the paper); it keeps the feature scale fixed while the embeddings and the quadratic
        FM term grow, which stabilises bootstrapped Q-learning
    :param embedding_init_std: standard deviation of the normal initialisation of the item and
        user-feature embeddings (default None: PyTorch's ``N(0, 1)``). Adam moves a weight by
        about the learning rate per step, so N(0, 1) item vectors hardly move in a few thousand
        steps and the items stay nearly random directions; SASRec-like small values (0.05) let
        them be learned
    :param causal: causal short-term attention (default False, as in the paper); needed by
        :meth:`sequence_features`
    :param readout: short-term readout, ``"mean"`` (default, as in the paper) or ``"last"``
    :param positions: ``"sinusoidal"`` (default, as in the paper), ``"learned"`` or ``"relative"``
    :param feed_forward: SASRec-style transformer blocks in the short-term part (default False;
        this and the three above: see :class:`~agents.attention.ShortTermEncoder`)
    :param interests: ``"both"`` (default, the paper), ``"long"`` or ``"short"``: which interest
        vectors form the features (one alone measures what the other contributes)
    :param liked_pooling: ``"dense"`` (default: a multi-hot ``(B, N)`` times the item table),
        ``"sparse"`` (an embedding bag over the liked items' ids; for large catalogues) or
        ``"auto"`` (sparse above :data:`agents.config.LARGE_CATALOGUE` items); the attribute
        holds the pooling used
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        embed_dim: int = 64,
        n_heads: int = 1,
        n_layers: int = 1,
        dropout: float = 0.0,
        dnn_hidden: Sequence[int] = (128,),
        share_item_embeddings: bool = True,
        layer_norm: bool = False,
        causal: bool = False,
        readout: str = "mean",
        positions: str = "sinusoidal",
        feed_forward: bool = False,
        embedding_init_std: float | None = None,
        interests: str = "both",
        liked_pooling: str = "dense",
    ) -> None:
        n_items, history_len, cardinalities = _check_space(observation_space)
        if interests not in INTERESTS:
            raise ValueError(f"interests={interests!r} is unknown; choose one of {INTERESTS}")
        if liked_pooling not in LIKED_POOLINGS:
            raise ValueError(f"liked_pooling={liked_pooling!r} is unknown; choose one of {LIKED_POOLINGS}")
        if embedding_init_std is not None and not embedding_init_std > 0:
            raise ValueError(f"embedding_init_std must be > 0 or None, got {embedding_init_std!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is unknown; choose one of {READOUTS}")
        if positions not in POSITIONS:
            raise ValueError(f"positions={positions!r} is unknown; choose one of {POSITIONS}")
        for name, value in (("embed_dim", embed_dim), ("n_heads", n_heads), ("n_layers", n_layers)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if any(int(h) < 1 for h in dnn_hidden):
            raise ValueError(f"dnn_hidden sizes must be >= 1, got {tuple(dnn_hidden)}")
        features_dim = 2 * embed_dim if interests == "both" else embed_dim
        super().__init__(observation_space, features_dim=features_dim)
        self.n_items = n_items
        self.embed_dim = embed_dim
        self.interests = interests
        self.liked_pooling = liked_pooling if liked_pooling != "auto" else (
            "sparse" if large_catalogue(n_items) else "dense")

        self.item_embedding = nn.Embedding(n_items + 1, embed_dim, padding_idx=0)
        self.long_item_embedding = (
            self.item_embedding
            if share_item_embeddings
            else nn.Embedding(n_items + 1, embed_dim, padding_idx=0)
        )
        self.short_term = ShortTermEncoder(
            self.item_embedding, history_len, n_heads, n_layers, dropout,
            causal=causal, readout=readout, positions=positions, feed_forward=feed_forward,
        )  # fmt: skip

        self.user_embeddings = nn.ModuleList(nn.Embedding(c, embed_dim) for c in cardinalities)
        self.user_first_order = nn.ModuleList(nn.Embedding(c, 1) for c in cardinalities)
        self.item_first_order = nn.Embedding(n_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.item_first_order.weight)
        for table in self.user_first_order:
            nn.init.zeros_(table.weight)
        self.deepfm = DeepFM(len(cardinalities) + 1, embed_dim, tuple(int(h) for h in dnn_hidden), dropout)
        self.output_norm = nn.LayerNorm(features_dim) if layer_norm else nn.Identity()
        if embedding_init_std is not None:
            tables = {id(t): t for t in (self.item_embedding, self.long_item_embedding, *self.user_embeddings)}
            with th.no_grad():
                for table in tables.values():
                    table.weight.normal_(0.0, float(embedding_init_std))
                    if table.padding_idx is not None:
                        table.weight[table.padding_idx].zero_()

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """:param observations: Dict of ``(B, ...)`` tensors (any numeric dtype)
        :return: ``(B, features_dim)`` features ``concat(long, short)`` (or the one selected)
        """
        parts = []
        if self.interests != "short":
            parts.append(self.long_term(observations))
        if self.interests != "long":
            parts.append(self.short_term(observations["history"].round().long()))
        return self.output_norm(th.cat(parts, dim=1))

    def long_term(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """Long-term interest ``(B, d)`` (DeepFM over user features and liked items)."""
        vec_sum, w_sum, count = self._liked_sums(observations["liked"])
        count = count.clamp(min=1.0)
        return self._deepfm(observations.get("user"), vec_sum / count, w_sum / count)

    def _liked_sums(self, packed: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Sums over the liked set of the packed ``(B, ceil(N / 8))`` field: item vectors
        ``(B, d)``, first-order weights ``(B, 1)`` and the count ``(B, 1)`` (``liked_pooling``)."""
        if self.liked_pooling == "dense":
            multi_hot = unpack_liked_bits(packed, self.n_items)  # (B, N)
            return (multi_hot @ self.long_item_embedding.weight[1:], multi_hot @ self.item_first_order.weight[1:],
                    multi_hot.sum(dim=1, keepdim=True))
        rows, items = packed_item_indices(packed, self.n_items)
        count = th.bincount(rows, minlength=packed.shape[0])
        offsets = count.cumsum(0) - count
        tokens = items + 1  # rows of the tables (row 0 is padding)
        vec = F.embedding_bag(tokens, self.long_item_embedding.weight, offsets, mode="sum")
        w = F.embedding_bag(tokens, self.item_first_order.weight, offsets, mode="sum")
        return vec, w, count.to(vec.dtype).unsqueeze(1)

    def _deepfm(self, user: th.Tensor | None, liked_vec: th.Tensor, liked_w: th.Tensor) -> th.Tensor:
        """DeepFM over the user-feature codes ``(M, F)`` (``None``: no user feature) and the pooled
        liked items ``(M, d)``, ``(M, 1)``."""
        if user is None and self.user_embeddings:
            raise KeyError("the observation has no 'user' field, but the observation space has user features")
        codes = user.round().long() if user is not None else None
        user_vecs = [table(codes[:, j]) for j, table in enumerate(self.user_embeddings)]
        user_w = [table(codes[:, j]) for j, table in enumerate(self.user_first_order)]
        fields = th.stack([*user_vecs, liked_vec], dim=1)  # (M, F + 1, d)
        first_order = th.cat([*user_w, liked_w], dim=1)  # (M, F + 1)
        return self.deepfm(fields, first_order)

    def sequence_features(self, windows: dict[str, th.Tensor]) -> th.Tensor:
        """Features of the state after every position of logged windows, in one pass.

        ``windows`` holds (``W`` = ``n``, the history length):

        ============== ===================== ==================================================
        key            shape                 content
        ============== ===================== ==================================================
        user           ``(B, F)``            user feature codes (absent without user features)
        history        ``(B, n)``            the window's item tokens, front-padded, newest last
        history_liked  ``(B, n)``            1 where the window's item is liked, else 0
        liked_before   ``(B, ceil(N / 8))``  packed liked set of the items *before* the window
        ============== ===================== ==================================================

        Row ``t`` is the state after the window's slot ``t``: short-term interest over slots
        ``0..t`` (:meth:`~agents.attention.ShortTermEncoder.sequence_states`), long-term interest
        over ``liked_before`` plus the liked window items of slots ``0..t``. The last row is
        exactly ``forward`` of the observation whose history is the window.

        :param windows: Dict of tensors as above (any numeric dtype)
        :return: ``(B, n, features_dim)``; rows of padding slots are not meaningful
        :raises ValueError: the short-term encoder is not causal
        :raises KeyError: a key of :data:`WINDOW_KEYS` is missing
        """
        if not self.short_term.causal:
            raise ValueError("sequence_features needs causal=True: a non-causal short-term encoder's "
                             "position outputs see later items")
        missing = [key for key in WINDOW_KEYS if key not in windows]
        if missing:
            raise KeyError(f"window batch lacks {missing}; it needs {list(WINDOW_KEYS)} "
                           "(agents.next_item.LoggedNextItems.windows builds them)")
        tokens = windows["history"].round().long()  # (B, n)
        batch, length = tokens.shape
        parts = []
        if self.interests != "short":
            parts.append(self._sequence_long_term(windows, tokens))
        if self.interests != "long":
            parts.append(self.short_term.sequence_states(tokens))  # (B, n, d)
        return self.output_norm(th.cat(parts, dim=2))

    def _sequence_long_term(self, windows: dict[str, th.Tensor], tokens: th.Tensor) -> th.Tensor:
        """Long-term interest after every window position, ``(B, n, d)`` (cumulative liked set)."""
        batch, length = tokens.shape
        before_vec, before_w, before_count = self._liked_sums(windows["liked_before"])  # items before the window
        liked = windows["history_liked"].to(th.float32) * (tokens > 0)  # (B, n)
        vec = before_vec.unsqueeze(1) + (
            self.long_item_embedding(tokens) * liked.unsqueeze(-1)).cumsum(dim=1)  # (B, n, d) sums
        w = before_w.unsqueeze(1) + (
            self.item_first_order(tokens) * liked.unsqueeze(-1)).cumsum(dim=1)  # (B, n, 1)
        count = (before_count + liked.cumsum(dim=1)).clamp(min=1.0).unsqueeze(-1)
        user = windows.get("user")
        if user is not None:
            n_features = user.shape[-1]  # explicit: a -1 cannot be inferred when it is 0
            user = user.unsqueeze(1).expand(batch, length, n_features).reshape(batch * length, n_features)
        long = self._deepfm(user, (vec / count).reshape(batch * length, -1), (w / count).reshape(batch * length, 1))
        return long.view(batch, length, -1)


def _check_space(space: spaces.Space) -> tuple[int, int, tuple[int, ...]]:
    """Validate the observation space; return ``(n_items, history_len, user cardinalities)``."""
    if not isinstance(space, spaces.Dict) or any(k not in space.spaces for k in OBSERVATION_KEYS):
        raise ValueError(
            f"LongShortExtractor needs a Dict observation space with keys {OBSERVATION_KEYS} "
            f"(the MovieLensRec-v0 observation), got {space}"
        )
    for key in OBSERVATION_KEYS:
        if not isinstance(space[key], spaces.Box) or len(space[key].shape) != 1:
            raise ValueError(f"observation '{key}' must be a 1-D Box, got {space[key]}")
    n_items = int(np.max(space["history"].high))
    history_len = int(space["history"].shape[0])
    n_bytes = int(space["liked"].shape[0])
    if n_bytes != (n_items + 7) // 8:
        raise ValueError(
            f"observation 'liked' has {n_bytes} bytes but 'history' tokens go up to n_items={n_items}, "
            f"which needs ceil(n_items / 8) = {(n_items + 7) // 8} bytes of packed bits"
        )
    user = space.spaces.get("user")
    if user is not None and (not isinstance(user, spaces.Box) or len(user.shape) != 1):
        raise ValueError(f"observation 'user' must be a 1-D Box, got {user}")
    cardinalities = () if user is None else tuple(int(h) + 1 for h in np.asarray(user.high).reshape(-1))
    return n_items, history_len, cardinalities
