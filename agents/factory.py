"""Build any supported SB3 / sb3-contrib algorithm around :class:`LongShortExtractor`.

``build_model("dqn", env, ...)`` returns a ready-to-train model whose policy reads the
``MovieLensRec-v0`` Dict observation through the long/short-term interest extractor and puts
the algorithm's usual heads on top (one Q-value per item for DQN, one quantile set per item
for QR-DQN, policy logits per item plus a value for PPO / A2C / MaskablePPO).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn
from sb3_contrib import QRDQN, MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from stable_baselines3.common.type_aliases import GymEnv

from agents.extractor import LongShortExtractor

#: ``source(batch_size) -> (observations, next items)``: logged data of the next-item loss.
NextItemSource = Callable[[int], tuple[dict[str, np.ndarray], np.ndarray]]

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
    flips one coin for all environments, so a greedy policy may recommend the same unwanted
    item until the episode is truncated. Training targets and evaluation are unchanged.
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


class DuelingQNetwork(QNetwork):
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
        features = self.extract_features(obs, self.features_extractor)
        if self.tied_item_embeddings:
            items = self.features_extractor.item_embedding.weight[1:]  # (n_items, d), token = item + 1
            advantage = self.q_net(features) @ items.T + self.item_bias
        else:
            advantage = self.q_net(features)
        return self.value_net(features) + advantage - advantage.mean(dim=1, keepdim=True)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "tied_item_embeddings": self.tied_item_embeddings}


class DuelingDQNPolicy(DQNPolicy):
    """SB3's DQN policy (Dict observations) with :class:`DuelingQNetwork` as online and target net.

    :param tied_item_embeddings: see :class:`DuelingQNetwork` (default False)
    :param kwargs: :class:`~stable_baselines3.dqn.policies.DQNPolicy` arguments
    """

    def __init__(self, *args: Any, tied_item_embeddings: bool = False, **kwargs: Any) -> None:
        self._tied = bool(tied_item_embeddings)  # read by make_q_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> DuelingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingQNetwork(**net_args, tied_item_embeddings=self._tied).to(self.device)

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
        (:class:`DuelingDQNPolicy`).
    :param kwargs: :class:`~stable_baselines3.DQN` arguments
    """

    def __init__(
        self,
        *args: Any,
        td_loss: str = "huber",
        double_q: bool = False,
        mask_actions: bool = False,
        next_item_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if td_loss not in TD_LOSSES:
            raise ValueError(f"td_loss={td_loss!r} is unknown; choose one of {TD_LOSSES}")
        if not (next_item_weight >= 0.0 and np.isfinite(next_item_weight)):
            raise ValueError(f"next_item_weight must be a finite number >= 0, got {next_item_weight!r}")
        self.td_loss = td_loss
        self.double_q = bool(double_q)
        self.mask_actions = bool(mask_actions)
        self.next_item_weight = float(next_item_weight)
        super().__init__(*args, **kwargs)
        if self.next_item_weight > 0 and not isinstance(self.q_net, DuelingQNetwork):
            raise ValueError("next_item_weight > 0 needs the dueling head (build_model(..., dueling=True))")
        self.next_item_source: NextItemSource | None = None

    def set_next_item_source(self, source: NextItemSource | None) -> None:
        """Attach the logged (state, next item) sampler of the next-item loss.

        Not saved with the model (it holds data); attach it again after ``load``.

        :param source: ``source(batch_size) -> (observations, items)``, e.g.
            :class:`agents.next_item.LoggedNextItems`
        """
        self.next_item_source = source

    def next_item_loss(self, batch_size: int) -> th.Tensor:
        """Cross-entropy of the logged next items under ``softmax(c * Q(s, .))``, batch mean."""
        if self.next_item_source is None:
            raise RuntimeError(
                "next_item_weight > 0 but no logged data is attached: call "
                "model.set_next_item_source(LoggedNextItems(train_env)) before learn()"
            )
        observations, items = self.next_item_source(batch_size)
        obs_tensor, _ = self.policy.obs_to_tensor(observations)
        logits = self.q_net(obs_tensor) * self.q_net.log_logit_scale.exp()
        return F.cross_entropy(logits, th.as_tensor(items, dtype=th.long, device=self.device))

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "next_item_source"]

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's ``DQN.train`` with the configured loss and target."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        loss_fn = F.mse_loss if self.td_loss == "mse" else F.smooth_l1_loss
        losses, aux_losses = [], []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            with th.no_grad():
                next_q_all = self.q_net_target(replay_data.next_observations)
                if self.double_q:
                    next_action = self.q_net(replay_data.next_observations).argmax(dim=1, keepdim=True)
                    next_q = th.gather(next_q_all, dim=1, index=next_action)
                else:
                    next_q = next_q_all.max(dim=1).values.reshape(-1, 1)
                target_q = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q  # eq. 9
            current_q = th.gather(self.q_net(replay_data.observations), dim=1, index=replay_data.actions.long())
            loss = loss_fn(current_q, target_q)
            losses.append(loss.item())
            if self.next_item_weight > 0:
                aux = self.next_item_loss(batch_size)
                aux_losses.append(aux.item())
                loss = loss + self.next_item_weight * aux
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
        if aux_losses:
            self.logger.record("train/next_item_loss", np.mean(aux_losses))


class LSRQRDQN(MaskedEpsilonGreedyMixin, QRDQN):
    """sb3-contrib :class:`~sb3_contrib.QRDQN` with optional masked exploration.

    :param mask_actions: collect experience with :class:`MaskedEpsilonGreedyMixin` (default False)
    :param kwargs: :class:`~sb3_contrib.QRDQN` arguments
    """

    def __init__(self, *args: Any, mask_actions: bool = False, **kwargs: Any) -> None:
        self.mask_actions = bool(mask_actions)
        super().__init__(*args, **kwargs)


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
            "mask_actions", "next_item_weight"),
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
    policy_kwargs = make_policy_kwargs(algo, extractor_kwargs, net_arch, n_quantiles)
    if dueling:
        policy_kwargs["tied_item_embeddings"] = tied_item_embeddings
    return cls(
        DuelingDQNPolicy if dueling else "MultiInputPolicy",
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device=device,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        **accepted,
    )
