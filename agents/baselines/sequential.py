"""Shared training and scoring loop of the neural next-item baselines (SASRec, GRU4Rec, STAMP).

Each model is a :class:`SequenceNet`: it maps a batch of front-padded item-token sequences
``(B, L)`` (token = item + 1, 0 = padding, most recent last) to one query vector per position
``(B, L, d)``; the score of item ``j`` after position ``t`` is ``<q_t, W_j> + b_j`` with the
net's output item matrix ``W`` (``(n_items, d)``) and bias ``b``.

Training data: windows of ``max_len + 1`` items of each user's **train** sequence, ending at
the last train item and at every ``window_stride``-th item before it. The default stride,
``max_len``, is the papers' cut: non-overlapping windows (they share one item), so every train
item after the first is a target exactly once per epoch; ``window_stride=1`` puts a window end
at every logged prefix (LSRWRL's regime), so a target sits in up to ``max_len`` windows. A
window is trained with a loss at **every** position (the next item of each prefix), not as
separate prefix samples. Losses:

* ``"ce"`` (default): full softmax cross-entropy over all items at every position;
* ``"bce"``: SASRec's original loss, binary cross-entropy of the next item against one
  uniformly sampled negative item per position.

Training length: ``epochs`` passes over the windows (the papers'), or ``train_steps`` optimizer
steps (LSRWRL's "long training counted in steps"). The learning rate is constant (the papers'
Adam) or decays linearly or by a cosine to ``lr * lr_end_factor`` over the planned steps. An
optional monitor (``fit(split, monitor=...)``, used by :mod:`agents.baselines.tuning`) is
evaluated after every epoch (or every ``monitor_every`` steps) for early stopping or, with
``patience=None``, only to report the validation curve.

Scoring uses the last ``max_len`` train items of each user and the query of the last position.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import math
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

    @abc.abstractmethod
    def item_tables(self) -> list[nn.Embedding]:
        """The item embedding tables (input and, where separate, output): what
        ``embedding_init_std`` re-initialises."""

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


def train_windows(split: Split, max_len: int, stride: int | None = None) -> np.ndarray:
    """Windows of ``max_len + 1`` tokens of every user's train sequence, ending at its last
    item and at every ``stride``-th item before it (windows that would hold fewer than 2 items
    are not made); short windows are front-padded with 0.

    With ``stride = max_len`` (the default) consecutive windows overlap by one item, so every
    train item except each user's first is a target exactly once; with ``stride = 1`` a window
    ends at every prefix of 2 or more items.

    :param split: the split whose train sequences are read
    :param max_len: model input length ``L``
    :param stride: items between consecutive window ends, ``1 <= stride <= max_len``
        (default ``max_len``)
    :return: int32 ``(n_windows, max_len + 1)``
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"window stride must be in [1, max_len={max_len}], got {stride}.")
    rows: list[np.ndarray] = []
    for u in range(split.n_users):
        seq = split.train_items[split.train_indptr[u] : split.train_indptr[u + 1]].astype(np.int32) + 1
        end = len(seq)
        while end >= 2:
            window = seq[max(0, end - max_len - 1) : end]
            rows.append(np.pad(window, (max_len + 1 - len(window), 0)))
            end -= stride
    if not rows:
        raise ValueError("No user has 2 or more train items: nothing to train a sequence model on.")
    return np.stack(rows)


#: Learning-rate schedules of :class:`SequentialRecommender`.
LR_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


