"""GRU4Rec: session-based recommendation with a GRU (Hidasi et al., ICLR 2016), in PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from agents.baselines.sequential import SequenceNet, SequentialRecommender


class GRU4RecNet(SequenceNet):
    """Item embedding -> dropout -> GRU over the sequence -> dropout; the hidden state after
    each item scores the next item through a separate output item matrix with bias (the
    paper's feed-forward output layer)."""

    def __init__(self, n_items: int, dim: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=n_layers, batch_first=True)
        self.out_items = nn.Embedding(n_items, dim)
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        nn.init.xavier_normal_(self.item_emb.weight)
        nn.init.xavier_normal_(self.out_items.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.dropout(self.item_emb(tokens)))
        return self.dropout(hidden)

    def output_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.out_items.weight, self.out_bias

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item_emb, self.out_items]


class GRU4RecRecommender(SequentialRecommender):
    """GRU4Rec: a GRU reads the user's item sequence (the user's train history plays the role
    of the session); the hidden state after each item predicts the next one.

    Loss: full softmax cross-entropy at every position (``loss="ce"``, the cross-entropy
    variant of the paper's ranking losses), or ``loss="bce"`` with one sampled negative.
    Leading padding is fed as zero embeddings, so the state before the first item is learned.
    Adam's learning rate defaults to 5e-3 here (1e-3 for the other neural baselines).

    :param n_layers: stacked GRU layers (default 1, as in the paper)
    :param kwargs: training settings of :class:`~agents.baselines.sequential.SequentialRecommender`
        (``dim`` = hidden size, ``max_len``, ``dropout``, ``loss``, ``epochs``, ``lr``, ``seed``, ...)
        and its regime options: ``window_stride``, ``lr_schedule``, ``lr_end_factor``,
        ``embedding_init_std`` (both the input item embedding and the output item matrix),
        ``train_steps``, ``weight_decay``
    """

    name = "gru4rec"

    def __init__(self, n_layers: int = 1, **kwargs) -> None:
        kwargs.setdefault("lr", 5e-3)  # at 1e-3 it lingers for ~10 epochs near popularity
        super().__init__(**kwargs)
        self.n_layers = n_layers

    def build_network(self, n_items: int) -> GRU4RecNet:
        return GRU4RecNet(n_items, self.dim, self.n_layers, self.dropout)
