"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), in PyTorch."""

from __future__ import annotations

import math

import torch
from torch import nn

from agents.baselines.sequential import SequenceNet, SequentialRecommender


class SASRecBlock(nn.Module):
    """One SASRec block: causal multi-head self-attention and a point-wise feed-forward net,
    each with a pre-LayerNorm and a residual connection (as in the authors' code)."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, causal: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)
        x = q + self.attn(q, x, x, attn_mask=causal, need_weights=False)[0]
        x = x + self.ffn(self.ffn_norm(x))
        return x * keep  # padding positions stay zero


class SASRecNet(SequenceNet):
    """Item embedding (scaled by sqrt(d)) + learned position embedding, ``n_blocks`` causal
    self-attention blocks, final LayerNorm; the output matrix is the input item embedding."""

    def __init__(self, n_items: int, dim: int, max_len: int, n_blocks: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SASRecBlock(dim, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(dim, eps=1e-8)
        self.scale = math.sqrt(dim)
        for name, param in self.named_parameters():  # Xavier init, as the authors' code
            if param.dim() > 1 and "norm" not in name:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        keep = (tokens > 0).unsqueeze(-1).float()
        positions = torch.arange(length, device=tokens.device) + self.pos_emb.num_embeddings - length
        x = self.item_emb(tokens) * self.scale + self.pos_emb(positions)
        x = self.emb_dropout(x) * keep
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), 1)
        for block in self.blocks:
            x = block(x, causal, keep)
        return self.final_norm(x)

    def output_items(self) -> tuple[torch.Tensor, None]:
        return self.item_emb.weight[1:], None

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item_emb]  # input and output (tied)


class SASRecRecommender(SequentialRecommender):
    """SASRec: causal multi-layer self-attention over the user's item sequence with learned
    positions; each training window is trained once with a next-item loss at every position.

    Loss: full softmax cross-entropy by default (``loss="ce"``; converges in far fewer epochs
    than the paper's one-negative BCE, which is available as ``loss="bce"``). Other settings
    follow the paper (2 blocks, 1 head, dropout 0.2, Adam), with ``dim=64``, ``max_len=50``
    for MovieLens-100K-sized data and a learning rate of 2e-3 (the paper's 1e-3 reaches the
    same validation NDCG@10 on ML-100K in about 1.5x the epochs).

    :param n_blocks: number of self-attention blocks (default 2)
    :param n_heads: attention heads per block (default 1)
    :param kwargs: training settings of :class:`~agents.baselines.sequential.SequentialRecommender`
        (``dim``, ``max_len``, ``dropout``, ``loss``, ``epochs``, ``lr``, ``seed``, ...) and its
        regime options: ``window_stride``, ``lr_schedule``, ``lr_end_factor``,
        ``embedding_init_std`` (the item embedding, which is also the output matrix),
        ``train_steps``, ``weight_decay``
    """

    name = "sasrec"

    def __init__(self, n_blocks: int = 2, n_heads: int = 1, **kwargs) -> None:
        kwargs.setdefault("lr", 2e-3)
        super().__init__(**kwargs)
        self.n_blocks = n_blocks
        self.n_heads = n_heads

    def build_network(self, n_items: int) -> SASRecNet:
        return SASRecNet(n_items, self.dim, self.max_len, self.n_blocks, self.n_heads, self.dropout)
