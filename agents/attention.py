"""Short-term interest: masked self-attention over the last ``n`` items (paper eqs. 2-5).

Shapes use ``B`` = batch, ``n`` = history length (20 by default), ``d`` = embedding size.

The paper's encoder is :class:`ShortTermEncoder` with its defaults: one non-causal attention
layer, sinusoidal positions, mean over the real positions. The options (``causal``,
``readout``, ``positions``, ``feed_forward``) exist for the all-positions next-item loss:
with ``causal=True`` the output at position ``t`` depends on positions ``<= t`` only, so one
pass over a sequence (:meth:`ShortTermEncoder.sequence_states`) gives the state after every
prefix, as SASRec's training does.
"""

from __future__ import annotations

import math

import torch as th
from torch import nn


def sinusoidal_positions(length: int, dim: int) -> th.Tensor:
    """Sinusoidal position encoding of paper eq. 3 (Vaswani et al., 2017).

    ``P[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``P[pos, 2i+1] = cos(pos / 10000^(2i/d))``.

    :param length: number of positions ``n``
    :param dim: vector size ``d`` (odd sizes are allowed; the last column is then a sine)
    :return: float32 tensor ``(length, dim)``
    """
    position = th.arange(length, dtype=th.float32).unsqueeze(1)  # (n, 1)
    two_i = th.arange(0, dim, 2, dtype=th.float32)  # (ceil(d/2),)
    angle = position / th.pow(10000.0, two_i / dim)  # (n, ceil(d/2))
    table = th.zeros(length, dim)
    table[:, 0::2] = th.sin(angle)
    table[:, 1::2] = th.cos(angle[:, : dim // 2])
    return table


#: Position encodings :class:`ShortTermEncoder` accepts.
POSITIONS: tuple[str, ...] = ("sinusoidal", "learned", "relative")
#: Readouts of :class:`ShortTermEncoder` (how the ``n`` position outputs become one vector).
READOUTS: tuple[str, ...] = ("mean", "last")


class MaskedSelfAttention(nn.Module):
    """Scaled dot-product self-attention with padded keys masked out (paper eqs. 4-5).

    ``Q = X W_Q, K = X W_K, V = X W_V`` (no biases), split into ``n_heads`` heads of size
    ``d_k = d / n_heads``; per head ``softmax(Q K^T / sqrt(d_k) + R) V`` where keys at padded
    positions get weight exactly 0; heads are concatenated back to size ``d``. There is no
    output projection: the extractor average-pools this output and the Q-network's first
    linear layer would absorb such a projection anyway.

    ``R`` is 0 unless ``relative_positions`` is set: then ``R[h, t, j] = r[h, t - j]``, a learned
    bias per head and signed distance between query ``t`` and key ``j`` (zeros at the start). It
    encodes order by distance only, so a sequence shifted within the slots gives the same
    outputs (the extractor's all-positions states rely on this, see :class:`ShortTermEncoder`).

    A query row whose keys are *all* masked (an empty history; with ``causal``, a padding
    position before the first item) has no defined softmax; its output is set to zeros
    instead of NaN.

    :param dim: model size ``d``
    :param n_heads: number of heads; must divide ``dim`` (default 1, as in the paper)
    :param dropout: dropout probability on the attention weights (default 0.0)
    :param causal: query ``t`` attends to keys ``j <= t`` only (default False, as in the paper)
    :param relative_positions: longest sequence ``n`` of the learned distance bias ``R``
        (default 0: no bias)
    """

    def __init__(
        self, dim: int, n_heads: int = 1, dropout: float = 0.0, causal: bool = False, relative_positions: int = 0
    ) -> None:
        super().__init__()
        if dim % n_heads != 0:
            raise ValueError(f"embed_dim={dim} must be divisible by n_heads={n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.causal = bool(causal)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.max_len = int(relative_positions)
        # r[h, (t - j) + n - 1]: signed distances -(n-1) .. n-1.
        self.relative_bias = nn.Parameter(th.zeros(n_heads, 2 * self.max_len - 1)) if self.max_len else None

    def forward(self, x: th.Tensor, mask: th.Tensor) -> th.Tensor:
        """Attend over the real positions of each sequence.

        :param x: inputs ``(B, n, d)``
        :param mask: bool ``(B, n)``, True at real (non-padding) positions
        :return: ``(B, n, d)``; rows with no key to attend to are zeros
        """
        batch, length, _ = x.shape

        def heads(t: th.Tensor) -> th.Tensor:  # (B, n, d) -> (B, h, n, d_k)
            return t.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.w_q(x)), heads(self.w_k(x)), heads(self.w_v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, n, n)
        if self.relative_bias is not None:
            if length > self.max_len:
                raise ValueError(f"sequence length {length} exceeds relative_positions={self.max_len}")
            pos = th.arange(length, device=x.device)
            distance = pos[:, None] - pos[None, :] + self.max_len - 1  # (n, n)
            scores = scores + self.relative_bias[:, distance]  # (h, n, n) broadcast over B
        allowed = mask[:, None, None, :]  # (B, 1, 1, n): real keys
        if self.causal:
            allowed = allowed & th.ones(length, length, dtype=th.bool, device=x.device).tril()  # (B, 1, n, n)
        has_any = allowed.any(dim=-1, keepdim=True)  # per query row
        # Rows without a key attend to every slot (finite softmax), then get zeroed below.
        scores = scores.masked_fill(~(allowed | ~has_any), float("-inf"))
        weights = self.dropout(th.softmax(scores, dim=-1))
        out = (weights * has_any.to(weights.dtype)) @ v  # (B, h, n, d_k)
        return out.transpose(1, 2).reshape(batch, length, self.dim)


class TransformerBlock(nn.Module):
    """SASRec's block around :class:`MaskedSelfAttention`: ``x + Attn(LN(x))``, then
    ``x + FFN(LN(x))`` with a two-layer ReLU feed-forward net (size ``d``), padding rows
    kept at zero. Not in the paper, whose layer is the attention alone.

    :param dim: model size ``d``
    :param n_heads: attention heads
    :param dropout: dropout on the attention weights and in the feed-forward net
    :param causal: see :class:`MaskedSelfAttention`
    :param relative_positions: see :class:`MaskedSelfAttention`
    """

    def __init__(
        self, dim: int, n_heads: int = 1, dropout: float = 0.0, causal: bool = False, relative_positions: int = 0
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attention = MaskedSelfAttention(dim, n_heads, dropout, causal, relative_positions)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: th.Tensor, mask: th.Tensor) -> th.Tensor:
        """:param x: ``(B, n, d)``; :param mask: bool ``(B, n)`` real positions; :return: ``(B, n, d)``"""
        keep = mask.unsqueeze(-1).to(x.dtype)
        x = x + self.attention(self.attn_norm(x), mask)
        return (x + self.ffn(self.ffn_norm(x))) * keep


class ShortTermEncoder(nn.Module):
    """Short-term interest vector from the recent item tokens (paper eqs. 2-5 + pooling).

    ``x_t = E[token_t] + p_t`` (eq. 2), then ``n_layers`` stacked attention layers
    (``X_{l+1} = Attention_l(X_l)``, the paper uses one), then a readout. Padding tokens (0)
    are ignored everywhere: they are masked as keys, and their rows are excluded from the
    readout. The paper's encoder is the default; the options:

    * ``positions``: ``"sinusoidal"`` (eq. 3, fixed, by slot), ``"learned"`` (a trained table by
      slot, initialised to the sinusoidal one), ``"relative"`` (no ``p_t``; a learned attention
      bias per query-key distance in every layer, see :class:`MaskedSelfAttention`);
    * ``causal``: position ``t`` attends to positions ``<= t`` only;
    * ``readout``: ``"mean"`` over the real positions (the paper) or ``"last"`` (the newest
      item's position, ``n - 1`` in a front-padded history);
    * ``feed_forward``: each layer is a :class:`TransformerBlock` (residual connections,
      LayerNorms and a feed-forward net, as SASRec) instead of the bare attention, with a
      final LayerNorm.

    **States of every prefix.** With ``causal=True``, :meth:`sequence_states` turns a sequence
    of ``n`` tokens into ``n`` vectors in one pass, vector ``t`` being the readout after the
    first ``t + 1`` slots (a cumulative mean, or position ``t`` itself). With ``"relative"``
    positions it equals exactly what :meth:`forward` gives for those ``t + 1`` tokens
    front-padded to ``n`` slots (tested); with slot positions the tokens sit in other slots
    than in that history, as in SASRec's training.

    :param item_embedding: shared ``nn.Embedding(n_items + 1, d, padding_idx=0)``
    :param history_len: number of slots ``n`` in the ``history`` observation
    :param n_heads: attention heads per layer (default 1)
    :param n_layers: stacked attention layers (default 1)
    :param dropout: dropout on the embedded inputs and attention weights (default 0.0)
    :param causal: causal attention (default False, as in the paper)
    :param readout: ``"mean"`` (default, as in the paper) or ``"last"``
    :param positions: ``"sinusoidal"`` (default, as in the paper), ``"learned"`` or ``"relative"``
    :param feed_forward: transformer blocks instead of bare attention layers (default False)
    """

    def __init__(
        self,
        item_embedding: nn.Embedding,
        history_len: int,
        n_heads: int = 1,
        n_layers: int = 1,
        dropout: float = 0.0,
        causal: bool = False,
        readout: str = "mean",
        positions: str = "sinusoidal",
        feed_forward: bool = False,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is unknown; choose one of {READOUTS}")
        if positions not in POSITIONS:
            raise ValueError(f"positions={positions!r} is unknown; choose one of {POSITIONS}")
        dim = item_embedding.embedding_dim
        self.item_embedding = item_embedding
        self.history_len = int(history_len)
        self.causal = bool(causal)
        self.readout = readout
        self.positions = positions
        table = sinusoidal_positions(history_len, dim)
        if positions == "learned":
            self.position_table = nn.Parameter(table)
        else:  # "relative" adds no vectors; the buffer stays for the sinusoidal case
            self.register_buffer("position_table", table if positions == "sinusoidal" else th.zeros(1, dim),
                                 persistent=False)
        self.input_dropout = nn.Dropout(dropout)
        relative = history_len if positions == "relative" else 0
        layer = TransformerBlock if feed_forward else MaskedSelfAttention
        self.layers = nn.ModuleList(layer(dim, n_heads, dropout, causal, relative) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(dim) if feed_forward else nn.Identity()

    def position_outputs(self, tokens: th.Tensor) -> th.Tensor:
        """Outputs of the last layer at every slot, ``(B, n, d)``; zeros at padding slots."""
        mask = tokens > 0
        x = self.item_embedding(tokens)
        if self.positions != "relative":
            x = x + self.position_table[: tokens.shape[1]]
        x = self.input_dropout(x)
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_norm(x) * mask.unsqueeze(-1).to(x.dtype)

    def forward(self, tokens: th.Tensor) -> th.Tensor:
        """:param tokens: int64 ``(B, n)`` item tokens, 0 = padding, front-padded (newest last)
        :return: ``(B, d)`` short-term interest (zeros for an empty history)
        """
        x = self.position_outputs(tokens)
        if self.readout == "last":
            return x[:, -1]  # zeros when the history is empty (padding slot)
        weights = (tokens > 0).to(x.dtype)
        return (x * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)

    def sequence_states(self, tokens: th.Tensor) -> th.Tensor:
        """The readout after every prefix of the sequence, in one pass (needs ``causal=True``).

        :param tokens: int64 ``(B, n)`` front-padded item tokens
        :return: ``(B, n, d)``: row ``t`` is the short-term interest after slots ``0..t``
            (zeros where slot ``t`` is padding)
        :raises ValueError: the encoder is not causal (its outputs see later items)
        """
        if not self.causal:
            raise ValueError("sequence_states needs causal=True: a non-causal position output sees later items")
        x = self.position_outputs(tokens)
        if self.readout == "last":
            return x
        real = (tokens > 0).to(x.dtype).unsqueeze(-1)
        states = x.cumsum(dim=1) / real.cumsum(dim=1).clamp(min=1.0)
        return states * real
