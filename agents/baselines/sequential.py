"""Shared training and scoring loop of the neural next-item baselines (SASRec, GRU4Rec, STAMP).

Each model is a :class:`SequenceNet`: it maps a batch of front-padded item-token sequences
``(B, L)`` (token = item + 1, 0 = padding, most recent last) to one query vector per position
``(B, L, d)``; the score of item ``j`` after position ``t`` is ``<q_t, W_j> + b_j`` with the
net's output item matrix ``W`` (``(n_items, d)``) and bias ``b``.

Training data: each user's **train** sequence, cut from its end into windows of
``max_len + 1`` items that overlap by one, so every train item after the first is a target
exactly once. A window is trained once per epoch with a loss at **every** position (the next
item of each prefix), not as separate prefix samples. Losses:

* ``"ce"`` (default): full softmax cross-entropy over all items at every position;
* ``"bce"``: SASRec's original loss, binary cross-entropy of the next item against one
  uniformly sampled negative item per position.

Scoring uses the last ``max_len`` train items of each user and the query of the last position.
Epochs are either fixed (``epochs``) or chosen by early stopping on a validation monitor
(``fit(split, monitor=...)``, used by :mod:`agents.baselines.tuning`).
"""

from __future__ import annotations

import abc
import contextlib
import copy
import time
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.baselines.base import Recommender
from recsim_env.dataset import Split

#: ``monitor(model) -> validation value`` (higher is better), called after an epoch.
Monitor = Callable[["SequentialRecommender"], float]


