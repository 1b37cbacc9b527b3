"""RL Baselines3 Zoo configs: train ``MovieLensRec-v0`` with ``rl_zoo3`` and the LSRWRL network.

The zoo reads ``hyperparams`` from a ``--conf-file`` module, keyed by environment id only: the
algorithm comes from ``--algo``, so one module can serve one algorithm. Hence one thin module
per algorithm, each ``hyperparams = {"MovieLensRec-v0": zoo_hyperparams(<algo>)}``, the entry
of preset ``default`` (:func:`zoo_hyperparams`)::

    python -m rl_zoo3.train --algo dqn --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_dqn
    python -m rl_zoo3.train --algo ppo --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_ppo
    python -m rl_zoo3.train --algo a2c --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_a2c
    python -m rl_zoo3.train --algo qrdqn --env MovieLensRec-v0 --gym-packages recsim_env --conf-file agents.zoo_qrdqn

with ``MOVIELENS_DATA`` pointing at the folder holding ``ml-100k/`` (or the data cache /
download as ``gym.make("MovieLensRec-v0")`` finds it). ``--gym-packages recsim_env`` is
required: the zoo checks the id before it reads the config. ``--algo`` must match the module
(``--algo ppo --conf-file agents.zoo_dqn`` fails in the constructor); ``--conf-file agents.zoo``
itself is refused with a pointer to the thin modules. Usual zoo options apply: ``-n`` (budget),
``--seed``, ``-f`` (log folder), ``--eval-freq -1`` (the zoo's evaluation runs on train-mode
sessions with the training rewards; the project's validation / test evaluation is
:func:`agents.evaluate_model`, ``make train``), ``--device cpu`` (the zoo's default is ``auto``),
``--num-threads 2``, ``--hyperparams key:value`` (e.g. ``n_envs:8``). The model is saved to
``<log folder>/<algo>/MovieLensRec-v0_<run>/MovieLensRec-v0.zip``; load it with SB3's class
(``stable_baselines3.DQN.load(path)``; ``agents`` must be importable, it holds the network).

What the zoo path gives. The zoo builds SB3's / sb3-contrib's own ``DQN``, ``PPO``, ``A2C``,
``QRDQN`` (its ``ALGOS`` table; a config cannot add a class to it), with, from preset
``default`` (:func:`agents.config.make_config`):

* the LSRWRL features extractor (:class:`agents.extractor.LongShortExtractor`, the preset's
  settings) and head sizes (``net_arch``), via ``policy_kwargs``
  (:func:`agents.factory.make_policy_kwargs`);
* the project's policy classes: DQN the dueling Q-head with item advantages tied to the
  extractor's item embeddings (:class:`agents.policies.DuelingDQNPolicy`); every algorithm
  the in-network masking of ``obs["excluded"]`` when *choosing* (``predict``, the greedy part
  of epsilon-greedy; the PPO / A2C action distribution, rollouts and update alike);
* SB3's hyperparameters of the preset: learning rate with its linear decay to 0 (the zoo's
  ``"lin_<lr>"``), ``gamma``, batch / buffer / exploration / target-update settings (off-policy),
  ``n_steps`` / ``n_epochs`` / GAE / clipping / entropy / value coefficients (on-policy),
  gradient clipping, ``n_envs`` (64) and ``n_timesteps`` (600,000, the preset's budget);
* the preset's replay buffer (off-policy): ``replay_buffer_class``
  :class:`agents.replay.CompactDictReplayBuffer` (SB3's ``DictReplayBuffer`` with
  ``replay_buffer="sb3"``);
* the preset's training rewards (rating / 5 for every consumed rating) as the environment's
  ``reward_map`` in ``env_kwargs``. ``--env-kwargs`` on the command line *replaces* the entry's
  ``env_kwargs`` entirely: repeat ``reward_map`` there.

What it does not give (the project's algorithm classes ``LSRDQN``, ``LSRPPO``... hold these,
and the zoo cannot build them): the supervised next-item loss (``next_item_weight``) and the
next-item pre-training (``pretrain_steps``) with the logged data they need, masked exploration
(``mask_actions``: SB3 explores uniformly over all items), the masked TD target and double
Q-learning (``double_q``: SB3's DQN takes the plain max of the target network), the selectable
TD loss (SB3's DQN uses Huber, which is preset ``default``'s), ``td_weight``; nor the project's
validation, checkpoints and run files. For the recommended agent use
:func:`agents.make_agent` (``make_agent("ml-100k", algo="ppo", seed=0).learn(600_000)``) or
``make train``; :func:`zoo_omissions` lists the settings a zoo entry drops.

``-optimize`` caveat. The zoo's samplers (``rl_zoo3.hyperparams_opt``) replace the whole
``policy_kwargs`` with ``{"net_arch": ..., "activation_fn": ...}``, which would silently drop a
custom extractor given there. The policy classes named here (:class:`ZooDuelingDQNPolicy`,
:class:`ZooQRDQNPolicy`, :class:`ZooActorCriticPolicy`...) therefore carry preset
``default``'s extractor, its settings and the masking / dueling options as their *defaults*, so
a tuned trial still trains the LSRWRL network, with the sampled head (``net_arch``,
``activation_fn``) on top; explicit ``policy_kwargs`` (as the entries pass) override the
defaults. Under ``-optimize`` those defaults are preset ``default``'s whichever preset an entry
came from, and the samplers' other values (``n_steps``, ``batch_size``, ``gamma``...) replace
the preset's as usual.
"""

