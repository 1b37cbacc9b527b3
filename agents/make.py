"""The recommended agent from one call: environments, model and logged data for a preset.

``make_agent(env, algo="dqn", preset="default", **overrides)`` returns an untrained SB3 model of
the configuration a preset describes (:mod:`agents.config`), its logged next-item data attached
and its pre-training due on the first ``learn``, exactly as ``make train`` builds it::

    model = make_agent("ml-100k", seed=0)      # the preset's 64 training environments
    model.learn(600_000)

The training loop with validation, checkpoints and run files is :func:`agents.training.train`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.config import ALGO_FIELDS, TrainConfig, catalogue_size, make_config


# Data and environments ---------------------------------------------------------------------

def load_data(config: TrainConfig):
    """The configured dataset: the interaction log ``config.data`` (:func:`recsim_env.load_interactions`
    with the config's columns), or the MovieLens dataset ``config.dataset``.

    An explicit ``config.data_dir`` must hold the MovieLens dataset (the loader never switches to
    ``$MOVIELENS_DATA``, the cache or a download), and the official datasets are checked against
    their published figures unless ``config.expect_official`` is false.

    :raises FileNotFoundError: the log, or ``data_dir``'s dataset, does not exist, or the
        dataset is found nowhere
    :raises ValueError: a data file is malformed or differs from the official release
    """
    if config.data is not None:
        from recsim_env import load_interactions

        return load_interactions(
            config.data, user=config.user_col, item=config.item_col, rating=config.rating_col,
            value=config.value_col, timestamp=config.timestamp_col, user_features=config.user_feature_cols,
            duplicates=config.duplicates,
        )
    from recsim_env import load_movielens

    return load_movielens(config.dataset, config.data_dir, expect_official=config.expect_official)


#: File of a run directory that records which interaction log a run trained on.
DATA_RECORD = "data.json"


def data_record(config: TrainConfig) -> dict[str, Any] | None:
    """What identifies ``config.data``'s contents: ``{"data": path, "sha256": hex digest}``
    (``None`` for a MovieLens dataset: its loader checks the official figures itself)."""
    if config.data is None:
        return None
    import hashlib

    digest = hashlib.sha256()
    with open(config.data, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"data": config.data, "sha256": digest.hexdigest()}


def check_data_record(config: TrainConfig, run_dir=None) -> dict[str, Any] | None:
    """:func:`data_record` of ``config``, checked against the one ``run_dir`` recorded (if any;
    ``run_dir=None``: a new run, nothing to check).

    :raises ValueError: the interaction log changed since the run started (resuming or
        evaluating it would use other data)
    """
    import json
    from pathlib import Path

    record = data_record(config)
    path = Path(run_dir) / DATA_RECORD if run_dir is not None else None
    if record is not None and path is not None and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("sha256") != record["sha256"]:
            raise ValueError(f"the interaction log {config.data} changed since the run in {run_dir} started "
                             f"(SHA-256 {record['sha256'][:12]}..., recorded {str(saved.get('sha256'))[:12]}...): "
                             "restore the file the run trained on, or start a new run")
    return record


def load_split(config: TrainConfig):
    """The configured :class:`recsim_env.Split` of the configured data (:func:`load_data`).

    :raises FileNotFoundError: see :func:`load_data`
    :raises ValueError: see :func:`load_data`
    """
    from recsim_env import split_ratings

    return split_ratings(load_data(config), config.split, config.train_ratio, config.split_seed)



def make_env(config: TrainConfig, split, mode: str) -> gym.Env:
    """One ``MovieLensRec-v0`` environment on ``split`` in ``mode`` (``"train"``/``"test"``).

    Training environments use ``config.train_rewards`` when set; test environments always use
    the environment's default reward (rating / 5 on a like), so greedy returns are comparable.
    With ``config.policy == "multi_hot"`` training environments are wrapped in
    :class:`recsim_env.MultiHotObservation` (scoring encodes the raw observations itself, see
    :mod:`agents.scoring`).
    """
    import recsim_env  # noqa: F401  (registers the id)

    reward_map = train_reward_map(config, split.data.rating_scale) if mode == "train" else None
    env = gym.make(
        "MovieLensRec-v0",
        mode=mode,
        split_data=split,
        history_len=config.history_len,
        like_threshold=config.like_threshold,
        reward_map=reward_map,
        max_steps=config.max_steps,
    )
    if mode == "train" and config.policy == "multi_hot":
        from recsim_env.wrappers import MultiHotObservation

        env = MultiHotObservation(env)
    return env


def make_test_vec_env(config: TrainConfig, split, num_envs: int = 64) -> gym.vector.VectorEnv:
    """The native ``MovieLensRecVectorEnv`` in test mode (for the greedy-policy simulation)."""
    import recsim_env  # noqa: F401  (registers the id)

    return gym.make_vec(
        "MovieLensRec-v0",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        mode="test",
        split_data=split,
        history_len=config.history_len,
        like_threshold=config.like_threshold,
        max_steps=config.max_steps,
    )


def make_train_vec_env(config: TrainConfig, split):
    """``n_envs`` monitored training environments in an SB3 ``DummyVecEnv``.

    SB3 needs same-step autoreset (the terminal observation in ``info``), while the native
    ``MovieLensRecVectorEnv`` resets on the next step (Gymnasium's default); environment steps
    are cheap next to the gradient steps, so the single environments are stacked instead.

    With ``config.episode == "pass"`` each environment is wrapped in :class:`UserPasses`:
    environment ``i`` takes the training users ``i, i + n_envs, ...`` (of
    ``env.unwrapped.users``), so ``len(users)`` finished sessions are one pass over all users.
    """
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make(i: int) -> gym.Env:
        env = make_env(config, split, "train")
        if config.episode == "pass":
            env = UserPasses(env, env.unwrapped.users[i :: config.n_envs], seed=config.seed + i)
        return Monitor(env)

    return DummyVecEnv([lambda i=i: make(i) for i in range(config.n_envs)])


class UserPasses(gym.Wrapper):
    """Training sessions in passes over a list of users: each ``reset`` without a ``"user"``
    option starts the next user of a shuffled copy of ``users``, reshuffled after every pass.

    The wrapped ``MovieLensRec-v0`` still draws the session's start prefix itself; only the
    user is chosen here. SB3's vector environments reset without options, so this is how a
    training episode of the paper ("in every episode the agent recommends repeatedly to each
    user") is one pass over all users.

    :param env: a ``MovieLensRec-v0`` environment in train mode
    :param users: the users to visit (elements of ``env.unwrapped.users``)
    :param seed: seed of the shuffles
    """

    def __init__(self, env: gym.Env, users: np.ndarray, seed: int | None = None) -> None:
        super().__init__(env)
        self.pass_users = np.asarray(users, dtype=np.int64)
        if self.pass_users.size == 0:
            raise ValueError("UserPasses needs at least one user (more environments than training users?)")
        self._rng = np.random.default_rng(seed)
        self._order: list[int] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options is None or options.get("user") is None:
            if not self._order:
                self._order = self._rng.permutation(self.pass_users).tolist()
            options = {**(options or {}), "user": int(self._order.pop())}
        return self.env.reset(seed=seed, options=options)



# Model --------------------------------------------------------------------------------------

def build_agent(config: TrainConfig, env, device: str = "cpu", *, tensorboard_log: str | None = None,
                verbose: int = 0):
    """The untrained model ``config`` describes, around ``env`` (no logged data attached yet:
    see :func:`attach_logged_data`, or use :func:`make_agent`, which does both).

    :param config: the configuration (validated)
    :param env: the training environments (:func:`make_train_vec_env`) or any
        ``MovieLensRec-v0`` env / SB3 VecEnv of them
    :param device: torch device
    :param tensorboard_log: TensorBoard folder (None: none)
    :param verbose: SB3 verbosity
    """
    from agents.factory import algorithm_class, build_model

    if config.policy == "multi_hot":  # SB3's default policy: only the head sizes are ours
        arch = list(config.net_arch)
        net_arch = arch if config.algo in ("dqn", "qrdqn") else dict(pi=arch, vf=list(arch))
        policy_kwargs = dict(net_arch=net_arch, **({"n_quantiles": config.n_quantiles} if config.algo == "qrdqn" else {}))
        return algorithm_class(config.algo)(
            "MultiInputPolicy", env, policy_kwargs=policy_kwargs, seed=config.seed, device=device,
            tensorboard_log=tensorboard_log, verbose=verbose, **algo_kwargs(config))
    dueling = config.dueling and config.algo == "dqn"
    return build_model(
        config.algo, env, extractor_kwargs=extractor_kwargs(config), net_arch=config.net_arch,
        n_quantiles=config.n_quantiles if config.algo == "qrdqn" else None, dueling=dueling, tied_item_embeddings=dueling and config.tied_item_embeddings,
        mask_excluded=config.mask_excluded and config.algo in ALGO_FIELDS["mask_excluded"],
        seed=config.seed, device=device, tensorboard_log=tensorboard_log, verbose=verbose,
        **algo_kwargs(config),
    )  # fmt: skip


def attach_logged_data(model, config: TrainConfig, env) -> None:
    """Attach the logged next items of the training split when the model uses them (next-item
    loss, or pre-training still to do), read through the (first) training environment's tables.

    :param model: a model of ``config`` (built or loaded)
    :param config: the configuration
    :param env: the training environment, or an SB3 VecEnv of them
    :raises ValueError: the environment is not a train-mode ``MovieLensRec-v0`` one
    """
    from agents.next_item import LoggedNextItems

    if getattr(model, "uses_next_item_data", False):
        model.set_next_item_source(LoggedNextItems(_first_env(env), seed=config.seed))


def _first_env(env) -> gym.Env:
    """The first single environment of ``env`` (itself, or an SB3 / Gymnasium vector env's first)."""
    envs = getattr(env, "envs", None)  # SB3 DummyVecEnv, Gymnasium SyncVectorEnv
    if envs:
        return envs[0]
    if hasattr(env, "unwrapped") and hasattr(env.unwrapped, "simulator"):
        return env
    raise ValueError(f"the logged next-item data are read from a MovieLensRec-v0 environment; got "
                     f"{type(env).__name__}: pass a MovieLensRec-v0 env, an SB3 DummyVecEnv of them, or "
                     f"set next_item_weight=0 and pretrain_steps=0")


#: Constructor arguments whose config field has another name (every other argument is a field).
CONFIG_FIELD_OF: dict[str, str] = {
    "td_loss": "loss", "next_item_batch_size": "next_item_batch", "pretrain_batch_size": "pretrain_batch",
    "replay_buffer_class": "replay_buffer", "next_item_softmax": "next_item_loss",
}


def train_reward_map(config: TrainConfig, rating_scale: tuple[float, ...] | None = None) -> dict[float, float] | None:
    """The training environments' ``reward_map`` (rating -> reward) from ``config.train_rewards``
    (None: the environment's own rewards).

    :param rating_scale: the dataset's ratings, increasing (default: those of ``config.dataset``)
    :raises ValueError: ``train_rewards`` does not give one reward per rating of the scale
    """
    if config.train_rewards is None:
        return None
    from recsim_env.dataset import RATING_SCALES

    scale = RATING_SCALES[config.dataset] if rating_scale is None else tuple(rating_scale)
    if len(config.train_rewards) != len(scale):
        raise ValueError(f"train_rewards gives {len(config.train_rewards)} rewards, but the data have "
                         f"{len(scale)} ratings {scale}: give one reward per rating (lowest first), or "
                         "train_rewards=None (--train-rewards none) for the environment's own rewards")
    return {rating: float(r) for rating, r in zip(scale, config.train_rewards)}


def algo_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The algorithm constructor's hyperparameters from the config: only those ``config.algo``
    takes (:data:`agents.factory.ALGO_HYPERPARAMETERS`), so a preset's values for other
    algorithms are not passed; the learning rate becomes a linear schedule when
    ``final_learning_rate`` is set, ``replay_buffer`` its class
    (:data:`agents.replay.REPLAY_BUFFER_CLASSES`)."""
    from agents.factory import ALGO_HYPERPARAMETERS

    kwargs = {name: getattr(config, CONFIG_FIELD_OF.get(name, name)) for name in ALGO_HYPERPARAMETERS[config.algo]}
    if "replay_buffer_class" in kwargs:
        from agents.replay import REPLAY_BUFFER_CLASSES

        kwargs["replay_buffer_class"] = REPLAY_BUFFER_CLASSES[config.replay_buffer]
    if config.final_learning_rate is not None:
        from stable_baselines3.common.utils import LinearSchedule

        kwargs["learning_rate"] = LinearSchedule(config.learning_rate, config.final_learning_rate, 1.0)
    return kwargs


def extractor_kwargs(config: TrainConfig) -> dict[str, Any]:
    """:class:`agents.extractor.LongShortExtractor` options from the config."""
    return dict(
        embed_dim=config.embed_dim,
        n_heads=config.n_heads,
        n_layers=config.n_layers,
        dropout=config.dropout,
        dnn_hidden=tuple(config.dnn_hidden),
        share_item_embeddings=config.share_item_embeddings,
        layer_norm=config.layer_norm,
        causal=config.causal,
        readout=config.readout,
        positions=config.positions,
        feed_forward=config.feed_forward,
        embedding_init_std=config.embedding_init_std,
        interests=config.interests,
        liked_pooling=config.item_compute,
    )


#: Config fields that may differ when a run is resumed: its budget, and where it runs. Every


#: Config fields that describe the environments :func:`make_agent` builds; with an environment
#: of the caller's they cannot apply, and passing one is an error.
ENV_FIELDS: tuple[str, ...] = (
    "dataset", "data_dir", "expect_official", "split", "train_ratio", "split_seed", "history_len",
    "like_threshold", "train_rewards", "max_steps", "n_envs", "episode", "data", "user_col", "item_col",
    "rating_col", "value_col", "timestamp_col", "user_feature_cols", "duplicates",
)
#: Config fields of the training loop (:func:`agents.training.train`, ``make train``), not of the
#: model: :func:`make_agent` refuses them.
LOOP_FIELDS: tuple[str, ...] = (
    "name", "preset", "runs_dir", "total_timesteps", "max_episodes", "max_train_seconds", "eval_freq",
    "val_fraction", "eval_k", "checkpoint_freq", "tune", "torch_threads", "kernel_path", "device",
)


def make_agent(env: Any = "ml-100k", algo: str | None = None, preset: str = "default", *,
               device: str = "cpu", tensorboard_log: str | None = None, verbose: int = 0, **overrides: Any):
    """The recommended agent: an untrained SB3 model of a preset, ready for ``learn``.

    The same model ``make train`` trains for the same settings (``python -m experiments.train``
    builds it with these functions): the preset's algorithm settings and extractor, its
    per-dataset and per-algorithm values (:data:`agents.config.DATASET_PRESETS`,
    :data:`agents.config.ALGO_PRESETS`), the logged next-item data of the training split
    attached, and the preset's ``pretrain_steps`` of next-item pre-training run by the first
    ``learn`` (or call ``model.pretrain()`` yourself first). ``model.agent_config`` holds the
    :class:`~agents.config.TrainConfig` it was built from, its ``"auto"`` catalogue settings
    decided for the environment's catalogue (:meth:`~agents.config.TrainConfig.for_catalogue`).

    >>> model = make_agent("ml-100k", algo="ppo", seed=0)   # doctest: +SKIP
    >>> model.learn(600_000)                                 # doctest: +SKIP

    Same seed, same weights: on one machine always; across x86-64 machines only on one kernel
    path. ``make train`` pins PyTorch's kernels to AVX2 before it starts (``kernel_path``);
    here it is yours to do: call :func:`agents.pin_kernel_path` ``("avx2")`` before any torch
    operation, or start Python with ``ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2``.

    :param env: a dataset name (``"ml-100k"``, ``"ml-1m"``, ...) or a :class:`recsim_env.Split`:
        the preset's training environments are built on it (``n_envs`` monitored
        ``MovieLensRec-v0`` envs in train mode with the preset's training rewards, in an SB3
        ``DummyVecEnv``, as ``make train``; a Split whose rating scale the preset's
        ``train_rewards`` do not fit, such as an interaction log's, trains on the environment's
        reward unless ``train_rewards`` is given, as ``make train --data`` does); or your own train-mode ``MovieLensRec-v0`` env / SB3
        VecEnv of them, used as it is (its rewards and history length are then yours, and the
        environment settings of the config cannot be passed)
    :param algo: ``"dqn"``, ``"qrdqn"``, ``"ppo"``, ``"a2c"`` or ``"maskable_ppo"`` (default:
        the preset's, ``dqn``)
    :param preset: a key of :data:`agents.config.PRESETS` (default ``"default"``)
    :param device: torch device (default ``"cpu"``)
    :param tensorboard_log: TensorBoard folder (None: none)
    :param verbose: SB3 verbosity
    :param overrides: :class:`~agents.config.TrainConfig` fields (``seed``, ``learning_rate``,
        ``embed_dim``, ...)
    :return: the SB3 model (``LSRDQN``, ``LSRQRDQN``, ``LSRPPO``, ``LSRA2C`` or ``LSRMaskablePPO``)
    :raises ValueError: an unknown setting, one the algorithm does not take (named, with the
        algorithms that take it), one of the training loop's (:data:`LOOP_FIELDS`), an environment
        setting (:data:`ENV_FIELDS`) with your own env, or an invalid value
    """
    loop = sorted(set(overrides) & set(LOOP_FIELDS))
    if loop:
        raise ValueError(f"{', '.join(loop)}: settings of the training loop (agents.training.train, make train), "
                         "not of the model; pass device= as an argument, and the budget to model.learn()")
    if algo is not None:
        overrides["algo"] = algo
    own_env = not isinstance(env, str) and not _is_split(env)
    if own_env:
        env_settings = sorted(set(overrides) & set(ENV_FIELDS))
        if env_settings:
            raise ValueError(f"{', '.join(env_settings)} configure the environments make_agent builds, but you "
                             "passed your own env: set them on it, or pass a dataset name or Split instead")
    elif isinstance(env, str):
        if overrides.get("dataset", env) != env:
            raise ValueError(f"two datasets given: env={env!r} and dataset={overrides['dataset']!r}")
        overrides["dataset"] = env
    config = make_config(preset, **overrides)
    if (_is_split(env) and "train_rewards" not in overrides and config.train_rewards is not None
            and len(config.train_rewards) != len(env.data.rating_scale)):
        config = make_config(preset, **overrides, train_rewards=None)  # the preset's are for another scale
    if own_env:
        vec_env = env
    else:
        split = load_split(config) if isinstance(env, str) else env
        vec_env = make_train_vec_env(config, split)
    config = config.for_catalogue(catalogue_size(vec_env.action_space))  # the "auto" settings, decided
    model = build_agent(config, vec_env, device, tensorboard_log=tensorboard_log, verbose=verbose)
    attach_logged_data(model, config, vec_env)
    model.agent_config = config
    return model


def _is_split(obj: Any) -> bool:
    from recsim_env.dataset import Split

    return isinstance(obj, Split)