def lr_factor(schedule: str, step: int, total: int, end_factor: float) -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based) of ``total``.

    :param schedule: ``"constant"`` (1), ``"linear"`` or ``"cosine"`` decay from 1 at step 0
        to ``end_factor`` at step ``total``
    :param step: optimizer steps already taken
    :param total: planned optimizer steps
    :param end_factor: the floor reached at ``total``, in ``[0, 1]``
    """
    if schedule == "constant":
        return 1.0
    progress = min(step / max(total, 1), 1.0)
    if schedule == "linear":
        return 1.0 - (1.0 - end_factor) * progress
    return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class SequentialRecommender(Recommender):
    """Base class of the PyTorch next-item baselines; subclasses implement :meth:`build_network`.

    The defaults are the papers' regime (every model's own defaults are in its docstring):
    non-overlapping windows, Adam at a constant learning rate, the paper's initialisation, a
    number of epochs. The regime options offer LSRWRL's training regime to every model: windows
    ending at every prefix (``window_stride=1``), a learning rate decaying to a floor
    (``lr_schedule``, ``lr_end_factor``), small initial item embeddings
    (``embedding_init_std``), long training counted in optimizer steps (``train_steps``).

    :param dim: embedding / hidden size (default 64)
    :param max_len: input sequence length ``L`` (default 50)
    :param dropout: dropout rate (default 0.2)
    :param loss: ``"ce"`` full softmax cross-entropy (default) or ``"bce"`` one sampled negative
    :param epochs: training epochs (passes over the windows); with a monitor, the maximum
        (default 50 unless ``train_steps`` is given; not both)
    :param batch_size: windows per gradient step (default 128)
    :param lr: Adam learning rate (default 1e-3)
    :param weight_decay: Adam L2 penalty added to the gradients (default 0.0)
    :param patience: with a monitor, stop after this many evaluations without improvement and
        restore the best weights (default 4); ``None``: never stop early, keep the final weights
        (the monitor only records the validation curve)
    :param num_threads: ``torch.set_num_threads`` during fit/score (default 1; None = unchanged)
    :param seed: seed of initialisation, shuffling, dropout and negative sampling (default 0)
    :param window_stride: items between the ends of consecutive training windows, ``1 ..
        max_len`` (default ``None`` = ``max_len``: the papers' non-overlapping windows, each
        target once per epoch; ``1``: a window ending at every logged prefix)
    :param lr_schedule: ``"constant"`` (default), ``"linear"`` or ``"cosine"`` decay of the
        learning rate over the planned optimizer steps (``train_steps``, or ``epochs`` times
        the steps of one epoch), from ``lr`` to ``lr * lr_end_factor``
    :param lr_end_factor: floor of a decaying schedule as a fraction of ``lr``, in ``[0, 1]``
        (default ``None`` = 0 for a decay; not taken by ``"constant"``)
    :param embedding_init_std: re-draw the item embedding tables (:meth:`SequenceNet.item_tables`)
        from ``N(0, std^2)`` after the paper's initialisation (padding row 0); default ``None``
        keeps the paper's initialisation (LSRWRL uses 0.05)
    :param train_steps: train for this many optimizer steps instead of ``epochs`` (reshuffling
        the windows at every pass); default ``None`` (epochs)
    """

    def __init__(
        self,
        *,
        dim: int = 64,
        max_len: int = 50,
        dropout: float = 0.2,
        loss: str = "ce",
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int | None = 4,
        num_threads: int | None = 1,
        seed: int = 0,
        window_stride: int | None = None,
        lr_schedule: str = "constant",
        lr_end_factor: float | None = None,
        embedding_init_std: float | None = None,
        train_steps: int | None = None,
    ) -> None:
        super().__init__()
        if loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}.")
        if epochs is not None and train_steps is not None:
            raise ValueError(f"give epochs ({epochs}) or train_steps ({train_steps}), not both: they are two "
                             "ways to set the training length.")
        if epochs is None and train_steps is None:
            epochs = 50
        if (epochs is not None and epochs < 1) or max_len < 1 or dim < 1 or batch_size < 1:
            raise ValueError("epochs, max_len, dim and batch_size must all be >= 1.")
        if train_steps is not None and train_steps < 1:
            raise ValueError(f"train_steps must be >= 1 (or None for epochs), got {train_steps}.")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 (or None: no early stopping), got {patience}.")
        if window_stride is not None and not 1 <= window_stride <= max_len:
            raise ValueError(f"window_stride must be in [1, max_len={max_len}] (or None = max_len), "
                             f"got {window_stride}.")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}.")
        if lr_end_factor is not None:
            if lr_schedule == "constant":
                raise ValueError("lr_end_factor is the floor of a decaying schedule; lr_schedule='constant' has "
                                 "none: drop lr_end_factor or choose 'linear' or 'cosine'.")
            if not 0.0 <= lr_end_factor <= 1.0:
                raise ValueError(f"lr_end_factor must be in [0, 1], got {lr_end_factor}.")
        if embedding_init_std is not None and not embedding_init_std > 0:
            raise ValueError(f"embedding_init_std must be > 0 (or None: the paper's init), got {embedding_init_std}.")
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
        self.window_stride = window_stride
        self.lr_schedule = lr_schedule
        self.lr_end_factor = lr_end_factor
        self.embedding_init_std = embedding_init_std
        self.train_steps = train_steps
        self.net_: SequenceNet | None = None
        self.loss_history_: list[float] = []
        self.monitor_history_: list[float] = []
        self.monitor_steps_: list[int] = []
        self.best_epoch_: int | None = None
        self.best_step_: int | None = None
        self.step_: int = 0
        self.total_steps_: int | None = None
        self.fit_seconds_: float | None = None

    @abc.abstractmethod
    def build_network(self, n_items: int) -> SequenceNet:
        """The untrained network for ``n_items`` items (token vocabulary ``n_items + 1``)."""

    def fit(self, split: Split, monitor: Monitor | None = None, monitor_every: int | None = None) -> SequentialRecommender:
        """Train on the train sequences of ``split``.

        :param split: the split; only its train part is read
        :param monitor: optional ``monitor(self) -> float`` (higher is better), evaluated after
            every epoch (or every ``monitor_every`` steps); ``step_`` holds the optimizer steps
            done so far, ``total_steps_`` the planned ones. With ``patience``, training stops after ``patience`` evaluations
            without improvement and the best weights are restored; their epoch count is stored
            in ``best_epoch_`` (epoch-end evaluations) and their step count in ``best_step_``.
            A decaying schedule is planned over the full length, so restored weights come from
            part-way through the decay: to choose the length of a decaying schedule, compare
            ``train_steps`` values (as :mod:`experiments.equal_budget` does) rather than stop early
        :param monitor_every: with ``train_steps``, evaluate the monitor every this many
            optimizer steps and after the last one (default: after every pass over the windows,
            and after the last step)
        :return: ``self``
        """
        if monitor_every is not None:
            if self.train_steps is None:
                raise ValueError("monitor_every counts optimizer steps: it needs train_steps (with epochs the "
                                 "monitor runs after every epoch).")
            if monitor_every < 1:
                raise ValueError(f"monitor_every must be >= 1, got {monitor_every}.")
        start = time.perf_counter()
        with torch_threads(self.num_threads):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            self.split_ = split
            self.net_ = net = self.build_network(split.n_items)
            if self.embedding_init_std is not None:
                with torch.no_grad():
                    for table in net.item_tables():
                        nn.init.normal_(table.weight, std=self.embedding_init_std)
                        if table.padding_idx is not None:
                            table.weight[table.padding_idx].zero_()
            windows = torch.as_tensor(train_windows(split, self.max_len, self.window_stride))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            steps_per_epoch = math.ceil(len(windows) / self.batch_size)
            total_steps = self.train_steps if self.train_steps is not None else self.epochs * steps_per_epoch
            self.total_steps_ = total_steps
            end_factor = 0.0 if self.lr_end_factor is None else self.lr_end_factor
            schedule = None if self.lr_schedule == "constant" else torch.optim.lr_scheduler.LambdaLR(
                opt, lambda step: lr_factor(self.lr_schedule, step, total_steps, end_factor))
            self.loss_history_, self.monitor_history_, self.monitor_steps_ = [], [], []
            self.best_epoch_ = self.best_step_ = None
            self.step_ = 0
            best_value, best_state, stale, stop = -np.inf, None, 0, False

            def evaluate(epoch_end: int | None) -> bool:
                """Run the monitor; return whether to stop early."""
                nonlocal best_value, best_state, stale
                value = float(monitor(self))
                net.train()  # the monitor scores in eval mode
                self.monitor_history_.append(value)
                self.monitor_steps_.append(self.step_)
                if value > best_value:
                    best_value, stale = value, 0
                    self.best_epoch_, self.best_step_ = epoch_end, self.step_
                    if self.patience is not None:
                        best_state = copy.deepcopy(net.state_dict())
                    return False
                stale += 1
                return self.patience is not None and stale >= self.patience

            epoch = 0
            while self.step_ < total_steps and not stop:
                epoch += 1
                net.train()
                total, count, batches = 0.0, 0, 0
                for idx in torch.randperm(len(windows), generator=gen).split(self.batch_size):
                    batches += 1
                    batch = windows[idx].long()
                    loss = self._loss(net, batch[:, :-1], batch[:, 1:], split.n_items, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if schedule is not None:
                        schedule.step()
                    self.step_ += 1
                    total, count = total + loss.item() * len(idx), count + len(idx)
                    if self.step_ >= total_steps:
                        break
                    if monitor is not None and monitor_every is not None and self.step_ % monitor_every == 0:
                        if stop := evaluate(None):
                            break
                self.loss_history_.append(total / count)
                if monitor is not None and not stop and (monitor_every is None or self.step_ >= total_steps):
                    stop = evaluate(epoch if batches == steps_per_epoch else None)  # epoch: a whole pass
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