from __future__ import annotations

import inspect
from typing import Any

from agents.config import TrainConfig, make_config
from agents.factory import make_policy_kwargs
from agents.make import CONFIG_FIELD_OF, algo_kwargs, extractor_kwargs, train_reward_map
from agents.policies import DuelingDQNPolicy, MaskedActorCriticPolicy, MaskedDQNPolicy, MaskedQRDQNPolicy

#: The environment id the entries are keyed by.
ENV_ID = "MovieLensRec-v0"

#: The algorithms with a zoo entry: those of the project that the zoo's ``ALGOS`` table holds
#: (``maskable_ppo`` is not in it). Module ``agents.zoo_<algo>`` serves each.
ZOO_ALGOS: tuple[str, ...] = ("dqn", "qrdqn", "ppo", "a2c")

#: Constructor arguments of the project's algorithm classes that SB3's own classes lack (the
#: zoo builds SB3's): dropped from the entries, see :func:`zoo_omissions`.
LSR_ONLY_ARGUMENTS: tuple[str, ...] = (
    "mask_actions", "double_q", "td_weight", "td_loss", "next_item_weight", "next_item_positions",
    "next_item_batch_size", "pretrain_steps", "pretrain_batch_size", "next_item_softmax", "next_item_negatives",
    "item_compute",
)


def _policy_defaults(algo: str) -> dict[str, Any]:
    """Preset ``default``'s policy options for ``algo`` (the defaults of the zoo policy classes)."""
    return _policy_kwargs(make_config("default", algo=algo))


def _policy_kwargs(config: TrainConfig) -> dict[str, Any]:
    kwargs = make_policy_kwargs(config.algo, extractor_kwargs(config), config.net_arch, config.n_quantiles)
    if config.algo == "dqn" and config.dueling:
        kwargs["tied_item_embeddings"] = config.tied_item_embeddings
    kwargs["mask_excluded"] = config.mask_excluded
    return kwargs


class ZooDuelingDQNPolicy(DuelingDQNPolicy):
    """:class:`~agents.policies.DuelingDQNPolicy` defaulting to preset ``default``'s LSRWRL
    extractor, head and options (so that the zoo's ``-optimize``, which replaces
    ``policy_kwargs``, keeps them); explicit keyword arguments win."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**_policy_defaults("dqn"), **kwargs})


class ZooDQNPolicy(MaskedDQNPolicy):
    """:class:`~agents.policies.MaskedDQNPolicy` (no dueling head) defaulting to preset
    ``default``'s LSRWRL extractor and options; explicit keyword arguments win."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        defaults = _policy_defaults("dqn")
        defaults.pop("tied_item_embeddings", None)
        super().__init__(*args, **{**defaults, **kwargs})


class ZooQRDQNPolicy(MaskedQRDQNPolicy):
    """:class:`~agents.policies.MaskedQRDQNPolicy` defaulting to preset ``default``'s LSRWRL
    extractor and options; explicit keyword arguments win."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**_policy_defaults("qrdqn"), **kwargs})


class ZooActorCriticPolicy(MaskedActorCriticPolicy):
    """:class:`~agents.policies.MaskedActorCriticPolicy` (PPO, A2C) defaulting to preset
    ``default``'s LSRWRL extractor and options; explicit keyword arguments win."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**_policy_defaults("ppo"), **kwargs})


def _policy_name(config: TrainConfig) -> str:
    if config.algo == "dqn":
        cls = ZooDuelingDQNPolicy if config.dueling else ZooDQNPolicy
    else:
        cls = {"qrdqn": ZooQRDQNPolicy}.get(config.algo, ZooActorCriticPolicy)
    # A dotted string: the zoo imports it (it tests `"." in policy`, which a class fails).
    return f"{cls.__module__}.{cls.__qualname__}"


def _learning_rate(config: TrainConfig) -> float | str:
    if config.final_learning_rate is None:
        return float(config.learning_rate)
    if config.final_learning_rate == 0:
        return f"lin_{float(config.learning_rate)!r}"  # the zoo's linear decay to 0
    raise ValueError(f"final_learning_rate={config.final_learning_rate}: the zoo's schedules are constant or "
                     "decay to 0; set final_learning_rate to None or 0")


