"""The on-policy algorithms: SB3's PPO and A2C and sb3-contrib's MaskablePPO with the supervised
next-item loss (:mod:`agents.supervised`) on the policy logits.

The update is the library's own ``train``; the next-item loss joins it at every gradient step:
right after the algorithm zeroes the gradients, ``next_item_weight * next_item_loss()`` is
back-propagated, so the algorithm's own ``loss.backward()`` adds to it, and its gradient
clipping and optimizer step see the sum, exactly as if the term were added to the
actor-critic loss (as SQN's and SA2C's actor-critic variants do). PPO and MaskablePPO take
one next-item batch per mini-batch, A2C one per rollout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO

from agents.supervised import NextItemMixin


class ActorCriticNextItemMixin(NextItemMixin):
    """The next-item loss and pre-training for an SB3 actor-critic algorithm (logits = the policy
    head's action logits on the shared extractor's features).

    :param next_item_weight: weight of the next-item loss added to the actor-critic loss (0: off)
    :param next_item_positions: ``"last"`` or ``"all"``, see :class:`~agents.supervised.NextItemMixin`
    :param next_item_batch_size: windows (or pairs) per next-item batch (None: ``batch_size``,
        64 for A2C)
    :param pretrain_steps: next-item gradient steps before the first environment step (0: none)
    :param pretrain_batch_size: samples per pre-training step (None: ``next_item_batch_size``)
    :param next_item_softmax: ``"full"`` (default), ``"sampled"`` or ``"auto"``, and
    :param next_item_negatives: negatives of the sampled softmax, see
        :class:`~agents.supervised.NextItemMixin`
    """

    def __init__(self, *args: Any, next_item_weight: float = 0.0, next_item_positions: str = "last",
                 next_item_batch_size: int | None = None, pretrain_steps: int = 0,
                 pretrain_batch_size: int | None = None, next_item_softmax: str = "full",
                 next_item_negatives: int | None = None, **kwargs: Any) -> None:
        self._init_next_item(next_item_weight, next_item_positions, next_item_batch_size, pretrain_steps,
                             pretrain_batch_size, next_item_softmax, next_item_negatives)
        super().__init__(*args, **kwargs)
        self._resolve_next_item_softmax()
        if self.next_item_weight > 0 or self.pretrain_steps > 0:
            if not getattr(self.policy, "share_features_extractor", True):
                raise ValueError("the next-item loss trains the policy's features extractor: build the "
                                 "policy with share_features_extractor=True (SB3's default)")
            self._check_next_item_network()

    def _next_item_extractor(self) -> th.nn.Module:
        return self.policy.pi_features_extractor

    def _item_logits(self, features: th.Tensor, items: th.Tensor | None = None) -> th.Tensor:
        latent = self.policy.mlp_extractor.forward_actor(features)
        if items is None:
            return self.policy.action_net(latent)
        head = self.policy.action_net
        return F.linear(latent, head.weight[items], head.bias[items])

    @property
    def masks_next_item(self) -> bool:
        # MaskablePPO acts on action_masks() (the items "excluded" does not hold), the masked
        # policies on "excluded" itself: the softmax runs over the items the policy can choose.
        return isinstance(self, MaskablePPO) or bool(getattr(self.policy, "mask_excluded", False))

    def train(self) -> None:
        """The algorithm's ``train`` with the next-item loss added to every gradient step."""
        if self.next_item_weight == 0:
            return super().train()  # type: ignore[misc]
        optimizer = self.policy.optimizer
        zero_grad = optimizer.zero_grad
        aux_losses: list[float] = []

        def zero_grad_then_next_item(*args: Any, **kwargs: Any) -> None:
            zero_grad(*args, **kwargs)
            loss = self.next_item_loss()
            aux_losses.append(loss.item())
            (self.next_item_weight * loss).backward()

        optimizer.zero_grad = zero_grad_then_next_item  # type: ignore[method-assign]
        try:
            super().train()  # type: ignore[misc]
        finally:
            del optimizer.zero_grad  # the optimizer's own method again
        if aux_losses:
            self.logger.record("train/next_item_loss", float(np.mean(aux_losses)))


class LSRPPO(ActorCriticNextItemMixin, PPO):
    """SB3 :class:`~stable_baselines3.PPO` with the next-item loss (see :class:`ActorCriticNextItemMixin`)."""


class LSRA2C(ActorCriticNextItemMixin, A2C):
    """SB3 :class:`~stable_baselines3.A2C` with the next-item loss (see :class:`ActorCriticNextItemMixin`)."""


class LSRMaskablePPO(ActorCriticNextItemMixin, MaskablePPO):
    """sb3-contrib :class:`~sb3_contrib.MaskablePPO` with the next-item loss (see
    :class:`ActorCriticNextItemMixin`); the loss's softmax runs over the items the logged state
    allows, the items ``action_masks()`` would allow there."""
