"""Build any supported SB3 / sb3-contrib algorithm around :class:`LongShortExtractor`.

``build_model("dqn", env, ...)`` returns a ready-to-train model whose policy reads the
``MovieLensRec-v0`` Dict observation through the long/short-term interest extractor and puts
the algorithm's usual heads on top (one Q-value per item for DQN, one quantile set per item
for QR-DQN, policy logits per item plus a value for PPO / A2C / MaskablePPO).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from sb3_contrib import QRDQN, MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

from agents.extractor import LongShortExtractor

#: TD losses :class:`LSRDQN` accepts.
TD_LOSSES: tuple[str, ...] = ("huber", "mse")


class LSRDQN(DQN):
    """SB3 :class:`~stable_baselines3.DQN` with a selectable TD loss.

    SB3's DQN always uses the Huber (smooth L1) loss; the paper's eq. 10 is the mean squared
    error. Everything else (replay, target network, epsilon-greedy, ``_on_step``) is SB3's.

    :param td_loss: ``"huber"`` (SB3's default, gradient clipped at |TD error| = 1) or
        ``"mse"`` (paper eq. 10); both average over the mini-batch
    :param kwargs: :class:`~stable_baselines3.DQN` arguments
    """

    def __init__(self, *args: Any, td_loss: str = "huber", **kwargs: Any) -> None:
        if td_loss not in TD_LOSSES:
            raise ValueError(f"td_loss={td_loss!r} is unknown; choose one of {TD_LOSSES}")
        self.td_loss = td_loss
        super().__init__(*args, **kwargs)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's ``DQN.train`` with the loss chosen by ``td_loss``."""
        if self.td_loss == "huber":
            return super().train(gradient_steps, batch_size)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            with th.no_grad():
                next_q = self.q_net_target(replay_data.next_observations).max(dim=1).values.reshape(-1, 1)
                target_q = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q  # eq. 9
            current_q = th.gather(self.q_net(replay_data.observations), dim=1, index=replay_data.actions.long())
            loss = F.mse_loss(current_q, target_q)  # eq. 10
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))


#: Algorithm name -> class (all accept ``"MultiInputPolicy"`` and Dict observations).
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqn": LSRDQN,
    "qrdqn": QRDQN,
    "ppo": PPO,
    "a2c": A2C,
    "maskable_ppo": MaskablePPO,
}

#: Hyperparameter names each algorithm's constructor accepts (beyond policy, env, seed...).
ALGO_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "dqn": ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
            "gradient_steps", "target_update_interval", "exploration_fraction",
            "exploration_initial_eps", "exploration_final_eps", "max_grad_norm", "td_loss"),
    "qrdqn": ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
              "gradient_steps", "target_update_interval", "exploration_fraction",
              "exploration_initial_eps", "exploration_final_eps", "max_grad_norm"),
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
    :param seed: seed of SB3's random generators
    :param device: torch device (default ``"cpu"``)
    :param tensorboard_log: TensorBoard folder (None: no TensorBoard)
    :param verbose: SB3 verbosity
    :param hyperparameters: constructor arguments of the algorithm; those it does not take
        (see :data:`ALGO_HYPERPARAMETERS`) are ignored, so one config serves every algorithm
    """
    cls = algorithm_class(algo)
    accepted = {k: v for k, v in hyperparameters.items() if k in ALGO_HYPERPARAMETERS[algo]}
    return cls(
        "MultiInputPolicy",
        env,
        policy_kwargs=make_policy_kwargs(algo, extractor_kwargs, net_arch, n_quantiles),
        seed=seed,
        device=device,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        **accepted,
    )
