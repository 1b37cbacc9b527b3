"""The off-policy algorithms: SB3's DQN and sb3-contrib's QR-DQN with masked exploration, masked
TD targets and the supervised next-item loss (:mod:`agents.supervised`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from sb3_contrib import QRDQN
from sb3_contrib.common.utils import quantile_huber_loss
from stable_baselines3 import DQN

from agents.config import ITEM_COMPUTES, catalogue_size, large_catalogue
from agents.masking import acting_values, excluded_indices
from agents.policies import (DuelingQNetwork, MaskedQuantileNetwork, action_q_values, best_items, greedy_q_values,
                             item_layer)
from agents.supervised import NextItemMixin

#: TD losses :class:`LSRDQN` accepts.
TD_LOSSES: tuple[str, ...] = ("huber", "mse")

class MaskedEpsilonGreedyMixin:
    """Epsilon-greedy data collection restricted to the environment's ``action_masks()``.

    For the off-policy algorithms (mixed into :class:`LSRDQN` and :class:`LSRQRDQN`). With
    ``mask_actions=True`` the behaviour policy, per environment, takes a uniformly random
    *allowed* item with probability epsilon (always during the ``learning_starts`` warm-up) and
    otherwise the allowed item with the highest Q-value (mean quantile for QR-DQN). Allowed =
    ``action_masks()``: not in the history, not yet recommended this episode; the masks never
    reveal targets. SB3's own collection (``mask_actions=False``) draws over all items and
    flips one coin for all environments, and its greedy part repeats the same unwanted item
    until the episode is truncated unless the network masks excluded items itself
    (``mask_excluded``, which also masks the training targets; this mixin does not change them).
    """

    mask_actions: bool

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1):
        if not self.mask_actions:
            return super()._sample_action(learning_starts, action_noise, n_envs)  # type: ignore[misc]
        if getattr(self, "item_compute", "dense") == "sparse":
            return self._sample_action_sparse(learning_starts, n_envs)
        from sb3_contrib.common.maskable.utils import get_action_masks

        from agents.scoring import score_observations

        masks = np.asarray(get_action_masks(self.env), dtype=bool).reshape(n_envs, -1)
        eps = 1.0 if self.num_timesteps < learning_starts else self.exploration_rate
        explore = np.random.rand(n_envs) < eps
        actions = np.zeros(n_envs, dtype=np.int64)
        if not explore.all():
            scores = score_observations(self, self._last_obs)  # (n_envs, n_items)
            actions = np.where(masks, scores, -np.inf).argmax(axis=1)
        for i in np.flatnonzero(explore):
            allowed = np.flatnonzero(masks[i])
            actions[i] = np.random.choice(allowed) if allowed.size else np.random.randint(masks.shape[1])
        return actions, actions

    def _sample_action_sparse(self, learning_starts: int, n_envs: int):
        """The same masked epsilon-greedy choice without ``(n_envs, n_items)`` masks: the allowed
        items are the complement of the observation's ``"excluded"`` field (what
        ``action_masks()`` returns), the greedy part ranks the items of the environments that do
        not explore by their advantage / Q-value (:func:`~agents.policies.item_layer`), masked
        from the excluded items' indices. The draws are those of the dense path."""
        from recsim_env import unpack_bits

        obs = self._last_obs
        n_items = int(self.action_space.n)
        eps = 1.0 if self.num_timesteps < learning_starts else self.exploration_rate
        explore = np.random.rand(n_envs) < eps
        actions = np.zeros(n_envs, dtype=np.int64)
        greedy = np.flatnonzero(~explore)
        if greedy.size:
            self.policy.set_training_mode(False)
            obs_tensor, _ = self.policy.obs_to_tensor({key: value[greedy] for key, value in obs.items()})
            with th.no_grad():
                net = self.q_net
                hidden, weight, bias = item_layer(net, net.extract_features(obs_tensor, net.features_extractor))
                _, best = best_items(hidden, weight, bias, excluded_indices(obs_tensor, n_items))
                actions[greedy] = best.cpu().numpy()
        for i in np.flatnonzero(explore):
            allowed = np.flatnonzero(~unpack_bits(obs["excluded"][i], n_items, "excluded"))
            actions[i] = np.random.choice(allowed) if allowed.size else np.random.randint(n_items)
        return actions, actions


