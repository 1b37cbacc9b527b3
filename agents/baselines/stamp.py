"""STAMP: short-term attention/memory priority model (Liu et al., KDD 2018), in PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from agents.baselines.sequential import SequenceNet, SequentialRecommender


class STAMPNet(SequenceNet):
    """For each prefix ``x_1..x_t`` of the sequence (all prefixes in parallel, causally masked):

    * general interest ``m_s = mean(x_1..x_t)``, short-term memory ``m_t = x_t`` (last item);
    * attention ``alpha_i = w_0 . sigmoid(W_1 x_i + W_2 x_t + W_3 m_s + b_a)`` for ``i <= t``,
      unnormalised as in the paper; attended memory ``m_a = sum_i alpha_i x_i``;
    * ``h_s = tanh(W_s m_a + b_s)``, ``h_t = tanh(W_t m_t + b_t)``;
    * trilinear score of candidate ``j``: ``<h_s, h_t, x_j> = (h_s * h_t) . x_j``, so the query
      is ``h_s * h_t`` and the output matrix is the item embedding itself.

    The paper squashes the trilinear score with a sigmoid before the softmax; the logits are
    used directly here (a sigmoid bounds them to (0, 1) and makes the softmax nearly flat).
    """

    def __init__(self, n_items: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.w1 = nn.Linear(dim, dim, bias=False)
        self.w2 = nn.Linear(dim, dim, bias=False)
        self.w3 = nn.Linear(dim, dim, bias=True)  # its bias is b_a
        self.w0 = nn.Linear(dim, 1, bias=False)
        self.mlp_s = nn.Linear(dim, dim)
        self.mlp_t = nn.Linear(dim, dim)
        for module in self.modules():  # the paper initialises every weight from N(0, 0.05)
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.05)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        real = (tokens > 0).float()  # (B, L)
        x = self.dropout(self.item_emb(tokens))  # (B, L, d); padding rows are zero
        m_s = x.cumsum(1) / real.cumsum(1).clamp(min=1).unsqueeze(-1)  # prefix means
        context = self.w2(x) + self.w3(m_s)  # depends on the prefix end t: (B, Lt, d)
        gate = torch.sigmoid(context.unsqueeze(2) + self.w1(x).unsqueeze(1))  # (B, Lt, Li, d)
        alpha = self.w0(gate).squeeze(-1)  # (B, Lt, Li)
        length = tokens.shape[1]
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=tokens.device))
        alpha = alpha * (causal.unsqueeze(0) & (tokens > 0).unsqueeze(1))
        m_a = alpha @ x  # (B, Lt, d)
        return torch.tanh(self.mlp_s(m_a)) * torch.tanh(self.mlp_t(x))

    def output_items(self) -> tuple[torch.Tensor, None]:
        return self.item_emb.weight[1:], None

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item_emb]  # input and output (the trilinear score's x_j)


class STAMPRecommender(SequentialRecommender):
    """STAMP: attention over the sequence with the last item as short-term memory and a
    trilinear output layer (see :class:`STAMPNet`). The paper trains on every prefix of a
    session; here every prefix of a window is computed in parallel with a causal mask, which
    gives the same losses in one pass. Loss: full softmax cross-entropy (the paper's) or
    ``loss="bce"``. ``max_len`` defaults to 20 (STAMP targets short-term interest).

    :param kwargs: training settings of :class:`~agents.baselines.sequential.SequentialRecommender`
        (``dim``, ``max_len``, ``dropout``, ``loss``, ``epochs``, ``lr``, ``seed``, ...) and its
        regime options: ``window_stride``, ``lr_schedule``, ``lr_end_factor``,
        ``embedding_init_std`` (the item embedding, also the output matrix; the paper's own
        init is N(0, 0.05^2) for every weight), ``train_steps``, ``weight_decay``
    """

    name = "stamp"

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_len", 20)
        kwargs.setdefault("dropout", 0.0)
        super().__init__(**kwargs)

    def build_network(self, n_items: int) -> STAMPNet:
        return STAMPNet(n_items, self.dim, self.dropout)
