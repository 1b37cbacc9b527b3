"""Build any supported SB3 / sb3-contrib algorithm around :class:`LongShortExtractor`.

``build_model("dqn", env, ...)`` returns a ready-to-train model whose policy reads the
``MovieLensRec-v0`` Dict observation through the long/short-term interest extractor and puts
the algorithm's usual heads on top (one Q-value per item for DQN, one quantile set per item
for QR-DQN, policy logits per item plus a value for PPO / A2C / MaskablePPO). With
``mask_excluded=True`` the heads never choose an item the observation's ``"excluded"`` field
marks (:mod:`agents.masking`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn
from sb3_contrib import QRDQN, MaskablePPO
from sb3_contrib.common.utils import quantile_huber_loss
from sb3_contrib.qrdqn.policies import QRDQNPolicy, QuantileNetwork
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from stable_baselines3.common.type_aliases import GymEnv

from agents.extractor import LongShortExtractor, unpack_bits
from agents.masking import MASKED_VALUE, acting_values, mask_excluded

#: ``source(batch_size) -> (observations, next items)``: logged data of the next-item loss. With
#: ``next_item_positions="all"`` it also needs ``source.windows(batch_size) -> (windows, targets)``
#: (:class:`agents.next_item.LoggedNextItems` has both).
NextItemSource = Callable[[int], tuple[dict[str, np.ndarray], np.ndarray]]

#: TD losses :class:`LSRDQN` accepts.
TD_LOSSES: tuple[str, ...] = ("huber", "mse")
#: Where :class:`LSRDQN`'s next-item loss is taken: ``"last"`` one (prefix, next item) pair per
#: sample, ``"all"`` every position of a sampled window (needs a causal extractor).
NEXT_ITEM_POSITIONS: tuple[str, ...] = ("last", "all")


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


class MaskedQNetwork(QNetwork):
    """SB3's Q-network whose greedy action never picks an item the observation excludes.

    With ``mask_excluded`` the Q-values of items set in the observation's ``"excluded"`` field
    are replaced by :data:`agents.masking.MASKED_VALUE` in :meth:`_predict` (so
    ``model.predict(obs, deterministic=True)`` never repeats an item or recommends a history
    item) and wherever :func:`agents.masking.acting_values` is applied (the TD target of
    :class:`LSRDQN`, item scores); ``forward`` itself returns the raw Q-values, which the TD
    loss regresses.

    :param mask_excluded: mask excluded items when choosing (default False: SB3's behaviour)
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_excluded = bool(mask_excluded)

    def _predict(self, observation: Any, deterministic: bool = True) -> th.Tensor:
        return acting_values(self, self(observation), observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class MaskedDQNPolicy(DQNPolicy):
    """SB3's DQN policy (Dict observations) with :class:`MaskedQNetwork` as online and target net.

    :param mask_excluded: see :class:`MaskedQNetwork` (default False)
    :param kwargs: :class:`~stable_baselines3.dqn.policies.DQNPolicy` arguments
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        self.mask_excluded = bool(mask_excluded)  # read by make_q_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> MaskedQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return MaskedQNetwork(**net_args, mask_excluded=self.mask_excluded).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class DuelingQNetwork(MaskedQNetwork):
    """Dueling Q-network head (Wang et al., 2016): ``Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)``.

    In this environment a missed recommendation leaves the state unchanged, so every item's
    Q-value carries a large shared term ``gamma * V(s)``; with a plain head each item's output
    row must learn that term on its own from the rare samples of that item, whereas the value
    stream ``V`` (an MLP with ``net_arch`` hidden layers) learns it from every sample and the
    advantages only rank the items.

    Advantage stream: an MLP over the features with ``n_items`` outputs, or, with
    ``tied_item_embeddings``, ``A(s, a) = <u(s), E[a + 1]> + b_a`` where ``u`` is an MLP to size
    ``d`` and ``E`` the extractor's item embedding table (``(n_items + 1, d)``, the one the
    history tokens use): every item's score then moves whenever its embedding is trained, not
    only when that item was the action.

    :param tied_item_embeddings: score items through the extractor's item embeddings
    :param kwargs: :class:`MaskedQNetwork` arguments (``mask_excluded``...)
    """

    def __init__(self, *args: Any, tied_item_embeddings: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # self.q_net becomes the advantage stream
        self.tied_item_embeddings = tied_item_embeddings
        self.value_net = nn.Sequential(*create_mlp(self.features_dim, 1, self.net_arch, self.activation_fn))
        if tied_item_embeddings:
            table = getattr(self.features_extractor, "item_embedding", None)
            if not isinstance(table, nn.Embedding):
                raise ValueError("tied_item_embeddings needs a features extractor with an item_embedding table")
            dim = table.embedding_dim
            self.q_net = nn.Sequential(*create_mlp(self.features_dim, dim, self.net_arch, self.activation_fn))
            # Start from A = 0 so that the N(0, 1) embeddings add no random initial ranking.
            nn.init.zeros_(self.q_net[-1].weight)
            nn.init.zeros_(self.q_net[-1].bias)
            self.item_bias = nn.Parameter(th.zeros(int(self.action_space.n)))
        # Temperature of LSRDQN's next-item loss: logits = exp(log_logit_scale) * Q.
        # Q differences are a fraction of a reward, softmax logits need a few units.
        self.log_logit_scale = nn.Parameter(th.tensor(float(np.log(10.0))))

    def forward(self, obs: Any) -> th.Tensor:
        """:return: Q-values ``(B, n_items)``"""
        return self.q_values(self.extract_features(obs, self.features_extractor))

    def q_values(self, features: th.Tensor) -> th.Tensor:
        """Q-values ``(M, n_items)`` of states given by their features ``(M, features_dim)``."""
        advantage = self.advantages(features)
        return self.value_net(features) + advantage - advantage.mean(dim=1, keepdim=True)

    def advantages(self, features: th.Tensor) -> th.Tensor:
        """The advantage stream ``A(s, .)``, ``(M, n_items)``, before centring: the Q-values up to
        a per-state constant, so any softmax over items gives the same result on either."""
        if self.tied_item_embeddings:
            items = self.features_extractor.item_embedding.weight[1:]  # (n_items, d), token = item + 1
            return self.q_net(features) @ items.T + self.item_bias
        return self.q_net(features)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "tied_item_embeddings": self.tied_item_embeddings}


class DuelingDQNPolicy(MaskedDQNPolicy):
    """SB3's DQN policy (Dict observations) with :class:`DuelingQNetwork` as online and target net.

    :param tied_item_embeddings: see :class:`DuelingQNetwork` (default False)
    :param kwargs: :class:`MaskedDQNPolicy` arguments (``mask_excluded``, SB3's DQN policy's)
    """

    def __init__(self, *args: Any, tied_item_embeddings: bool = False, **kwargs: Any) -> None:
        self._tied = bool(tied_item_embeddings)  # read by make_q_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> DuelingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingQNetwork(
            **net_args, tied_item_embeddings=self._tied, mask_excluded=self.mask_excluded
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "tied_item_embeddings": self._tied}


class LSRDQN(MaskedEpsilonGreedyMixin, DQN):
    """SB3 :class:`~stable_baselines3.DQN` with a selectable TD loss, optional double Q-learning
    and masked exploration.

    The update is SB3's ``DQN.train`` (same replay sampling, target network, gradient
    clipping) with two options: the loss (SB3 always uses Huber; the paper's eq. 10 is the mean
    squared error) and the next-state value (eq. 9 takes ``max_a Q_target(s', a)``; double
    Q-learning evaluates the online network's argmax with the target network instead, which
    curbs the upward bias of a max over thousands of noisy item values).

    :param td_loss: ``"huber"`` (SB3's smooth L1, gradient clipped at |TD error| = 1) or
        ``"mse"`` (paper eq. 10); both average over the mini-batch
    :param double_q: use the double Q-learning target (default False: eq. 9)
    :param mask_actions: collect experience with :class:`MaskedEpsilonGreedyMixin`
        (default False: SB3's epsilon-greedy over all items)
    :param next_item_weight: weight of an auxiliary supervised next-item loss added to the
        TD loss (default 0.0: off). Each gradient step also draws ``batch_size`` logged states
        from :meth:`set_next_item_source` (a train-sequence prefix and the item the user rated
        next) and adds ``next_item_weight`` times the cross-entropy of
        ``softmax(c * Q(s, .))`` against that item, with a learned temperature ``c``. The TD
        loss only sees the one recommended item of each transition; this loss trains the same
        Q-network (extractor and item embeddings included) towards every logged next item. The
        idea of SQN (Xin et al., SIGIR 2020), here with the Q-values themselves as logits, so
        the ranking the agent acts on is the one trained. Needs the dueling head
        (:class:`DuelingDQNPolicy`). With ``mask_excluded`` the softmax runs over the items the
        logged state allows (the logged next item never is excluded: one rating per user and
        item), the same items the policy chooses from.
    :param td_weight: weight of the TD loss (default 1.0). 0 drops it: the Q-network is then
        trained by the next-item loss alone on SB3's schedule (an ablation: what the TD updates
        add); the replay buffer is still filled, not sampled.

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
        **kwargs: Any,
    ) -> None:
        if td_loss not in TD_LOSSES:
            raise ValueError(f"td_loss={td_loss!r} is unknown; choose one of {TD_LOSSES}")
        if not (next_item_weight >= 0.0 and np.isfinite(next_item_weight)):
            raise ValueError(f"next_item_weight must be a finite number >= 0, got {next_item_weight!r}")
        if not (td_weight >= 0.0 and np.isfinite(td_weight)):
            raise ValueError(f"td_weight must be a finite number >= 0, got {td_weight!r}")
        if td_weight == 0 and next_item_weight == 0:
            raise ValueError("td_weight=0 and next_item_weight=0 leave no loss to train; set one of them > 0")
        if next_item_positions not in NEXT_ITEM_POSITIONS:
            raise ValueError(f"next_item_positions={next_item_positions!r} is unknown; choose one of "
                             f"{NEXT_ITEM_POSITIONS}")
        if next_item_batch_size is not None and int(next_item_batch_size) < 1:
            raise ValueError(f"next_item_batch_size must be >= 1 or None, got {next_item_batch_size!r}")
        self.td_loss = td_loss
        self.double_q = bool(double_q)
        self.mask_actions = bool(mask_actions)
        self.td_weight = float(td_weight)
        self.next_item_weight = float(next_item_weight)
        self.next_item_positions = next_item_positions
        self.next_item_batch_size = None if next_item_batch_size is None else int(next_item_batch_size)
        super().__init__(*args, **kwargs)
        if self.next_item_weight > 0:
            self._check_next_item_network()
        self.next_item_source: NextItemSource | None = None

    def _check_next_item_network(self) -> None:
        if not isinstance(self.q_net, DuelingQNetwork):
            raise ValueError("next_item_weight > 0 (or pretraining) needs the dueling head "
                             "(build_model(..., dueling=True))")
        if self.next_item_positions == "all" and not getattr(
                getattr(self.q_net.features_extractor, "short_term", None), "causal", False):
            raise ValueError("next_item_positions='all' needs a causal short-term encoder: build the model with "
                             "extractor_kwargs=dict(causal=True, ...)")

    def set_next_item_source(self, source: NextItemSource | None) -> None:
        """Attach the logged (state, next item) sampler of the next-item loss.

        Not saved with the model (it holds data); attach it again after ``load``.

        :param source: ``source(batch_size) -> (observations, items)``, e.g.
            :class:`agents.next_item.LoggedNextItems`
        """
        self.next_item_source = source

    def next_item_loss(self, batch_size: int | None = None) -> th.Tensor:
        """Cross-entropy of the logged next items under ``softmax(c * Q(s, .))``, mean over the
        labelled states (pairs, or every real position of the windows).

        :param batch_size: samples to draw (default: ``next_item_batch_size``, else ``batch_size``)
        """
        if self.next_item_source is None:
            raise RuntimeError(
                "the next-item loss (next_item_weight > 0 or pretrain) has no logged data: call "
                "model.set_next_item_source(LoggedNextItems(train_env)) before learn() or pretrain()"
            )
        n = int(batch_size or self.next_item_batch_size or self.batch_size)
        if self.next_item_positions == "all":
            return self._window_next_item_loss(n)
        observations, items = self.next_item_source(n)
        obs_tensor, _ = self.policy.obs_to_tensor(observations)
        logits = self.q_net(obs_tensor) * self.q_net.log_logit_scale.exp()
        logits = acting_values(self.q_net, logits, obs_tensor)  # masked after scaling: stays finite
        return F.cross_entropy(logits, th.as_tensor(items, dtype=th.long, device=self.device))

    def _window_next_item_loss(self, n_windows: int) -> th.Tensor:
        """The next-item loss at every real position of ``n_windows`` logged windows."""
        windows, targets = self.next_item_source.windows(n_windows)  # type: ignore[union-attr]
        tensors = {k: th.as_tensor(v, device=self.device) for k, v in windows.items()}
        targets = th.as_tensor(targets, dtype=th.long, device=self.device)
        valid = targets >= 0  # (B, n): real positions
        features = self.q_net.features_extractor.sequence_features(tensors)[valid]  # (M, F)
        # softmax(c * Q) = softmax(c * A): V(s) and the mean advantage are per-state constants, so
        # the advantages give the same loss and gradients with fewer (M, n_items) operations.
        logits = self.q_net.advantages(features) * self.q_net.log_logit_scale.exp()  # (M, N)
        if self.mask_excluded:
            excluded = self._window_excluded(tensors, valid, logits.shape[1])
            logits = logits.masked_fill(excluded, MASKED_VALUE)
        return F.cross_entropy(logits, targets[valid])

    @staticmethod
    def _window_excluded(windows: dict[str, th.Tensor], valid: th.Tensor, n_items: int) -> th.Tensor:
        """Bool ``(M, n_items)``: the items excluded at each valid window position, i.e. the
        items before the window and the window's items up to that position. The target (the
        next logged item) is never among them (one rating per user and item), so no row is all
        excluded and ``agents.masking.excluded_items``' all-excluded rule never applies."""
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

    def pretrain(self, gradient_steps: int, batch_size: int | None = None) -> list[float]:
        """Train the Q-network by the next-item loss alone, then copy it to the target network.

        For supervised pre-training before ``learn()`` (the same optimizer, learning rate and
        gradient clipping as the TD updates). Needs the dueling head and an attached source.

        :param gradient_steps: number of gradient steps
        :param batch_size: samples per step (default: as :meth:`next_item_loss`)
        :return: the loss of every step
        """
        self._check_next_item_network()
        self.policy.set_training_mode(True)
        losses = []
        for _ in range(int(gradient_steps)):
            loss = self.next_item_loss(batch_size)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self.policy.set_training_mode(False)
        self.q_net_target.load_state_dict(self.q_net.state_dict())
        return losses

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
            next_q_all = self.q_net_target(next_observations)
            if self.double_q:
                online = acting_values(self.q_net, self.q_net(next_observations), next_observations)
                return th.gather(next_q_all, dim=1, index=online.argmax(dim=1, keepdim=True))
            next_q_all = acting_values(self.q_net_target, next_q_all, next_observations)
            return next_q_all.max(dim=1).values.reshape(-1, 1)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "next_item_source"]

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
                current_q = th.gather(self.q_net(replay_data.observations), dim=1, index=replay_data.actions.long())
                td = loss_fn(current_q, target_q)
                losses.append(td.item())
                loss = self.td_weight * td
            if self.next_item_weight > 0:
                aux = self.next_item_loss()
                aux_losses.append(aux.item())
                loss = loss + self.next_item_weight * aux
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


