"""Build any supported SB3 / sb3-contrib algorithm around :class:`LongShortExtractor`.

``build_model("dqn", env, ...)`` returns an untrained model whose policy reads the
``MovieLensRec-v0`` Dict observation through the long/short-term interest extractor and puts
the algorithm's usual heads on top (one Q-value per item for DQN, one quantile set per item
for QR-DQN, policy logits per item plus a value for PPO / A2C / MaskablePPO). Its defaults are
the plain algorithm; :func:`agents.make_agent` builds the recommended agent (a preset's
settings, logged data attached). With ``mask_excluded=True`` the heads never choose an item the
observation's ``"excluded"`` field marks (:mod:`agents.masking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

from agents.actor_critic import LSRA2C, LSRPPO, LSRMaskablePPO
from agents.dqn import LSRDQN, LSRQRDQN
from agents.extractor import LongShortExtractor
from agents.policies import DuelingDQNPolicy, MaskedActorCriticPolicy, MaskedDQNPolicy, MaskedQRDQNPolicy

#: Algorithm name -> class (all accept ``"MultiInputPolicy"`` and Dict observations, and all
#: take the next-item loss and pre-training of :mod:`agents.supervised`).
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqn": LSRDQN,
    "qrdqn": LSRQRDQN,
    "ppo": LSRPPO,
    "a2c": LSRA2C,
    "maskable_ppo": LSRMaskablePPO,
}

_NEXT_ITEM = ("next_item_weight", "next_item_positions", "next_item_batch_size", "pretrain_steps",
              "pretrain_batch_size", "next_item_softmax", "next_item_negatives")
_OFF_POLICY = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
               "gradient_steps", "target_update_interval", "exploration_fraction", "exploration_initial_eps",
               "exploration_final_eps", "max_grad_norm", "mask_actions", "replay_buffer_class", *_NEXT_ITEM)
_PPO = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range", "ent_coef",
        "vf_coef", "max_grad_norm", *_NEXT_ITEM)

#: Hyperparameter names each algorithm's constructor accepts through :func:`build_model` (beyond
#: policy, env, seed...).
ALGO_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "dqn": (*_OFF_POLICY, "td_loss", "double_q", "td_weight", "item_compute"),
    "qrdqn": _OFF_POLICY,
    "ppo": _PPO,
    "maskable_ppo": _PPO,
    "a2c": ("learning_rate", "n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm",
            *_NEXT_ITEM),
}


def algorithms_taking(name: str) -> list[str]:
    """The algorithms whose constructor takes hyperparameter ``name`` (see :data:`ALGO_HYPERPARAMETERS`)."""
    return [algo for algo, names in ALGO_HYPERPARAMETERS.items() if name in names]


def check_hyperparameters(algo: str, hyperparameters: dict[str, Any]) -> None:
    """Refuse hyperparameters ``algo`` does not take, naming each and the algorithms that take it.

    :raises ValueError: one message listing every refused name
    """
    refused = [name for name in hyperparameters if name not in ALGO_HYPERPARAMETERS[algo]]
    if refused:
        parts = []
        for name in refused:
            takers = algorithms_taking(name)
            parts.append(f"{name!r} (taken by {', '.join(takers)})" if takers else f"{name!r} (no algorithm takes it)")
        raise ValueError(f"algo {algo!r} does not take {'; '.join(parts)}; drop them or choose an algorithm "
                         f"that takes them. {algo} takes: {', '.join(ALGO_HYPERPARAMETERS[algo])}")


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
    n_quantiles: int | None = None,
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
    :param n_quantiles: QR-DQN quantiles per action (``qrdqn`` only; default 50)
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
    :param hyperparameters: constructor arguments of the algorithm (see
        :data:`ALGO_HYPERPARAMETERS`)
    :raises ValueError: a hyperparameter or option ``algo`` does not take (named, with the
        algorithms that take it)
    """
    cls = algorithm_class(algo)
    check_hyperparameters(algo, hyperparameters)
    if n_quantiles is not None and algo != "qrdqn":
        raise ValueError(f"n_quantiles is a qrdqn option, not one of {algo!r}; drop it")
    if dueling and algo != "dqn":
        raise ValueError(f"dueling=True is only available for algo='dqn', not {algo!r}")
    if tied_item_embeddings and not dueling:
        raise ValueError("tied_item_embeddings=True needs dueling=True (it is a dueling-head option)")
    if mask_excluded and algo == "maskable_ppo":
        raise ValueError(
            "mask_excluded=True is not available for algo='maskable_ppo': it masks through the "
            "environment's action_masks() (the same items); pass action_masks= to its predict()"
        )
    policy_kwargs = make_policy_kwargs(algo, extractor_kwargs, net_arch, 50 if n_quantiles is None else n_quantiles)
    policy: str | type = "MultiInputPolicy"  # SB3's own policy when nothing is added
    if algo == "qrdqn":  # sb3-contrib's policy plus the next-item loss's temperature
        policy = MaskedQRDQNPolicy
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
        **hyperparameters,
    )