class OffPolicyNextItemMixin(NextItemMixin):
    """The next-item hooks of :class:`LSRDQN` and :class:`LSRQRDQN`: logits from the online
    network's ``next_item_logits`` over its extractor, the softmax masked as the network acts,
    the target network copied after pre-training. Class attributes name the two networks, the
    network class the loss needs and how to get it."""

    _online: str
    _target: str
    _network: type
    _network_hint: str

    def _check_next_item_network(self) -> None:
        if not isinstance(getattr(self, self._online), self._network):
            raise ValueError(f"next_item_weight > 0 (or pretrain_steps > 0) needs {self._network_hint}")
        super()._check_next_item_network()

    def _next_item_extractor(self) -> th.nn.Module:
        return getattr(self, self._online).features_extractor

    def _item_logits(self, features: th.Tensor, items: th.Tensor | None = None) -> th.Tensor:
        return getattr(self, self._online).next_item_logits(features, items)

    @property
    def masks_next_item(self) -> bool:
        return self.mask_excluded

    def _after_pretrain(self) -> None:
        getattr(self, self._target).load_state_dict(getattr(self, self._online).state_dict())


class LSRDQN(OffPolicyNextItemMixin, MaskedEpsilonGreedyMixin, DQN):
    """SB3 :class:`~stable_baselines3.DQN` with a selectable TD loss, optional double Q-learning
    and masked exploration.

    The update is SB3's ``DQN.train`` (same replay sampling, target network, gradient
    clipping) with two options: the loss (SB3 always uses Huber; the paper's eq. 10 is the mean
    squared error) and the next-state value (eq. 9 takes ``max_a Q_target(s', a)``; double
    Q-learning evaluates the online network's argmax with the target network instead, which
    curbs the upward bias of a max over thousands of noisy item values).

    :param td_loss: ``"huber"`` (SB3's smooth L1, gradient clipped at ``|TD error| = 1``) or
        ``"mse"`` (paper eq. 10); both average over the mini-batch
    :param double_q: use the double Q-learning target (default False: eq. 9)
    :param mask_actions: collect experience with :class:`MaskedEpsilonGreedyMixin`
        (default False: SB3's epsilon-greedy over all items)
    :param next_item_weight: weight of an auxiliary supervised next-item loss added to the
        TD loss (default 0.0: off; :mod:`agents.supervised`). Each gradient step also draws
        logged states from :meth:`set_next_item_source` (train-sequence prefixes and the items
        the user rated next) and adds ``next_item_weight`` times the cross-entropy of
        ``softmax(c * Q(s, .))`` against those items, with a learned temperature ``c``. The TD
        loss only sees the one recommended item of each transition; this loss trains the same
        Q-network (extractor and item embeddings included) towards every logged next item. The
        idea of SQN (Xin et al., SIGIR 2020), here with the Q-values themselves as logits, so
        the ranking the agent acts on is the one trained. Needs the dueling head
        (:class:`DuelingDQNPolicy`). With ``mask_excluded`` the softmax runs over the items the
        logged state allows (the logged next item never is excluded: one rating per user and
        item), the same items the policy chooses from.
    :param next_item_positions: ``"last"`` (default) or ``"all"``, see :class:`NextItemMixin`
    :param next_item_batch_size: windows (or pairs) per next-item batch (None: ``batch_size``)
    :param pretrain_steps: gradient steps of the next-item loss alone before the first
        environment step (default 0), see :meth:`NextItemMixin.pretrain`
    :param pretrain_batch_size: samples per pre-training step (None: ``next_item_batch_size``)
    :param td_weight: weight of the TD loss (default 1.0). 0 drops it: the Q-network is then
        trained by the next-item loss alone on SB3's schedule (an ablation: what the TD updates
        add); the replay buffer is still filled, not sampled.
    :param next_item_softmax: ``"full"`` (default), ``"sampled"`` or ``"auto"``, and
    :param next_item_negatives: negatives of the sampled softmax, see :class:`NextItemMixin`
    :param item_compute: how the TD loss reads the Q-values: ``"dense"`` (default: every item's
        Q-value of the batch, then the taken action's), ``"sparse"`` (``Q(s, a)`` of the taken
        action and the target network's ``Q(s', a')`` at the greedy next action alone,
        :func:`~agents.policies.action_q_values`; only the greedy argmax over the items forms an
        ``(B, n_items)`` matrix, one instead of two or three), or ``"auto"`` (sparse above
        :data:`agents.config.LARGE_CATALOGUE` items); the same loss up to float rounding. The
        attribute holds the choice used

    In-network masking is a policy option (``policy_kwargs=dict(mask_excluded=True)`` with
    :class:`MaskedDQNPolicy` or :class:`DuelingDQNPolicy`, see :func:`build_model`): the
    greedy action and the next-state value ``max_a Q(s', a)`` (double Q: the online argmax)
    then skip the items ``s'`` excludes, i.e. the items the masked policy can never pick.

    :param kwargs: :class:`~stable_baselines3.DQN` arguments
    """

    def __init__(
        self,
        *args: Any,
        td_loss: str = "huber",
        double_q: bool = False,
        mask_actions: bool = False,
        td_weight: float = 1.0,
        next_item_weight: float = 0.0,
        next_item_positions: str = "last",
        next_item_batch_size: int | None = None,
        pretrain_steps: int = 0,
        pretrain_batch_size: int | None = None,
        next_item_softmax: str = "full",
        next_item_negatives: int | None = None,
        item_compute: str = "dense",
        **kwargs: Any,
    ) -> None:
        if td_loss not in TD_LOSSES:
            raise ValueError(f"td_loss={td_loss!r} is unknown; choose one of {TD_LOSSES}")
        if not (td_weight >= 0.0 and np.isfinite(td_weight)):
            raise ValueError(f"td_weight must be a finite number >= 0, got {td_weight!r}")
        if td_weight == 0 and next_item_weight == 0:
            raise ValueError("td_weight=0 and next_item_weight=0 leave no loss to train; set one of them > 0")
        if item_compute not in ITEM_COMPUTES:
            raise ValueError(f"item_compute={item_compute!r} is unknown; choose one of {ITEM_COMPUTES}")
        self._init_next_item(next_item_weight, next_item_positions, next_item_batch_size, pretrain_steps,
                             pretrain_batch_size, next_item_softmax, next_item_negatives)
        self.td_loss = td_loss
        self.double_q = bool(double_q)
        self.mask_actions = bool(mask_actions)
        self.td_weight = float(td_weight)
        super().__init__(*args, **kwargs)
        self._resolve_next_item_softmax()
        space = getattr(self, "action_space", None)  # None while load() builds (it restores the choice)
        self.item_compute = item_compute if item_compute != "auto" or space is None else (
            "sparse" if large_catalogue(catalogue_size(space)) else "dense")
        if self.next_item_weight > 0 or self.pretrain_steps > 0:
            self._check_next_item_network()

    _online, _target, _network, _network_hint = (
        "q_net", "q_net_target", DuelingQNetwork, "the dueling head (build_model(..., dueling=True))")

    @property
    def mask_excluded(self) -> bool:
        """Whether the Q-network masks excluded items (a policy option, see :class:`MaskedQNetwork`)."""
        return bool(getattr(self.q_net, "mask_excluded", False))

    def next_q_values(self, next_observations: dict[str, th.Tensor]) -> th.Tensor:
        """Next-state values of the TD target, ``(B, 1)``, without gradient.

        ``max_a Q_target(s', a)`` (eq. 9), or with ``double_q`` ``Q_target(s', argmax_a Q(s', a))``;
        with ``mask_excluded`` the max / argmax run over the items ``s'`` allows only.

        :param next_observations: Dict observation tensors of the next states
        """
        with th.no_grad():
            if self.item_compute == "sparse":
                return self._sparse_next_q_values(next_observations)
            next_q_all = self.q_net_target(next_observations)
            if self.double_q:
                online = acting_values(self.q_net, self.q_net(next_observations), next_observations)
                return th.gather(next_q_all, dim=1, index=online.argmax(dim=1, keepdim=True))
            next_q_all = acting_values(self.q_net_target, next_q_all, next_observations)
            return next_q_all.max(dim=1).values.reshape(-1, 1)

    def _sparse_next_q_values(self, next_observations: dict[str, th.Tensor]) -> th.Tensor:
        """:meth:`next_q_values` with ``item_compute="sparse"``: the greedy argmax is the only
        ``(B, n_items)`` term (:func:`~agents.policies.greedy_q_values`), the target network is
        read at that action alone under double Q-learning."""
        target = self.q_net_target
        target_features = target.extract_features(next_observations, target.features_extractor)
        if self.double_q:
            online = self.q_net.extract_features(next_observations, self.q_net.features_extractor)
            greedy, _ = greedy_q_values(self.q_net, online, next_observations)
            return action_q_values(target, target_features, greedy).reshape(-1, 1)
        return greedy_q_values(target, target_features, next_observations)[1].reshape(-1, 1)

    def current_q_values(self, observations: dict[str, th.Tensor], actions: th.Tensor) -> th.Tensor:
        """``Q(s, a)`` of the actions taken, ``(B, 1)``, with gradient (every item's Q-value, then
        the taken one; with ``item_compute="sparse"`` the taken one alone).

        :param observations: Dict observation tensors
        :param actions: ``(B, 1)`` actions
        """
        if self.item_compute == "sparse":
            features = self.q_net.extract_features(observations, self.q_net.features_extractor)
            return action_q_values(self.q_net, features, actions.long().reshape(-1)).reshape(-1, 1)
        return th.gather(self.q_net(observations), dim=1, index=actions.long())

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's ``DQN.train`` with the configured loss and target."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        loss_fn = F.mse_loss if self.td_loss == "mse" else F.smooth_l1_loss
        losses, aux_losses = [], []
        for _ in range(gradient_steps):
            loss = th.zeros((), device=self.device)
            if self.td_weight > 0:
                replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
                discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
                next_q = self.next_q_values(replay_data.next_observations)
                target_q = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q  # eq. 9
                # Q(s, a) of the action taken is never masked: it stays finite for any action.
                current_q = self.current_q_values(replay_data.observations, replay_data.actions)
                td = loss_fn(current_q, target_q)
                losses.append(td.item())
                loss = self.td_weight * td
            loss = self.add_next_item_loss(loss, aux_losses)
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if losses:
            self.logger.record("train/loss", np.mean(losses))
        if aux_losses:
            self.logger.record("train/next_item_loss", np.mean(aux_losses))