class MaskedQuantileNetwork(QuantileNetwork):
    """sb3-contrib's quantile network whose greedy action skips excluded items.

    With ``mask_excluded``, :meth:`_predict` takes the argmax of the mean quantile over the items
    the observation allows (see :class:`MaskedQNetwork`); ``forward`` returns raw quantiles.

    :param mask_excluded: mask excluded items when choosing (default False)
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_excluded = bool(mask_excluded)

    def _predict(self, observation: Any, deterministic: bool = True) -> th.Tensor:
        q_values = acting_values(self, self(observation).mean(dim=1), observation)
        return q_values.argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class MaskedQRDQNPolicy(QRDQNPolicy):
    """sb3-contrib's QR-DQN policy with :class:`MaskedQuantileNetwork` as online and target net.

    :param mask_excluded: see :class:`MaskedQuantileNetwork` (default False)
    :param kwargs: :class:`~sb3_contrib.qrdqn.policies.QRDQNPolicy` arguments
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        self.mask_excluded = bool(mask_excluded)  # read by make_quantile_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_quantile_net(self) -> MaskedQuantileNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return MaskedQuantileNetwork(**net_args, mask_excluded=self.mask_excluded).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class LSRQRDQN(MaskedEpsilonGreedyMixin, QRDQN):
    """sb3-contrib :class:`~sb3_contrib.QRDQN` with optional masked exploration and targets.

    With :class:`MaskedQRDQNPolicy` (``mask_excluded=True``) the greedy next action of the TD
    target is the allowed item with the highest mean quantile; otherwise the update is
    sb3-contrib's.

    :param mask_actions: collect experience with :class:`MaskedEpsilonGreedyMixin` (default False)
    :param kwargs: :class:`~sb3_contrib.QRDQN` arguments
    """

    def __init__(self, *args: Any, mask_actions: bool = False, **kwargs: Any) -> None:
        self.mask_actions = bool(mask_actions)
        super().__init__(*args, **kwargs)

    @property
    def mask_excluded(self) -> bool:
        """Whether the quantile network masks excluded items (a policy option)."""
        return bool(getattr(self.quantile_net, "mask_excluded", False))

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
        """sb3-contrib's ``QRDQN.train``, with the greedy next action of :meth:`next_quantiles`."""
        if not self.mask_excluded:
            return super().train(gradient_steps, batch_size)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
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
            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))


class MaskedActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy (PPO, A2C) whose action distribution skips excluded items.

    With ``mask_excluded`` the logits of the items the observation excludes are set to
    :data:`agents.masking.MASKED_VALUE` before the softmax, in rollouts (``forward``), in the
    update (``evaluate_actions``) and in ``predict`` / scoring (``get_distribution``): the
    policy is ``pi(a | s)`` over the allowed items, a function of the observation alone, so the
    stored log-probabilities and the re-evaluated ones agree. (For MaskablePPO use the
    environment's ``action_masks()``, which are the same items.)

    :param mask_excluded: mask excluded items (default False: SB3's policy)
    :param kwargs: :class:`~stable_baselines3.common.policies.ActorCriticPolicy` arguments
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        self.mask_excluded = bool(mask_excluded)
        self._observations: dict[str, th.Tensor] | None = None
        super().__init__(*args, **kwargs)

    # SB3 builds the distribution from the latent code alone; the three entry points that build
    # one keep the observation at hand for _get_action_dist_from_latent while they run.
    def forward(self, obs: Any, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        self._observations = obs
        try:
            return super().forward(obs, deterministic)
        finally:
            self._observations = None

    def evaluate_actions(self, obs: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        self._observations = obs
        try:
            return super().evaluate_actions(obs, actions)
        finally:
            self._observations = None

    def get_distribution(self, obs: Any) -> Distribution:
        self._observations = obs
        try:
            return super().get_distribution(obs)
        finally:
            self._observations = None

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        distribution = super()._get_action_dist_from_latent(latent_pi)
        if self.mask_excluded and self._observations is not None:
            logits = mask_excluded(distribution.distribution.logits, self._observations)
            distribution = self.action_dist.proba_distribution(action_logits=logits)
        return distribution

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


#: Algorithm name -> class (all accept ``"MultiInputPolicy"`` and Dict observations).
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqn": LSRDQN,
    "qrdqn": LSRQRDQN,
    "ppo": PPO,
    "a2c": A2C,
    "maskable_ppo": MaskablePPO,
}

#: Hyperparameter names each algorithm's constructor accepts (beyond policy, env, seed...).
ALGO_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "dqn": ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
            "gradient_steps", "target_update_interval", "exploration_fraction",
            "exploration_initial_eps", "exploration_final_eps", "max_grad_norm", "td_loss", "double_q",
            "mask_actions", "td_weight", "next_item_weight", "next_item_positions", "next_item_batch_size"),
    "qrdqn": ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
              "gradient_steps", "target_update_interval", "exploration_fraction",
              "exploration_initial_eps", "exploration_final_eps", "max_grad_norm", "mask_actions"),
    "ppo": ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range",
            "ent_coef", "vf_coef", "max_grad_norm"),
    "maskable_ppo": ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
                     "clip_range", "ent_coef", "vf_coef", "max_grad_norm"),
    "a2c": ("learning_rate", "n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm"),
}


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class for an algorithm name (``dqn`` is :class:`LSRDQN`).

    :param algo: one of :data:`ALGORITHMS`
    :raises ValueError: unknown name
    """
    try:
        return ALGORITHMS[algo]
    except KeyError:
        raise ValueError(f"unknown algo {algo!r}; choose one of {', '.join(ALGORITHMS)}") from None


def make_policy_kwargs(
    algo: str,
    extractor_kwargs: dict[str, Any] | None = None,
    net_arch: Sequence[int] = (256,),
    n_quantiles: int = 50,
) -> dict[str, Any]:
    """``policy_kwargs`` putting :class:`LongShortExtractor` under the algorithm's heads.

    :param algo: algorithm name
    :param extractor_kwargs: :class:`LongShortExtractor` options (``embed_dim``, ``n_heads``, ...)
    :param net_arch: hidden sizes of the Q / quantile head, or of both the policy and the value
        head of actor-critic algorithms (which share the extractor); default ``(256,)``
    :param n_quantiles: quantiles per action (``qrdqn`` only; default 50)
    """
    algorithm_class(algo)
    kwargs: dict[str, Any] = dict(
        features_extractor_class=LongShortExtractor,
        features_extractor_kwargs=dict(extractor_kwargs or {}),
    )
    arch = [int(h) for h in net_arch]
    if algo in ("dqn", "qrdqn"):
        kwargs["net_arch"] = arch
    else:
        kwargs["net_arch"] = dict(pi=arch, vf=list(arch))
    if algo == "qrdqn":
        kwargs["n_quantiles"] = int(n_quantiles)
    return kwargs


def build_model(
    algo: str,
    env: GymEnv,
    *,
    extractor_kwargs: dict[str, Any] | None = None,
    net_arch: Sequence[int] = (256,),
    n_quantiles: int = 50,
    dueling: bool = False,
    tied_item_embeddings: bool = False,
    mask_excluded: bool = False,
    seed: int | None = None,
    device: str = "cpu",
    tensorboard_log: str | None = None,
    verbose: int = 0,
    **hyperparameters: Any,
) -> BaseAlgorithm:
    """Construct an untrained model of ``algo`` around the LSRWRL extractor.

    :param algo: ``"dqn"``, ``"qrdqn"``, ``"ppo"``, ``"a2c"`` or ``"maskable_ppo"``
    :param env: a ``MovieLensRec-v0`` env or SB3 VecEnv of them (``maskable_ppo`` reads their
        ``action_masks()``)
    :param extractor_kwargs: :class:`LongShortExtractor` options
    :param net_arch: head hidden sizes (see :func:`make_policy_kwargs`)
    :param n_quantiles: QR-DQN quantiles per action
    :param dueling: ``dqn`` only: :class:`DuelingDQNPolicy` instead of SB3's Q-network
    :param tied_item_embeddings: with ``dueling``: score items through the extractor's item
        embeddings (see :class:`DuelingQNetwork`)
    :param mask_excluded: in-network masking (default False, the plain algorithm): the items
        set in the observation's ``"excluded"`` field (history and already recommended, i.e.
        ``~action_masks()``) are never chosen by ``predict``, the greedy part of
        epsilon-greedy, the TD target's max / argmax (``dqn``, ``qrdqn``) or the actor-critic
        policy's distribution (``ppo``, ``a2c``); see :class:`MaskedQNetwork`,
        :class:`MaskedQuantileNetwork`, :class:`MaskedActorCriticPolicy`. Not for
        ``maskable_ppo``, which masks through the environment's ``action_masks()`` already
    :param seed: seed of SB3's random generators
    :param device: torch device (default ``"cpu"``)
    :param tensorboard_log: TensorBoard folder (None: no TensorBoard)
    :param verbose: SB3 verbosity
    :param hyperparameters: constructor arguments of the algorithm; those it does not take
        (see :data:`ALGO_HYPERPARAMETERS`) are ignored, so one config serves every algorithm
    """
    cls = algorithm_class(algo)
    accepted = {k: v for k, v in hyperparameters.items() if k in ALGO_HYPERPARAMETERS[algo]}
    if dueling and algo != "dqn":
        raise ValueError(f"dueling=True is only available for algo='dqn', not {algo!r}")
    if tied_item_embeddings and not dueling:
        raise ValueError("tied_item_embeddings=True needs dueling=True (it is a dueling-head option)")
    if mask_excluded and algo == "maskable_ppo":
        raise ValueError(
            "mask_excluded=True is not available for algo='maskable_ppo': it masks through the "
            "environment's action_masks() (the same items); pass action_masks= to its predict()"
        )
    policy_kwargs = make_policy_kwargs(algo, extractor_kwargs, net_arch, n_quantiles)
    policy: str | type = "MultiInputPolicy"  # SB3's own policy when nothing is added
    if dueling:
        policy, policy_kwargs["tied_item_embeddings"] = DuelingDQNPolicy, tied_item_embeddings
    elif mask_excluded:
        policy = {"dqn": MaskedDQNPolicy, "qrdqn": MaskedQRDQNPolicy}.get(algo, MaskedActorCriticPolicy)
    if mask_excluded:
        policy_kwargs["mask_excluded"] = True
    return cls(
        policy,
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device=device,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        **accepted,
    )