def _env_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The ``MovieLensRec-v0`` arguments the config sets to other values than the environment's
    defaults (training rewards as ``reward_map``)."""
    from recsim_env.env import MovieLensRecEnv

    defaults = {name: p.default for name, p in inspect.signature(MovieLensRecEnv.__init__).parameters.items()}
    wanted = dict(dataset=config.dataset, data_dir=config.data_dir, split=config.split,
                  train_ratio=config.train_ratio, split_seed=config.split_seed, history_len=config.history_len,
                  like_threshold=config.like_threshold, max_steps=config.max_steps)
    kwargs = {name: value for name, value in wanted.items() if value != defaults[name]}
    if config.train_rewards is not None:
        kwargs["reward_map"] = train_reward_map(config)
    return kwargs


def _config(algo: str, preset: str, overrides: dict[str, Any]) -> TrainConfig:
    if algo not in ZOO_ALGOS:
        raise ValueError(f"no zoo entry for algo {algo!r}; the zoo builds {', '.join(ZOO_ALGOS)} of the project's "
                         "algorithms (agents.make_agent builds all of them)")
    config = make_config(preset, algo=algo, **overrides)
    if config.data is not None:
        raise ValueError(f"data={config.data!r}: the zoo entries build MovieLensRec-v0 from a MovieLens dataset "
                         "name (env_kwargs); train on an interaction log with make train --data or make_agent")
    if config.policy != "lsrwrl":
        raise ValueError(f"policy={config.policy!r}: the zoo entries put the LSRWRL extractor under SB3's heads "
                         "(policy='lsrwrl')")
    if config.episode != "session":
        raise ValueError(f"episode={config.episode!r}: the zoo's environments run single-user sessions "
                         "(episode='session'); use agents.training.train / make train")
    return config


def zoo_hyperparams(algo: str, preset: str = "default", **overrides: Any) -> dict[str, Any]:
    """The zoo's hyperparameter entry for ``algo`` from a preset (the value of
    ``hyperparams["MovieLensRec-v0"]`` in a ``--conf-file`` module).

    :param algo: one of :data:`ZOO_ALGOS`; must match the zoo's ``--algo``
    :param preset: a key of :data:`agents.config.PRESETS` (default ``"default"``)
    :param overrides: :class:`~agents.config.TrainConfig` fields (``embed_dim``, ``dataset``...)
    :return: a fresh dict (the zoo edits the entry it reads): ``policy`` (a dotted class name),
        ``policy_kwargs``, the SB3 constructor's hyperparameters, ``n_envs``, ``n_timesteps``
        and, where needed, ``env_kwargs``
    :raises ValueError: unknown algo, or a preset the zoo cannot express (``policy="multi_hot"``,
        ``episode="pass"``, a learning rate decaying to a value other than 0)
    """
    config = _config(algo, preset, overrides)
    entry: dict[str, Any] = {
        "policy": _policy_name(config),
        "policy_kwargs": _policy_kwargs(config),
        "n_envs": config.n_envs,
        "n_timesteps": config.total_timesteps,
    }
    entry.update({k: v for k, v in algo_kwargs(config).items() if k not in LSR_ONLY_ARGUMENTS})
    entry["learning_rate"] = _learning_rate(config)
    env_kwargs = _env_kwargs(config)
    if env_kwargs:
        entry["env_kwargs"] = env_kwargs
    return entry


def zoo_omissions(algo: str, preset: str = "default", **overrides: Any) -> dict[str, Any]:
    """The settings of the preset's agent that a zoo entry cannot apply, with their values: the
    options of the project's algorithm classes (:data:`LSR_ONLY_ARGUMENTS`) that SB3's own class,
    which the zoo builds, lacks, under their :class:`~agents.config.TrainConfig` field names.
    (The training loop's settings, validation and checkpoints, are not listed: the zoo has its own.)

    :param algo: one of :data:`ZOO_ALGOS`
    :param preset: a key of :data:`agents.config.PRESETS`
    :param overrides: :class:`~agents.config.TrainConfig` fields
    """
    config = _config(algo, preset, overrides)
    fields = [CONFIG_FIELD_OF.get(k, k) for k in algo_kwargs(config) if k in LSR_ONLY_ARGUMENTS]
    return {name: getattr(config, name) for name in fields}


def __getattr__(name: str) -> Any:
    if name == "hyperparams":  # `--conf-file agents.zoo`: the zoo reads this module's `hyperparams`
        raise AttributeError(
            "agents.zoo serves no single algorithm (the zoo keys a config by environment id only); use "
            f"--conf-file agents.zoo_<algo> with the same --algo, <algo> one of {', '.join(ZOO_ALGOS)}")
    raise AttributeError(f"module 'agents.zoo' has no attribute {name!r}")