class SequenceNet(nn.Module, abc.ABC):
    """A next-item network: tokens ``(B, L)`` -> per-position query vectors ``(B, L, d)``."""

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """:param tokens: int64 ``(B, L)``, 0 = padding, most recent last
        :return: float ``(B, L, d)`` query vector after each position"""

    @abc.abstractmethod
    def output_items(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W, b)``: output item matrix ``(n_items, d)`` (row = item index) and bias or None."""

    def logits(self, queries: torch.Tensor) -> torch.Tensor:
        """Scores of every item, ``(..., n_items)``."""
        w, b = self.output_items()
        out = queries @ w.T
        return out if b is None else out + b


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (``None``: leave as is), then restore."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def last_tokens(split: Split, users: np.ndarray, length: int) -> np.ndarray:
    """The last ``length`` train items of each user as tokens, front-padded with 0.

    :param split: the split whose train sequences are read
    :param users: user indices ``(B,)``
    :param length: sequence length ``L``
    :return: int64 ``(B, L)``
    """
    out = np.zeros((len(users), length), dtype=np.int64)
    for row, u in enumerate(users):
        items = split.train_items[split.train_indptr[u] : split.train_indptr[u + 1]][-length:]
        if len(items):
            out[row, length - len(items) :] = items.astype(np.int64) + 1
    return out


def train_windows(split: Split, max_len: int) -> np.ndarray:
    """Every user's train sequence cut from the end into windows of ``max_len + 1`` tokens.

    Consecutive windows overlap by one item, so every train item except each user's first
    is a target exactly once; short windows are front-padded with 0.

    :param split: the split whose train sequences are read
    :param max_len: model input length ``L``
    :return: int64 ``(n_windows, max_len + 1)``
    """
    rows: list[np.ndarray] = []
    for u in range(split.n_users):
        seq = split.train_items[split.train_indptr[u] : split.train_indptr[u + 1]].astype(np.int64) + 1
        end = len(seq)
        while end >= 2:
            window = seq[max(0, end - max_len - 1) : end]
            rows.append(np.pad(window, (max_len + 1 - len(window), 0)))
            end -= max_len
    if not rows:
        raise ValueError("No user has 2 or more train items: nothing to train a sequence model on.")
    return np.stack(rows)


class SequentialRecommender(Recommender):
    """Base class of the PyTorch next-item baselines; subclasses implement :meth:`build_network`.

    :param dim: embedding / hidden size (default 64)
    :param max_len: input sequence length ``L`` (default 50)
    :param dropout: dropout rate (default 0.2)
    :param loss: ``"ce"`` full softmax cross-entropy (default) or ``"bce"`` one sampled negative
    :param epochs: training epochs; with a monitor, the maximum (default 50)
    :param batch_size: windows per gradient step (default 128)
    :param lr: Adam learning rate (default 1e-3)
    :param weight_decay: Adam L2 penalty (default 0.0)
    :param patience: with a monitor, stop after this many evaluations without improvement
        (default 4)
    :param num_threads: ``torch.set_num_threads`` during fit/score (default 1; None = unchanged)
    :param seed: seed of initialisation, shuffling, dropout and negative sampling (default 0)
    """

    def __init__(
        self,
        *,
        dim: int = 64,
        max_len: int = 50,
        dropout: float = 0.2,
        loss: str = "ce",
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 4,
        num_threads: int | None = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}.")
        if epochs < 1 or max_len < 1 or dim < 1 or batch_size < 1:
            raise ValueError("epochs, max_len, dim and batch_size must all be >= 1.")
        self.dim = dim
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.num_threads = num_threads
        self.seed = seed
        self.net_: SequenceNet | None = None
        self.loss_history_: list[float] = []
        self.monitor_history_: list[float] = []
        self.best_epoch_: int | None = None
        self.fit_seconds_: float | None = None

    @abc.abstractmethod
    def build_network(self, n_items: int) -> SequenceNet:
        """The untrained network for ``n_items`` items (token vocabulary ``n_items + 1``)."""

    def fit(self, split: Split, monitor: Monitor | None = None) -> SequentialRecommender:
        """Train on the train sequences of ``split``.

        :param split: the split; only its train part is read
        :param monitor: optional ``monitor(self) -> float`` (higher is better) evaluated after
            every epoch; training stops after ``patience`` epochs without improvement, the best
            weights are restored and their epoch count is stored in ``best_epoch_``
        :return: ``self``
        """
        start = time.perf_counter()
        with torch_threads(self.num_threads):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            self.split_ = split
            self.net_ = net = self.build_network(split.n_items)
            windows = torch.as_tensor(train_windows(split, self.max_len))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            self.loss_history_, self.monitor_history_ = [], []
            best_value, best_state, stale = -np.inf, None, 0
            for epoch in range(1, self.epochs + 1):
                net.train()
                total, count = 0.0, 0
                for idx in torch.randperm(len(windows), generator=gen).split(self.batch_size):
                    batch = windows[idx]
                    loss = self._loss(net, batch[:, :-1], batch[:, 1:], split.n_items, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total, count = total + loss.item() * len(idx), count + len(idx)
                self.loss_history_.append(total / count)
                if monitor is not None:
                    value = float(monitor(self))
                    self.monitor_history_.append(value)
                    if value > best_value:
                        best_value, stale = value, 0
                        best_state, self.best_epoch_ = copy.deepcopy(net.state_dict()), epoch
                    else:
                        stale += 1
                        if stale >= self.patience:
                            break
            if best_state is not None:
                net.load_state_dict(best_state)
            net.eval()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _loss(
        self, net: SequenceNet, inp: torch.Tensor, target: torch.Tensor, n_items: int, gen: torch.Generator
    ) -> torch.Tensor:
        valid = inp > 0  # front padding: a real input position always has a real target
        queries = net(inp)[valid]  # (N, d)
        pos = target[valid] - 1  # item indices
        if self.loss == "ce":
            return F.cross_entropy(net.logits(queries), pos)
        w, b = net.output_items()
        neg = torch.randint(0, n_items, pos.shape, generator=gen)
        pos_logit = (queries * w[pos]).sum(-1) + (0 if b is None else b[pos])
        neg_logit = (queries * w[neg]).sum(-1) + (0 if b is None else b[neg])
        return F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()

    @torch.no_grad()
    def score(self, users: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Next-item scores after each user's last ``max_len`` train items.

        :param users: user indices, int array ``(B,)``
        :param batch_size: users per forward pass (default 512)
        :return: float32 ``(B, n_items)`` logits
        """
        split = self._fitted_split()
        users = np.asarray(users)
        out = np.empty((len(users), split.n_items), dtype=np.float32)
        with torch_threads(self.num_threads):
            self.net_.eval()
            for lo in range(0, len(users), batch_size):
                tokens = torch.as_tensor(last_tokens(split, users[lo : lo + batch_size], self.max_len))
                out[lo : lo + len(tokens)] = self.net_.logits(self.net_(tokens)[:, -1]).numpy()
        return out

    @torch.no_grad()
    def score_states(self, observations: dict[str, np.ndarray], batch_size: int = 512) -> np.ndarray:
        """Next-item scores after each state's ``"history"`` tokens (the last ``history_len``
        consumed items, most recent last), cut or front-padded to ``max_len``.

        :param observations: Dict observation batch (leading axis ``B``)
        :param batch_size: states per forward pass (default 512)
        :return: float32 ``(B, n_items)`` logits
        """
        split = self._fitted_split()
        history = np.asarray(observations["history"], dtype=np.int64)
        length = history.shape[1]
        if length >= self.max_len:
            tokens_all = history[:, length - self.max_len :]
        else:
            tokens_all = np.pad(history, ((0, 0), (self.max_len - length, 0)))
        out = np.empty((len(history), split.n_items), dtype=np.float32)
        with torch_threads(self.num_threads):
            self.net_.eval()
            for lo in range(0, len(history), batch_size):
                tokens = torch.as_tensor(tokens_all[lo : lo + batch_size])
                out[lo : lo + len(tokens)] = self.net_.logits(self.net_(tokens)[:, -1]).numpy()
        return out
