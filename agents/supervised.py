"""The supervised next-item signal, shared by every algorithm of :mod:`agents.factory`.

Each gradient step of the RL loss can also draw logged train windows (or (state, next item)
pairs) and add ``next_item_weight`` times the cross-entropy of the item the user rated next
under a softmax over the algorithm's own item scores, so the ranking the agent acts on is the
one trained. The idea of SQN / SAC (Xin et al., SIGIR 2020) and of SA2C's actor-critic variants
(Xin et al., WSDM 2022). The item scores are

* DQN: the Q-values (through the dueling head's advantages), times a learned temperature;
* QR-DQN: the mean quantile (= the Q-value), times a learned temperature;
* PPO, A2C, MaskablePPO: the policy logits.

With ``next_item_softmax="sampled"`` the softmax over every item is replaced by a sampled
softmax (Bengio & Senecal 2008; Jean et al. 2015), whose cost does not grow with the catalogue:
each next-item batch draws ``K = next_item_negatives`` items with replacement from a proposal
``q`` (the items' train popularity plus one, :meth:`agents.next_item.LoggedNextItems.negatives`),
shared by all its positions, and each position's loss is the cross-entropy of its target among
``[s_target, s_j - log(K q_j) for the K draws]`` (the logQ correction), where a draw equal to
the target, or excluded at that position (with masking), is dropped. Unbiased in this sense:
the corrected sum ``sum_draws exp(s_j) / (K q_j)`` is an unbiased estimate of the full
softmax's normaliser over the other allowed items, ``sum_{j != target, allowed} exp(s_j)``; the
loss, the log of it plus the target's term, is then a consistent estimate of the full loss (its
bias, downwards by Jensen's inequality, shrinks as ``K`` grows). With ``K >= n_items`` every item
is drawn exactly once with a zero correction: the sampled loss is the full one.

``pretrain_steps`` gradient steps of the next-item loss alone run before the first environment
step: on the first :meth:`NextItemMixin.learn` call, or explicitly by
:meth:`NextItemMixin.pretrain`. The steps done are saved with the model, so a loaded model
does not pre-train again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.policies import BaseModel

from agents.config import DEFAULT_NEXT_ITEM_NEGATIVES, catalogue_size, large_catalogue
from agents.extractor import packed_contains, unpack_bits
from agents.masking import MASKED_VALUE, mask_excluded

#: ``source(batch_size) -> (observations, next items)``: logged data of the next-item loss. With
#: ``next_item_positions="all"`` it also needs ``source.windows(batch_size) -> (windows, targets)``
#: (:class:`agents.next_item.LoggedNextItems` has both).
NextItemSource = Callable[[int], tuple[dict[str, np.ndarray], np.ndarray]]

#: Where the next-item loss is taken: ``"last"`` one (prefix, next item) pair per sample,
#: ``"all"`` every position of a sampled window (needs a causal extractor).
NEXT_ITEM_POSITIONS: tuple[str, ...] = ("last", "all")
#: Softmax of the next-item loss: ``"full"`` over every item, ``"sampled"`` (module docstring), or
#: ``"auto"``: sampled above :data:`agents.config.LARGE_CATALOGUE` items.
NEXT_ITEM_SOFTMAXES: tuple[str, ...] = ("auto", "full", "sampled")


class NextItemMixin:
    """Next-item loss and pre-training for an SB3 algorithm (mixed in before the algorithm class).

    The algorithm class provides :meth:`_item_logits` (item logits of extractor features) and
    :meth:`_next_item_extractor`; it calls :meth:`_init_next_item` before SB3's constructor and
    adds ``next_item_weight * next_item_loss()`` to its loss in ``train``.

    :param next_item_weight: weight of the next-item loss added to the algorithm's loss
        (0: off)
    :param next_item_positions: ``"all"`` (a loss at every position of ``next_item_batch_size``
        logged windows, one causal pass each) or ``"last"`` (one logged pair per sample)
    :param next_item_batch_size: windows (or pairs) per next-item batch (None: the
        algorithm's ``batch_size``, or 64 where it has none)
    :param pretrain_steps: gradient steps of the next-item loss alone before the first
        environment step (0: none)
    :param pretrain_batch_size: windows (or pairs) per pre-training step (None: as
        ``next_item_batch_size``)
    :param next_item_softmax: ``"full"`` (over every item), ``"sampled"`` (module docstring) or
        ``"auto"`` (sampled above :data:`agents.config.LARGE_CATALOGUE` items); the attribute holds
        the softmax used. ``"sampled"`` without a next-item loss (weight 0, no pre-training) is an
        error
    :param next_item_negatives: draws of the sampled softmax per next-item batch (None: 1024);
        only with the sampled softmax
    """

    next_item_source: NextItemSource | None = None

    def _init_next_item(self, next_item_weight: float, next_item_positions: str,
                        next_item_batch_size: int | None, pretrain_steps: int,
                        pretrain_batch_size: int | None, next_item_softmax: str = "full",
                        next_item_negatives: int | None = None) -> None:
        if not (next_item_weight >= 0.0 and np.isfinite(next_item_weight)):
            raise ValueError(f"next_item_weight must be a finite number >= 0, got {next_item_weight!r}")
        if next_item_positions not in NEXT_ITEM_POSITIONS:
            raise ValueError(f"next_item_positions={next_item_positions!r} is unknown; choose one of "
                             f"{NEXT_ITEM_POSITIONS}")
        for name, value in (("next_item_batch_size", next_item_batch_size),
                            ("pretrain_batch_size", pretrain_batch_size)):
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
        if int(pretrain_steps) < 0:
            raise ValueError(f"pretrain_steps must be >= 0, got {pretrain_steps!r}")
        if next_item_softmax not in NEXT_ITEM_SOFTMAXES:
            raise ValueError(f"next_item_softmax={next_item_softmax!r} is unknown; choose one of {NEXT_ITEM_SOFTMAXES}")
        if next_item_negatives is not None and (isinstance(next_item_negatives, bool) or int(next_item_negatives) < 1):
            raise ValueError(f"next_item_negatives must be >= 1 or None, got {next_item_negatives!r}")
        if next_item_negatives is not None and next_item_softmax == "full":
            raise ValueError("next_item_negatives applies to the sampled softmax: drop it or pass "
                             "next_item_softmax='sampled'")
        if next_item_softmax == "sampled" and next_item_weight == 0 and int(pretrain_steps) == 0:
            raise ValueError("next_item_softmax='sampled' has no next-item loss to apply to (next_item_weight=0, "
                             "pretrain_steps=0): drop it or set next_item_weight > 0")
        self.next_item_weight = float(next_item_weight)
        self.next_item_positions = next_item_positions
        self.next_item_batch_size = None if next_item_batch_size is None else int(next_item_batch_size)
        self.pretrain_steps = int(pretrain_steps)
        self.pretrain_batch_size = None if pretrain_batch_size is None else int(pretrain_batch_size)
        self.pretrained_steps = 0  # saved with the model: a loaded model does not pre-train again
        self.next_item_source = None
        self.next_item_softmax = next_item_softmax
        self.next_item_negatives = None if next_item_negatives is None else int(next_item_negatives)

    def _resolve_next_item_softmax(self) -> None:
        """Decide ``"auto"`` for the action space's catalogue (after SB3's constructor; ``load``
        builds without a space and restores the saved choice)."""
        space = getattr(self, "action_space", None)
        if space is None:
            return
        n_items = catalogue_size(space)
        if self.next_item_softmax == "auto":  # "full" without a next-item loss: inert
            uses = self.next_item_weight > 0 or self.pretrain_steps > 0
            self.next_item_softmax = "sampled" if large_catalogue(n_items) and uses else "full"
            if self.next_item_softmax == "full" and self.next_item_negatives is not None:
                raise ValueError(f"next_item_negatives is set, but next_item_softmax='auto' is the full softmax on "
                                 f"{n_items:,} items: pass next_item_softmax='sampled' or drop next_item_negatives")
        if self.next_item_softmax == "sampled" and self.next_item_negatives is None:
            self.next_item_negatives = DEFAULT_NEXT_ITEM_NEGATIVES

    @property
    def uses_next_item_data(self) -> bool:
        """Whether training needs logged data (next-item loss or pre-training still to do)."""
        return self.next_item_weight > 0 or self.pretrained_steps < self.pretrain_steps

    # --- what each algorithm provides ---

    def _next_item_extractor(self) -> th.nn.Module:
        raise NotImplementedError

    def _item_logits(self, features: th.Tensor, items: th.Tensor | None = None) -> th.Tensor:
        """Unmasked next-item logits ``(M, n_items)`` of extractor features ``(M, F)``, or
        ``(M, K)`` of the items ``items`` (int64 ``(K,)``) alone."""
        raise NotImplementedError

    @property
    def masks_next_item(self) -> bool:
        """Whether the next-item softmax runs over the allowed items only (as the policy acts)."""
        raise NotImplementedError

    def _after_pretrain(self) -> None:
        """Called after :meth:`pretrain` (off-policy algorithms copy the target network)."""

    # --- shared ---

    def _check_next_item_network(self) -> None:
        extractor = self._next_item_extractor()
        if self.next_item_positions == "all" and not getattr(getattr(extractor, "short_term", None), "causal", False):
            raise ValueError("next_item_positions='all' needs a causal short-term encoder (the LSRWRL "
                             "extractor's): build the model with extractor_kwargs=dict(causal=True, ...)")

    def set_next_item_source(self, source: NextItemSource | None) -> None:
        """Attach the logged (state, next item) sampler of the next-item loss and pre-training.

        Not saved with the model (it holds data); attach it again after ``load``.

        :param source: ``source(batch_size) -> (observations, items)``, e.g.
            :class:`agents.next_item.LoggedNextItems`
        """
        self.next_item_source = source

    def next_item_loss(self, batch_size: int | None = None) -> th.Tensor:
        """Cross-entropy of the logged next items under the softmax of the item logits, mean
        over the labelled states (pairs, or every real position of the windows).

        With :attr:`masks_next_item` the softmax runs over the items the logged state allows
        (the logged next item never is excluded: one rating per user and item).

        :param batch_size: samples to draw (default: ``next_item_batch_size``, else
            ``batch_size``, else 64)
        """
        if self.next_item_source is None:
            raise RuntimeError(
                "the next-item loss (next_item_weight > 0 or pretrain_steps > 0) has no logged data: call "
                "model.set_next_item_source(LoggedNextItems(train_env)) before learn() or pretrain() "
                "(agents.make_agent attaches it)"
            )
        n = int(batch_size or self.next_item_batch_size or getattr(self, "batch_size", None) or 64)
        extractor = self._next_item_extractor()
        if self.next_item_positions == "all":
            windows, targets = self.next_item_source.windows(n)  # type: ignore[attr-defined]
            tensors = {k: th.as_tensor(v, device=self.device) for k, v in windows.items()}
            targets = th.as_tensor(targets, dtype=th.long, device=self.device)
            valid = targets >= 0  # (B, n): real positions
            if self.next_item_softmax == "sampled":
                excluded_at = (lambda items: window_excluded_at(tensors, valid, items)) if self.masks_next_item else None
                return self._sampled_cross_entropy(extractor.sequence_features(tensors)[valid], targets[valid],
                                                   excluded_at)
            logits = self._item_logits(extractor.sequence_features(tensors)[valid])  # (M, N)
            if self.masks_next_item:
                logits = logits.masked_fill(window_excluded(tensors, valid, logits.shape[1]), MASKED_VALUE)
            return F.cross_entropy(logits, targets[valid])
        observations, items = self.next_item_source(n)
        obs_tensor, _ = self.policy.obs_to_tensor(observations)
        if self.next_item_softmax == "sampled":
            excluded_at = (lambda negatives: packed_contains(obs_tensor["excluded"], negatives)) \
                if self.masks_next_item else None
            return self._sampled_cross_entropy(BaseModel.extract_features(self.policy, obs_tensor, extractor),
                                               th.as_tensor(items, dtype=th.long, device=self.device), excluded_at)
        logits = self._item_logits(BaseModel.extract_features(self.policy, obs_tensor, extractor))
        if self.masks_next_item:
            logits = mask_excluded(logits, obs_tensor)  # masked after scaling: stays finite
        return F.cross_entropy(logits, th.as_tensor(items, dtype=th.long, device=self.device))

    def _sampled_cross_entropy(self, features: th.Tensor, targets: th.Tensor,
                               excluded_at: Callable[[th.Tensor], th.Tensor] | None) -> th.Tensor:
        """The sampled softmax's cross-entropy (module docstring), mean over the ``M`` states.

        :param features: extractor features ``(M, F)`` of the labelled states
        :param targets: int64 ``(M,)``: each state's next item
        :param excluded_at: ``excluded_at(items) -> bool (M, K)``: the items each state excludes
            (None: no masking)
        """
        sample = getattr(self.next_item_source, "negatives", None)
        if sample is None:
            raise RuntimeError("next_item_softmax='sampled' draws its negatives with the next-item source's "
                               "negatives(k) (agents.next_item.LoggedNextItems has it); give the source one, or "
                               "use next_item_softmax='full'")
        negatives, log_expected = sample(self.next_item_negatives)
        negatives = th.as_tensor(negatives, dtype=th.long, device=self.device)
        m = targets.shape[0]
        logits = self._item_logits(features, th.cat([targets, negatives]))  # (M, M + K)
        positive = logits[:, :m].diagonal()
        negative = logits[:, m:] - th.as_tensor(log_expected, dtype=logits.dtype, device=self.device)
        drop = negatives.unsqueeze(0) == targets.unsqueeze(1)  # a draw of the target itself
        if excluded_at is not None:
            drop = drop | excluded_at(negatives)
        negative = negative.masked_fill(drop, MASKED_VALUE)
        return F.cross_entropy(th.cat([positive.unsqueeze(1), negative], dim=1),
                               th.zeros(m, dtype=th.long, device=self.device))

    def add_next_item_loss(self, loss: th.Tensor, record: list[float]) -> th.Tensor:
        """``loss + next_item_weight * next_item_loss()`` (``loss`` itself when the weight is 0);
        the next-item loss's value is appended to ``record``."""
        if self.next_item_weight == 0:
            return loss
        aux = self.next_item_loss()
        record.append(aux.item())
        return loss + self.next_item_weight * aux

    def pretrain(self, gradient_steps: int | None = None, batch_size: int | None = None) -> list[float]:
        """Train by the next-item loss alone (before ``learn``), with the algorithm's optimizer,
        learning rate and gradient clipping.

        :param gradient_steps: number of gradient steps (default: the ``pretrain_steps`` not
            done yet)
        :param batch_size: samples per step (default: ``pretrain_batch_size``, else as
            :meth:`next_item_loss`)
        :return: the loss of every step
        """
        if gradient_steps is None:
            gradient_steps = max(self.pretrain_steps - self.pretrained_steps, 0)
        self._check_next_item_network()
        self.policy.set_training_mode(True)
        max_norm = getattr(self, "max_grad_norm", None)
        losses = []
        for _ in range(int(gradient_steps)):
            loss = self.next_item_loss(batch_size or self.pretrain_batch_size)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            if max_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
            self.policy.optimizer.step()
        self.policy.set_training_mode(False)
        self.pretrained_steps += int(gradient_steps)
        self._after_pretrain()
        return losses

    def learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> Any:
        """SB3's ``learn``, after the ``pretrain_steps`` not done yet (see :meth:`pretrain`)."""
        if self.pretrained_steps < self.pretrain_steps:
            self.pretrain()
        return super().learn(total_timesteps, *args, **kwargs)  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "next_item_source"]  # type: ignore[misc]