class LSRQRDQN(OffPolicyNextItemMixin, MaskedEpsilonGreedyMixin, QRDQN):
    """sb3-contrib :class:`~sb3_contrib.QRDQN` with optional masked exploration and targets, and
    the supervised next-item loss.

    With :class:`~agents.policies.MaskedQRDQNPolicy` (``mask_excluded=True``) the greedy next
    action of the TD target is the allowed item with the highest mean quantile. The next-item
    loss (:mod:`agents.supervised`) scores an item by its mean quantile (its Q-value) times a
    learned temperature; it needs :class:`~agents.policies.MaskedQRDQNPolicy` (with or without
    masking). Without either option the update is sb3-contrib's.

    :param mask_actions: collect experience with :class:`MaskedEpsilonGreedyMixin` (default False)
    :param next_item_weight: weight of the next-item loss added to the quantile loss (default 0)
    :param next_item_positions: ``"last"`` (default) or ``"all"``, see :class:`NextItemMixin`
    :param next_item_batch_size: windows (or pairs) per next-item batch (None: ``batch_size``)
    :param pretrain_steps: next-item gradient steps before the first environment step (default 0)
    :param pretrain_batch_size: samples per pre-training step (None: ``next_item_batch_size``)
    :param next_item_softmax: ``"full"`` (default), ``"sampled"`` or ``"auto"``, and
    :param next_item_negatives: negatives of the sampled softmax, see :class:`NextItemMixin`
    :param kwargs: :class:`~sb3_contrib.QRDQN` arguments
    """

    def __init__(self, *args: Any, mask_actions: bool = False, next_item_weight: float = 0.0,
                 next_item_positions: str = "last", next_item_batch_size: int | None = None,
                 pretrain_steps: int = 0, pretrain_batch_size: int | None = None, next_item_softmax: str = "full",
                 next_item_negatives: int | None = None, **kwargs: Any) -> None:
        self.mask_actions = bool(mask_actions)
        self._init_next_item(next_item_weight, next_item_positions, next_item_batch_size, pretrain_steps,
                             pretrain_batch_size, next_item_softmax, next_item_negatives)
        super().__init__(*args, **kwargs)
        self._resolve_next_item_softmax()
        if self.next_item_weight > 0 or self.pretrain_steps > 0:
            self._check_next_item_network()

    @property
    def mask_excluded(self) -> bool:
        """Whether the quantile network masks excluded items (a policy option)."""
        return bool(getattr(self.quantile_net, "mask_excluded", False))

    _online, _target, _network, _network_hint = (
        "quantile_net", "quantile_net_target", MaskedQuantileNetwork,
        "agents.policies.MaskedQRDQNPolicy (build_model('qrdqn', ...) uses it)")

    def next_quantiles(self, next_observations: dict[str, th.Tensor]) -> th.Tensor:
        """Quantiles ``(B, n_quantiles)`` of the target network at the greedy next action.

        The greedy action maximises the target network's mean quantile, over the allowed items
        with ``mask_excluded``.

        :param next_observations: Dict observation tensors of the next states
        """
        with th.no_grad():
            quantiles = self.quantile_net_target(next_observations)  # (B, n_quantiles, n_items)
            means = acting_values(self.quantile_net_target, quantiles.mean(dim=1), next_observations)
            greedy = means.argmax(dim=1)[:, None, None].expand(-1, quantiles.shape[1], 1)
            return quantiles.gather(dim=2, index=greedy).squeeze(dim=2)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """sb3-contrib's ``QRDQN.train``, with the greedy next action of :meth:`next_quantiles`
        and the next-item loss."""
        if not self.mask_excluded and self.next_item_weight == 0:
            return super().train(gradient_steps, batch_size)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses, aux_losses = [], []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            next_quantiles = self.next_quantiles(replay_data.next_observations)
            target_quantiles = replay_data.rewards + (1 - replay_data.dones) * discounts * next_quantiles
            # The quantiles of the action taken are never masked: finite for any action.
            current = self.quantile_net(replay_data.observations)
            actions = replay_data.actions[..., None].long().expand(batch_size, self.n_quantiles, 1)
            current = th.gather(current, dim=2, index=actions).squeeze(dim=2)
            loss = quantile_huber_loss(current, target_quantiles, sum_over_quantiles=True)
            losses.append(loss.item())
            loss = self.add_next_item_loss(loss, aux_losses)
            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
        if aux_losses:
            self.logger.record("train/next_item_loss", np.mean(aux_losses))
