"""Short-term interest: masked self-attention over the last ``n`` items (paper eqs. 2-5).

Shapes use ``B`` = batch, ``n`` = history length (20 by default), ``d`` = embedding size.
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


class MaskedSelfAttention(nn.Module):
    """Scaled dot-product self-attention with padded keys masked out (paper eqs. 4-5).

    ``Q = X W_Q, K = X W_K, V = X W_V`` (no biases), split into ``n_heads`` heads of size
    ``d_k = d / n_heads``; per head ``softmax(Q K^T / sqrt(d_k)) V`` where keys at padded
    positions get weight exactly 0; heads are concatenated back to size ``d``. There is no
    output projection: the extractor average-pools this output and the Q-network's first
    linear layer would absorb such a projection anyway.

    A query row whose keys are *all* padding (an empty history) has no defined softmax; its
    output is set to zeros instead of NaN.

    :param dim: model size ``d``
    :param n_heads: number of heads; must divide ``dim`` (default 1, as in the paper)
    :param dropout: dropout probability on the attention weights (default 0.0)
    """

    def __init__(self, dim: int, n_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads != 0:
            raise ValueError(f"embed_dim={dim} must be divisible by n_heads={n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: th.Tensor, mask: th.Tensor) -> th.Tensor:
        """Attend over the real positions of each sequence.

        :param x: inputs ``(B, n, d)``
        :param mask: bool ``(B, n)``, True at real (non-padding) positions
        :return: ``(B, n, d)``; rows of all-padding sequences are zeros
        """
        batch, length, _ = x.shape

        def heads(t: th.Tensor) -> th.Tensor:  # (B, n, d) -> (B, h, n, d_k)
            return t.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.w_q(x)), heads(self.w_k(x)), heads(self.w_v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, n, n)
        has_any = mask.any(dim=1)  # (B,)
        # Empty sequences attend to every slot (finite softmax), then get zeroed below.
        key_mask = (mask | ~has_any.unsqueeze(1))[:, None, None, :]  # (B, 1, 1, n)
        scores = scores.masked_fill(~key_mask, float("-inf"))
        weights = self.dropout(th.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(batch, length, self.dim)
        return out * has_any.to(out.dtype)[:, None, None]


class ShortTermEncoder(nn.Module):
    """Short-term interest vector from the recent item tokens (paper eqs. 2-5 + pooling).

    ``x_t = E[token_t] + p_t`` (eq. 2, sinusoidal ``p_t`` of eq. 3), then ``n_layers``
    stacked :class:`MaskedSelfAttention` layers (``X_{l+1} = Attention_l(X_l)``, the paper uses
    one), then the average over the *real* positions only. Padding tokens (0) are ignored
    everywhere: they are masked as keys, and their query rows are excluded from the pooling.

    :param item_embedding: shared ``nn.Embedding(n_items + 1, d, padding_idx=0)``
    :param history_len: number of slots ``n`` in the ``history`` observation
    :param n_heads: attention heads per layer (default 1)
    :param n_layers: stacked attention layers (default 1)
    :param dropout: dropout on the embedded inputs and attention weights (default 0.0)
    """

    def __init__(
        self,
        item_embedding: nn.Embedding,
        history_len: int,
        n_heads: int = 1,
        n_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dim = item_embedding.embedding_dim
        self.item_embedding = item_embedding
        self.register_buffer("positions", sinusoidal_positions(history_len, dim), persistent=False)
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(MaskedSelfAttention(dim, n_heads, dropout) for _ in range(n_layers))

    def forward(self, tokens: th.Tensor) -> th.Tensor:
        """:param tokens: int64 ``(B, n)`` item tokens, 0 = padding
        :return: ``(B, d)`` short-term interest (zeros for an empty history)
        """
        mask = tokens > 0
        x = self.input_dropout(self.item_embedding(tokens) + self.positions)
        for layer in self.layers:
            x = layer(x, mask)
        weights = mask.to(x.dtype)
        return (x * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