def window_excluded(windows: dict[str, th.Tensor], valid: th.Tensor, n_items: int) -> th.Tensor:
    """Bool ``(M, n_items)``: the items excluded at each valid window position, i.e. the items
    before the window and the window's items up to that position. The target (the next logged
    item) is never among them (one rating per user and item), so no row is all excluded.

    :param windows: window tensors of :meth:`agents.next_item.LoggedNextItems.window_batch`
    :param valid: bool ``(B, n)``: the positions with a target
    :param n_items: catalogue size
    """
    tokens = windows["history"].long()  # (B, n)
    batch, length = tokens.shape
    row_of = th.full((batch, length), -1, dtype=th.long, device=tokens.device)
    row_of[valid] = th.arange(int(valid.sum()), device=tokens.device)
    excluded = unpack_bits(windows["excluded_before"], n_items)[valid.nonzero()[:, 0]]  # (M, N)
    # Pairs (position t, slot j <= t) with both real: slot j's item is excluded at position t.
    b, t, j = th.nonzero(valid.unsqueeze(2) & (tokens > 0).unsqueeze(1)
                         & th.ones(length, length, dtype=th.bool, device=tokens.device).tril(), as_tuple=True)
    excluded[row_of[b, t], tokens[b, j] - 1] = True
    return excluded


def window_excluded_at(windows: dict[str, th.Tensor], valid: th.Tensor, items: th.Tensor) -> th.Tensor:
    """Bool ``(M, K)``: :func:`window_excluded` at the items ``items`` (int64 ``(K,)``) only,
    without an ``(M, n_items)`` matrix.

    :param windows: window tensors of :meth:`agents.next_item.LoggedNextItems.window_batch`
    :param valid: bool ``(B, n)``: the positions with a target
    :param items: the items to look up
    """
    tokens = windows["history"].long()  # (B, n); padding 0 never equals a token item + 1 >= 1
    before = packed_contains(windows["excluded_before"], items)  # (B, K)
    seen = (tokens.unsqueeze(2) == (items + 1).view(1, 1, -1)).cumsum(dim=1) > 0  # slot j <= t, (B, n, K)
    return (before.unsqueeze(1) | seen)[valid]
