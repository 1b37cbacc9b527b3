"""Train the LSRWRL agent (or another algorithm around its extractor) on ``MovieLensRec-v0``.

Reads top to bottom: config -> data and environments -> model -> training loop (callbacks:
episode returns, validation curve, checkpoints, budget) -> test evaluation -> saving.

Usage::

    python -m experiments.train                       # preset "default", ml-100k
    python -m experiments.train --preset paper        # the paper's settings
    python -m experiments.train --algo ppo --total-timesteps 100000 --seed 1
    python -m experiments.train --resume runs/lsrwrl-20250101-120000
    python -m experiments.train --run-dir runs/mine --overwrite   # replace an earlier run there

A run directory ``<runs_dir>/<name>-<timestamp>/`` holds ``config.json`` (full config incl.
seed), ``versions.json``, ``metrics.json``, ``curve.json``, ``model.zip``, ``learning_curve.png``,
``tensorboard/`` and ``checkpoints/``. Every file is written atomically (temporary file in the
same folder, then ``os.replace``), so an interrupt never leaves a half-written result.

The budget is counted in environment steps (``total_timesteps``, optionally ``max_episodes``),
so the same seed gives the same result on a fast or a slow machine. ``max_train_seconds`` is an
optional wall-clock cap; a run it (or an interrupt) stops early is marked incomplete.

Nothing is created before the config, the device and the data have been checked: those errors
print one message and exit with status 2. An existing ``--run-dir`` is refused unless
``--resume`` (continue it) or ``--overwrite`` (replace it). SIGINT (Ctrl-C) and SIGTERM stop
training at the next step, save a checkpoint and exit with status 130 / 143, the resume
command as the last line; a second Ctrl-C aborts at once, without a new checkpoint. A
checkpoint is also saved before the first step, so any run that got that far can be resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from experiments.config import OFF_POLICY_ALGOS, TrainConfig, add_config_arguments, config_from_args, parse_value
from experiments.run_dir import RunDirError, RunDirLock, check_new_run_dir, clear_run_dir, new_run_dir
from recsim_env.files import atomic_write, atomic_write_text

#: The paper's ML-100K figures (Table 1, LSRWRL row), printed beside ours.
PAPER_ML100K = {"precision@10": 0.207, "recall@10": 0.121}
PAPER_FIGURES = {"ml-100k": PAPER_ML100K, "ml-1m": {"precision@10": 0.243, "recall@10": 0.136}}
METRIC_KEYS = ("precision@10", "recall@10", "ndcg@10", "hit_rate@10")


# JSON files ----------------------------------------------------------------------------------


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write_text(path, text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on."""
    import gymnasium
    import sb3_contrib
    import stable_baselines3
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
    }


class SetupError(Exception):
    """A problem found before training started (config, device, data, run directory).

    Nothing was trained, and no run directory was created or changed.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run; raised by :func:`train` after saving what it could.

    A subclass of ``KeyboardInterrupt``, so code that catches ``Exception`` does not swallow it.

    :param signal_name: ``"SIGINT"`` or ``"SIGTERM"``
    :param run_dir: the run directory (``None``: interrupted before it was created)
    :param checkpoint: the newest checkpoint folder, which ``--resume`` continues from (``None``:
        nothing to resume)
    :param step: environment steps in that checkpoint
    :param saved_now: the checkpoint was written on this interrupt (``False``: a second signal
        aborted, or training had already finished and been checkpointed)
    """

    def __init__(self, signal_name: str, run_dir: Path | None = None, checkpoint: Path | None = None,
                 step: int = 0, saved_now: bool = False) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.step = step
        self.saved_now = saved_now

    @property
    def exit_status(self) -> int:
        """The shell convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


class _StopSignals:
    """SIGINT and SIGTERM handling during :func:`train` (main thread only).

    While ``defer`` is on (during ``model.learn``) the first signal only sets ``received``;
    the training callback then stops SB3 at the end of the current step, so the model, the
    replay buffer and the progress bar are left consistent. Otherwise, and on a second signal,
    the handler raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self.defer = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum).name
        if first and self.defer:
            print(f"\n{self.received}: stopping after this step to save a checkpoint "
                  "(Ctrl-C again aborts without it)", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt


# Data and environments ---------------------------------------------------------------------


def load_split(config: TrainConfig):
    """The configured :class:`recsim_env.Split` of the configured dataset.

    An explicit ``config.data_dir`` must hold the dataset (the loader never switches to
    ``$MOVIELENS_DATA``, the cache or a download), and the official datasets are checked against
    their published figures unless ``config.expect_official`` is false.

    :raises FileNotFoundError: ``data_dir`` lacks the dataset, or it is found nowhere
    :raises ValueError: a data file is malformed or differs from the official release
    """
    from recsim_env import load_movielens, split_ratings

    data = load_movielens(config.dataset, config.data_dir, expect_official=config.expect_official)
    return split_ratings(data, config.split, config.train_ratio, config.split_seed)


def resolve_device(device: str) -> str:
    """The torch device a run will use; a CUDA device that is not there is an error.

    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available)
    :return: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
    :raises SetupError: CUDA asked for but not available, or no GPU ``N``
    """
    import torch as th

    if device == "auto":
        return "cuda" if th.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not th.cuda.is_available():
            raise SetupError(
                f"device={device!r}, but this torch ({th.__version__}) sees no CUDA GPU "
                "(torch.cuda.is_available() is False); use --device cpu, or --device auto to use "
                "a GPU only when there is one"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= th.cuda.device_count():
            raise SetupError(f"device={device!r}, but there are only {th.cuda.device_count()} CUDA GPUs "
                             f"(cuda:0 .. cuda:{th.cuda.device_count() - 1})")
    return device


def make_env(config: TrainConfig, split, mode: str) -> gym.Env:
    """One ``MovieLensRec-v0`` environment on ``split`` in ``mode`` (``"train"``/``"test"``).

    Training environments use ``config.train_rewards`` when set; test environments always use
    the environment's default reward (rating / 5 on a like), so greedy returns are comparable.
    """
    import recsim_env  # noqa: F401  (registers the id)

    reward_map = None
    if mode == "train" and config.train_rewards is not None:
        reward_map = {rating: float(r) for rating, r in zip(range(1, 6), config.train_rewards)}
    return gym.make(
        "MovieLensRec-v0",
        mode=mode,
        split_data=split,
        history_len=config.history_len,
        like_threshold=config.like_threshold,
        reward_map=reward_map,
        max_steps=config.max_steps,
    )


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


def replay_bytes_per_transition(observation_space: gym.spaces.Dict, action_space: gym.Space) -> int:
    """Bytes one transition takes in SB3's ``DictReplayBuffer`` (no memory optimisation).

    ``2 * sum(obs field bytes)`` (observation and next observation, stored in their own
    dtypes: int32 user and history, uint8 packed liked and excluded bits) + the action (int64 for
    ``Discrete``) + reward, done and timeout (float32 each).

    :param observation_space: the Dict observation space
    :param action_space: the action space
    """
    obs = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in observation_space.spaces.values())
    action_dtype = np.dtype(action_space.dtype)
    action_dtype = np.dtype(np.float32) if action_dtype == np.float64 else action_dtype
    action = int(np.prod(action_space.shape or (1,))) * action_dtype.itemsize
    return 2 * obs + action + 3 * np.dtype(np.float32).itemsize


# Evaluation --------------------------------------------------------------------------------


def evaluate_model(model, config: TrainConfig, split, k: int = 10, greedy: bool = True) -> dict[str, float]:
    """Ranking metrics on ``split``'s test part plus the greedy policy's simulated return.

    :param model: trained SB3 model
    :param config: the run's config (environment settings)
    :param split: the split to evaluate on (its test part is the target)
    :param k: metric cut-off
    :param greedy: also simulate the greedy policy, one test episode per eligible user
    :return: ``evaluate_ranking``'s metrics, averaged over the ``n_users`` users with at least one
        test item, and ``greedy_mean_return``, ``greedy_mean_likes``, ``greedy_mean_length``
        averaged over the ``greedy_n_users`` users with at least one *liked* test item (the
        users a test episode can start from: 907 of 943 on ML-100K's default split)
    """
    from agents.scoring import greedy_return, make_score_fn
    from recsim_env import evaluate_ranking

    test_env = make_env(config, split, "test")
    metrics = evaluate_ranking(make_score_fn(model, test_env), split, k=k)
    if greedy:
        vec = make_test_vec_env(config, split)
        sim = greedy_return(model, vec)
        vec.close()
        metrics.update({f"greedy_{key}": value for key, value in sim.items() if key != "n_episodes"})
        metrics["greedy_n_users"] = sim["n_episodes"]  # one episode per user
    test_env.close()
    return metrics


def popularity_metrics(split, k: int = 10) -> dict[str, float]:
    """The popularity ranking evaluated by the same evaluator on the same split."""
    from agents.baselines.popularity import PopularityRecommender
    from recsim_env import evaluate_ranking

    return evaluate_ranking(PopularityRecommender().fit(split).score, split, k=k)


# Training callback -------------------------------------------------------------------------


def _training_callback_class():
    from stable_baselines3.common.callbacks import BaseCallback

    class TrainingMonitor(BaseCallback):
        """Episode returns, periodic validation, checkpoints, budgets, stop signals."""

        def __init__(self, runner: _Runner) -> None:
            super().__init__()
            self.runner = runner

        def _on_step(self) -> bool:
            r = self.runner
            for info in self.locals.get("infos", ()):
                ep = info.get("episode")
                if ep is not None:
                    r.curve["episodes"].append([int(self.num_timesteps), float(ep["r"]), int(ep["l"])])
            n_episodes = r.episodes_done()
            if r.config.eval_freq and self.num_timesteps >= r.next_eval:
                r.validate(self.model)
                r.next_eval += r.config.eval_freq
            if r.config.checkpoint_freq and self.num_timesteps >= r.next_checkpoint:
                r.save_checkpoint(self.model)
                r.next_checkpoint += r.config.checkpoint_freq
            if r.signals is not None and r.signals.received:
                r.stop_reason = f"interrupted by {r.signals.received}"
                return False
            # total_timesteps is left to SB3's own loop: stopping from here would drop the last
            # step's transition and update. The other budgets can only stop it from here.
            reason = budget_exhausted(r.config, int(self.num_timesteps), n_episodes, r.train_seconds())
            if reason is not None and self.num_timesteps < r.config.total_timesteps:
                r.stop_reason = reason
                return False
            return True

    return TrainingMonitor


# The run -----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` returns.

    :param model: the trained SB3 model
    :param metrics: test metrics (``evaluate_ranking`` keys plus ``greedy_mean_return`` ...);
        with ``config.tune`` they are on the validation slice instead
    :param popularity_metrics: popularity ranking on the same split, same evaluator
    :param run_dir: the run directory
    :param curve: learning curve (``"episodes"``: [step, return, length]; ``"validation"``: rows)
    :param training: ``complete`` (the budget in steps or episodes was used), ``stop_reason``,
        ``env_steps`` of ``total_timesteps``, episodes, wall time, throughput, device
    """

    model: Any
    metrics: dict[str, float]
    popularity_metrics: dict[str, float]
    run_dir: Path
    curve: dict[str, list] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


class _Runner:
    """State of one training run shared by :func:`train` and its callback."""

    def __init__(self, config: TrainConfig, run_dir: Path, val_split, signals: _StopSignals | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.val_split = val_split
        self.signals = signals
        self.curve: dict[str, list] = {"episodes": [], "validation": [], "validation_popularity": None}
        self.elapsed_before = 0.0  # training seconds of earlier sessions (resume)
        self.session_start = time.monotonic()
        self.eval_seconds = 0.0
        self.next_eval = config.eval_freq
        self.next_checkpoint = config.checkpoint_freq
        self.stop_reason: str | None = None  # why model.learn stopped, set by the callback
        self.pretrain_seconds = 0.0  # supervised pre-training before the first step
        self.sessions_per_episode = 1  # training users, when an episode is a pass over them
        self.checkpoint: Path | None = None  # newest checkpoint folder
        self.on_evaluation: Callable[[int, dict[str, float]], None] | None = None

    def episodes_done(self) -> int:
        """Finished training episodes in the config's unit (sessions or whole passes)."""
        return len(self.curve["episodes"]) // self.sessions_per_episode

    def train_seconds(self) -> float:
        """Training wall time so far (all sessions), validation time included."""
        return self.elapsed_before + time.monotonic() - self.session_start

    def validate(self, model) -> None:
        """Validation-slice ranking metrics, appended to the curve."""
        from agents.scoring import make_score_fn
        from recsim_env import evaluate_ranking

        t0 = time.monotonic()
        env = make_env(self.config, self.val_split, "test")
        m = evaluate_ranking(make_score_fn(model, env), self.val_split, k=self.config.eval_k)
        env.close()
        k = self.config.eval_k
        row = {"step": int(model.num_timesteps), "seconds": round(self.train_seconds(), 2),
               **{key: m[key] for key in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"hit_rate@{k}")}}
        self.curve["validation"].append(row)
        self.eval_seconds += time.monotonic() - t0
        if self.on_evaluation is not None:
            self.on_evaluation(row["step"], dict(row))
        model.logger.record(f"validation/precision@{k}", m[f"precision@{k}"])
        model.logger.record(f"validation/recall@{k}", m[f"recall@{k}"])

    def state(self, model) -> dict[str, Any]:
        return {
            "num_timesteps": int(model.num_timesteps),
            "train_seconds": self.train_seconds(),
            "next_eval": self.next_eval,
            "next_checkpoint": self.next_checkpoint,
            "sessions_per_episode": self.sessions_per_episode,
            "curve": self.curve,
        }

    def save_checkpoint(self, model) -> Path:
        """Model, replay buffer (off-policy) and loop state under ``checkpoints/step-N/``.

        ``checkpoints/latest.json`` is replaced last and names the newest complete checkpoint,
        so an interrupt while saving leaves the previous checkpoint in use.
        """
        root = self.run_dir / "checkpoints"
        folder = root / f"step-{int(model.num_timesteps)}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "model.zip", lambda tmp: model.save(tmp))
        # An empty buffer (the checkpoint before the first step) is not saved: loading the
        # model gives an empty buffer of the same size anyway.
        if self.config.algo in OFF_POLICY_ALGOS and model.replay_buffer.size() > 0:
            atomic_write(folder / "replay_buffer.pkl", lambda tmp: model.save_replay_buffer(tmp))
        atomic_write_json(folder / "state.json", self.state(model))
        atomic_write_json(root / "latest.json", {"checkpoint": folder.name})
        for old in root.glob("step-*"):  # keep only the newest checkpoint
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        self.checkpoint = folder
        return folder


def build_agent(config: TrainConfig, vec_env, device: str = "cpu"):
    """The untrained model ``config`` describes, around the training environments.

    :param config: the run's config
    :param vec_env: the training environments (:func:`make_train_vec_env`)
    :param device: torch device
    """
    from agents.factory import build_model

    dueling = config.dueling and config.algo == "dqn"  # DQN-only options; ignored otherwise
    return build_model(
        config.algo, vec_env, extractor_kwargs=extractor_kwargs(config), net_arch=config.net_arch,
        n_quantiles=config.n_quantiles, dueling=dueling, tied_item_embeddings=dueling and config.tied_item_embeddings,
        # MaskablePPO masks through action_masks() (the same items) instead.
        mask_excluded=config.mask_excluded and config.algo != "maskable_ppo",
        seed=config.seed, device=device, **_algo_kwargs(config),
    )  # fmt: skip


def attach_logged_data(model, config: TrainConfig, vec_env) -> None:
    """Attach the logged next items of the training split when the config uses them (next-item
    loss or pre-training), read through the first training environment's tables.

    :param model: a model of ``config`` (built or loaded)
    :param config: the run's config
    :param vec_env: the training environments
    """
    from agents.next_item import LoggedNextItems

    if config.algo == "dqn" and (config.next_item_weight > 0 or config.pretrain_steps):
        model.set_next_item_source(LoggedNextItems(vec_env.envs[0], seed=config.seed))


def _algo_kwargs(config: TrainConfig) -> dict[str, Any]:
    keys = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
            "gradient_steps", "target_update_interval", "exploration_fraction", "exploration_initial_eps",
            "exploration_final_eps", "max_grad_norm", "n_steps", "n_epochs", "gae_lambda", "clip_range",
            "ent_coef", "vf_coef")
    kwargs = {k: getattr(config, k) for k in keys}
    if config.final_learning_rate is not None:
        from stable_baselines3.common.utils import LinearSchedule

        kwargs["learning_rate"] = LinearSchedule(config.learning_rate, config.final_learning_rate, 1.0)
    kwargs["td_loss"] = config.loss
    kwargs["mask_actions"] = config.mask_actions
    kwargs["double_q"] = config.double_q
    kwargs["td_weight"] = config.td_weight
    kwargs["next_item_weight"] = config.next_item_weight
    kwargs["next_item_positions"] = config.next_item_positions
    kwargs["next_item_batch_size"] = config.next_item_batch
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
    )


#: Config fields that may differ when a run is resumed: its budget, and where it runs. Every
#: other field is the run's (``config.json``); changing one would mix two experiments.
RESUME_FIELDS: tuple[str, ...] = (
    "total_timesteps", "max_episodes", "max_train_seconds", "data_dir", "device", "torch_threads",
)


def budget_exhausted(config: TrainConfig, steps: int, episodes: int, seconds: float) -> str | None:
    """Why a run with this much training done must stop (``None``: it may go on).

    ``total_timesteps`` and ``max_episodes`` are the run's budget: reaching one completes the
    run. ``max_train_seconds`` is an optional wall-clock cap: reaching it stops the run
    incomplete (see :func:`is_complete`).

    :param config: the run's config
    :param steps: environment steps done
    :param episodes: finished training episodes (passes with ``config.episode == "pass"``)
    :param seconds: training wall time so far, s
    """
    if steps >= config.total_timesteps:
        return "total_timesteps reached"
    if config.max_episodes is not None and episodes >= config.max_episodes:
        return f"max_episodes={config.max_episodes} reached"
    if config.max_train_seconds is not None and seconds >= config.max_train_seconds:
        return f"max_train_seconds={config.max_train_seconds:g} reached"
    return None


def is_complete(config: TrainConfig, steps: int, episodes: int) -> bool:
    """Whether the run used its whole budget in steps (or episodes), whatever stopped it."""
    return budget_exhausted(config, steps, episodes, 0.0) is not None


def latest_checkpoint(run_dir: Path) -> Path:
    """The folder named by ``run_dir/checkpoints/latest.json``.

    :raises SetupError: no complete checkpoint there
    """
    pointer = run_dir / "checkpoints" / "latest.json"
    try:
        folder = run_dir / "checkpoints" / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    except (OSError, ValueError, KeyError):
        what = "does not exist" if not run_dir.exists() else "has no checkpoints/latest.json"
        raise SetupError(f"cannot resume {run_dir}: it {what} (is it a run directory?)") from None
    if not (folder / "state.json").is_file():
        raise SetupError(f"cannot resume {run_dir}: checkpoint {folder} is incomplete (no state.json)")
    return folder


def _check_resume_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """The run's saved config; ``config`` may only differ from it in :data:`RESUME_FIELDS`."""
    try:
        saved = TrainConfig.load(str(run_dir / "config.json"))
    except (OSError, ValueError) as err:
        raise SetupError(f"cannot resume {run_dir}: its config.json is unreadable ({err})") from None
    changed = [f for f, v in config.to_dict().items() if v != saved.to_dict()[f] and f not in RESUME_FIELDS]
    if changed:
        raise SetupError(
            f"cannot resume {run_dir} with a different {', '.join(changed)}: a resumed run keeps its "
            f"config.json; only {', '.join(RESUME_FIELDS)} may change"
        )
    return saved


def _resume_state(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """The loop state of ``run_dir``'s newest checkpoint, if ``config`` may continue it.

    :raises SetupError: no checkpoint, a config change outside :data:`RESUME_FIELDS`, or a
        finished run (its budget used and ``metrics.json`` written)
    """
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text(encoding="utf-8"))
    _check_resume_config(config, run_dir)
    episodes = len(state["curve"]["episodes"]) // int(state.get("sessions_per_episode", 1))
    done = budget_exhausted(config, state["num_timesteps"], episodes, state["train_seconds"])
    if done is not None and (run_dir / "metrics.json").exists():
        raise SetupError(
            f"{run_dir} is finished ({done}, {state['num_timesteps']:,} environment steps); nothing to "
            f"resume. Train it further with a larger budget (--resume {run_dir} --total-timesteps N, "
            f"or --max-episodes / --max-train-seconds), or re-evaluate it with "
            f"python -m experiments.evaluate {run_dir}"
        )
    return state


def train(
    config: TrainConfig,
    run_dir: Path | None = None,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
    report: bool | None = None,
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, evaluate and save one run.

    Before anything is written, the config, the device, the run directory and the data are
    checked (:class:`SetupError`). Training stops when the budget in steps (or episodes) is
    used, or at the optional wall-clock cap; ``metrics.json`` and the report say whether the
    run is complete. SIGINT and SIGTERM stop training at the end of the current step and save
    a checkpoint (:class:`TrainingInterrupted`); a checkpoint is also saved before the first step.

    :param config: the run's settings (validated here, before anything else happens)
    :param run_dir: run directory; default a new ``<runs_dir>/<name>-<timestamp>``. An existing
        folder with files is refused unless ``resume`` or ``overwrite``. With ``resume=True``
        the directory of the run to continue
    :param progress: show SB3's progress bar and print progress lines
    :param resume: continue from ``run_dir/checkpoints`` (model, replay buffer, curve, budget
        already used); ``config`` may differ from the saved one only in :data:`RESUME_FIELDS`
        (the new values are saved). The environments are re-seeded, so a resumed run is not
        bit-identical to an uninterrupted one
    :param overwrite: replace an existing run directory ``run_dir`` (its files are deleted
        once the data have loaded); folders without ``config.json`` are never deleted
    :param report: print the closing report (default: as ``progress``)
    :param on_evaluation: called after every validation evaluation (each ``eval_freq``
        environment steps and at the end) with the step and that evaluation's row (``step``,
        ``seconds``, ``precision@k`` ...); :mod:`experiments.search` reports it to Ray Tune.
        Default none
    :return: :class:`TrainResult`
    :raises ValueError: invalid config
    :raises SetupError: device, run directory or data problem (nothing was created or changed)
    :raises TrainingInterrupted: SIGINT or SIGTERM (after saving a checkpoint when one can be)
    """
    config.validate()
    say = print if progress else (lambda *a, **k: None)
    report = progress if report is None else report
    with _StopSignals() as signals:
        run_dir = Path(run_dir) if run_dir is not None else None
        claimed: dict[str, Any] = {"dir": None, "created": False, "runner": None}
        try:
            return _train(config, run_dir, progress, resume, overwrite, report, say, signals, claimed,
                          on_evaluation)
        except KeyboardInterrupt as exc:
            if isinstance(exc, TrainingInterrupted):
                raise
            # A signal outside the deferred window, or a second one: what is on disk stays.
            runner = claimed["runner"]
            checkpoint = runner.checkpoint if runner is not None else None
            if checkpoint is None and resume and run_dir is not None:
                checkpoint = latest_checkpoint(run_dir)
            step = json.loads((checkpoint / "state.json").read_text())["num_timesteps"] if checkpoint else 0
            raise TrainingInterrupted(signals.received or "SIGINT", claimed["dir"] if checkpoint else None,
                                      checkpoint, step) from None


def _train(config, run_dir, progress, resume, overwrite, report, say, signals, claimed,
           on_evaluation=None) -> TrainResult:
    import torch as th

    from agents.factory import algorithm_class
    from recsim_env import holdout_last
    from stable_baselines3.common.logger import configure

    # Checks that change nothing on disk: device, run directory, data.
    device = resolve_device(config.device)
    if resume:
        if run_dir is None:
            raise SetupError("resume=True needs the run directory to continue")
        _resume_state(config, run_dir)
    elif run_dir is not None:
        try:
            check_new_run_dir(run_dir, overwrite)
        except RunDirError as err:
            raise SetupError(str(err)) from None
    try:
        # The test split is only touched after training; tuning uses the validation slice.
        split = load_split(config)
    except (OSError, ValueError) as err:
        raise SetupError(f"cannot load the {config.dataset} data: {err}") from err

    # Claim the run directory: created atomically, locked for this process.
    if run_dir is None:
        run_dir = new_run_dir(config.runs_dir, config.name)
        claimed["created"] = True
    elif not resume:
        try:
            run_dir.mkdir(parents=True)
            claimed["created"] = True
        except FileExistsError:
            pass
    lock = RunDirLock(run_dir)
    try:
        lock.acquire()
    except RunDirError as err:
        raise SetupError(str(err)) from None
    claimed["dir"] = run_dir
    vec_env = model = None
    threads_before = th.get_num_threads()
    th.set_num_threads(config.torch_threads)
    try:
        if resume:
            state = _resume_state(config, run_dir)  # again under the lock: the newest checkpoint
            if config.to_dict() != TrainConfig.load(str(run_dir / "config.json")).to_dict():
                atomic_write_json(run_dir / "config.json", config.to_dict())  # the new budget
        else:
            try:  # again under the lock: another process may have written meanwhile
                check_new_run_dir(run_dir, overwrite)
            except RunDirError as err:
                raise SetupError(str(err)) from None
            clear_run_dir(run_dir)  # --overwrite: the old run's files go; nothing mixes
            atomic_write_json(run_dir / "config.json", config.to_dict())
            atomic_write_json(run_dir / "versions.json", package_versions())

        val_split = holdout_last(split, config.val_fraction)
        train_split, eval_split = (val_split, val_split) if config.tune else (split, split)
        vec_env = make_train_vec_env(config, train_split)

        # Model.
        runner = _Runner(config, run_dir, val_split, signals)
        claimed["runner"] = runner
        runner.on_evaluation = on_evaluation
        if config.episode == "pass":
            runner.sessions_per_episode = len(vec_env.envs[0].unwrapped.users)
        cls = algorithm_class(config.algo)
        if resume:
            ckpt = latest_checkpoint(run_dir)
            model = cls.load(ckpt / "model.zip", env=vec_env, device=device)
            if config.algo in OFF_POLICY_ALGOS and (ckpt / "replay_buffer.pkl").exists():
                model.load_replay_buffer(ckpt / "replay_buffer.pkl")
            runner.checkpoint = ckpt
            runner.curve = state["curve"]
            runner.elapsed_before = float(state["train_seconds"])
            runner.next_eval, runner.next_checkpoint = state["next_eval"], state["next_checkpoint"]
            # The saved model remembers the old environments' last observation; drop it so
            # learn() resets the new ones (seeded afresh: new users after the resume).
            model._last_obs = None
            vec_env.seed(config.seed + int(model.num_timesteps))
            say(f"resuming {run_dir} at step {model.num_timesteps:,} ({runner.elapsed_before:.0f} s trained)")
        else:
            model = build_agent(config, vec_env, device)
        attach_logged_data(model, config, vec_env)  # not saved in the model: attached again on resume
        model.set_logger(configure(str(run_dir / "tensorboard"), ["tensorboard"]))
        runner.curve["validation_popularity"] = popularity_metrics(val_split, config.eval_k)
        if not resume:
            if config.pretrain_steps and config.algo == "dqn":  # DQN-only (other algos ignore it)
                runner.session_start = t0 = time.monotonic()
                say(f"pre-training: {config.pretrain_steps:,} gradient steps of the next-item loss")
                losses = model.pretrain(config.pretrain_steps, config.pretrain_batch)
                runner.pretrain_seconds = time.monotonic() - t0
                runner.elapsed_before += runner.pretrain_seconds  # training time includes it
                runner.curve["pretrain_loss"] = [round(float(np.mean(losses[i:i + 100])), 4)
                                                 for i in range(0, len(losses), 100)]
                if config.eval_freq:
                    runner.validate(model)  # the step-0 row: the pre-trained network before any TD update
            # A checkpoint before the first step: a run killed at any later moment (even
            # SIGKILL, before the first periodic checkpoint) can be resumed.
            runner.save_checkpoint(model)

        n_params = sum(p.numel() for p in model.policy.parameters())
        say(f"run dir: {run_dir}\nalgo {config.algo} on {config.dataset} ({split.n_users} users, "
            f"{split.n_items} items), {config.n_envs} envs, {n_params:,} parameters, "
            f"torch threads {config.torch_threads}, device {model.device}")
        if config.algo in OFF_POLICY_ALGOS:
            per = replay_bytes_per_transition(vec_env.observation_space, vec_env.action_space)
            say(f"replay buffer: {per:,} bytes per transition x {config.buffer_size:,} = "
                f"{per * config.buffer_size / 2**20:,.1f} MiB")

        # Training loop (SB3's), with the monitor callback; signals now stop it between steps.
        remaining = config.total_timesteps - int(model.num_timesteps)
        runner.session_start = time.monotonic()
        steps_before = int(model.num_timesteps)
        runner.stop_reason = budget_exhausted(config, steps_before, runner.episodes_done(), runner.elapsed_before)
        if runner.stop_reason is None:
            signals.defer = True
            model.learn(remaining, callback=_training_callback_class()(runner),
                        progress_bar=progress, reset_num_timesteps=not resume,
                        tb_log_name=config.algo)  # fmt: skip
            signals.defer = False
        session_seconds = time.monotonic() - runner.session_start
        train_seconds = runner.train_seconds()
        session_eval_seconds = runner.eval_seconds
        runner.save_checkpoint(model)
        if signals.received:
            raise TrainingInterrupted(signals.received, run_dir, runner.checkpoint, int(model.num_timesteps),
                                      saved_now=True)
        if config.eval_freq:
            runner.validate(model)
        atomic_write(run_dir / "model.zip", lambda tmp: model.save(tmp))

        # Evaluation: test split (validation slice when tuning), popularity on the same split.
        t0 = time.monotonic()
        metrics = evaluate_model(model, config, eval_split, k=config.eval_k)
        pop = popularity_metrics(eval_split, config.eval_k)
        steps = int(model.num_timesteps) - steps_before
        n_episodes = runner.episodes_done()
        complete = is_complete(config, int(model.num_timesteps), n_episodes)
        training = {
            "complete": complete,
            "stop_reason": budget_exhausted(config, int(model.num_timesteps), n_episodes, 0.0)
            if complete else runner.stop_reason,
            "env_steps": int(model.num_timesteps),
            "total_timesteps": config.total_timesteps,
            "episodes": len(runner.curve["episodes"]),  # sessions
            **({"passes": n_episodes, "users_per_pass": runner.sessions_per_episode}
               if config.episode == "pass" else {}),
            "train_seconds": round(train_seconds, 2),
            "pretrain_steps": config.pretrain_steps if config.algo == "dqn" else 0,
            "pretrain_seconds": round(runner.pretrain_seconds, 2),
            "validation_seconds": round(runner.eval_seconds, 2),
            "env_steps_per_second": round(steps / max(session_seconds - session_eval_seconds, 1e-9), 1),
            "evaluation_seconds": round(time.monotonic() - t0, 2),
            "device": str(model.device),
            "n_parameters": n_params,
        }
        if config.algo in OFF_POLICY_ALGOS:
            training["replay_bytes_per_transition"] = replay_bytes_per_transition(
                vec_env.observation_space, vec_env.action_space)
        evaluated_on = "validation" if config.tune else "test"
        atomic_write_json(run_dir / "metrics.json", {
            "complete": complete,
            "evaluated_on": evaluated_on,
            "agent": metrics,
            "popularity": pop,
            "paper": PAPER_FIGURES.get(config.dataset),
            "validation_last": runner.curve["validation"][-1] if runner.curve["validation"] else None,
            "training": training,
            "seed": config.seed,
        })
        atomic_write_json(run_dir / "curve.json", runner.curve)
        _plot(runner.curve, run_dir)
        if report:
            print(format_report(config, metrics, pop, training, evaluated_on))
        return TrainResult(model, metrics, pop, run_dir, runner.curve, training)
    except BaseException:
        # A run that failed before its first checkpoint leaves no folder behind.
        runner = claimed["runner"]
        if claimed["created"] and (runner is None or runner.checkpoint is None):
            shutil.rmtree(run_dir, ignore_errors=True)
            claimed["dir"] = None
        raise
    finally:
        signals.defer = False
        if vec_env is not None:
            vec_env.close()
        lock.release()
        th.set_num_threads(threads_before)


def _plot(curve: dict, run_dir: Path) -> None:
    from experiments.plots import plot_learning_curve

    plot_learning_curve(curve, run_dir / "learning_curve.png")


def metric_lines(metrics: dict, pop: dict, paper: dict) -> list[str]:
    """One line per metric (agent, popularity, paper), the users they average over, and the
    greedy policy's return with the users it averages over (not the same users)."""
    lines = []
    for key in METRIC_KEYS:
        ref = f"{paper[key]:.3f}" if key in paper else "-"
        lines.append(f"{key:<14}{metrics[key]:>9.4f}{pop[key]:>12.4f}{ref:>9}")
    lines.append(f"ranking metrics: mean over the {metrics['n_users']} users with a test item")
    if "greedy_mean_return" in metrics:
        lines.append(f"greedy policy: mean return {metrics['greedy_mean_return']:.3f}, "
                     f"{metrics['greedy_mean_likes']:.2f} likes in {metrics['greedy_mean_length']:.1f} steps "
                     f"per user, over the {metrics['greedy_n_users']} users with a liked test item")
    return lines


def format_report(config: TrainConfig, metrics: dict, pop: dict, training: dict, evaluated_on: str) -> str:
    """The closing table: agent vs popularity (vs the paper on ML-100K / ML-1M).

    A run that stopped before its budget in steps (wall-clock cap) says INCOMPLETE in its first
    and last lines.
    """
    paper = PAPER_FIGURES.get(config.dataset, {})
    incomplete = None
    if not training["complete"]:
        incomplete = (f"INCOMPLETE RUN: {training['stop_reason']} after {training['env_steps']:,} of "
                      f"{training['total_timesteps']:,} environment steps; these metrics are not the config's result")
    lines = [
        *([f"\n{incomplete}"] if incomplete else [""]),
        f"{config.algo} ({config.preset} preset, seed {config.seed}) on {config.dataset}, {evaluated_on} split:",
        f"{'metric':<14}{'agent':>9}{'popularity':>12}{'paper':>9}",
    ]
    lines += metric_lines(metrics, pop, paper)
    lines.append(f"training: {training['env_steps']:,} of {training['total_timesteps']:,} env steps, "
                 f"{training['episodes']:,} sessions"
                 + (f" ({training['passes']:,} passes of {training['users_per_pass']:,} users)" if "passes" in training else "")
                 + f", {training['train_seconds']:.0f} s "
                 f"({training['env_steps_per_second']:,.0f} steps/s) on {training['device']}; "
                 f"stop: {training['stop_reason']}")
    if incomplete:
        lines.append(incomplete)
    return "\n".join(lines)


# CLI ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one message, not the 100-line usage text."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(python -m experiments.train --help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m experiments.train",
        description="Train the LSRWRL agent on MovieLensRec-v0 and evaluate it on the test split. "
                    "Exit status: 0 done (the report says if a wall-clock cap left the run INCOMPLETE), "
                    "2 nothing started (bad option, config, device, data or run directory), "
                    "130 / 143 interrupted by SIGINT / SIGTERM after saving a checkpoint.",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run from its last checkpoint with its config.json; "
                             f"only --{', --'.join(f.replace('_', '-') for f in RESUME_FIELDS)} may be given "
                             "(e.g. a larger budget)")
    parser.add_argument("--run-dir", default=None,
                        help="run directory (default: a new <runs-dir>/<name>-<timestamp>); an existing one "
                             "with files is refused unless --resume or --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the existing run in --run-dir: its files are deleted once the data have "
                             "loaded (only folders with a config.json)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines (the final report is still printed)")
    add_config_arguments(parser)
    return parser


def _fail(message: str) -> int:
    print(f"python -m experiments.train: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The command line: parse, check, train, print the report.

    :return: the exit status (0, 2, 130 or 143; see ``--help``)
    """
    args = build_parser().parse_args(argv)
    cli_only = ("resume", "run_dir", "overwrite", "no_progress", "preset")
    given = [f for f in vars(args) if f not in cli_only and getattr(args, f) is not None]
    # Every config problem is reported here, before any data is loaded or any training starts.
    try:
        if args.resume:
            refused = [f for f in given if f not in RESUME_FIELDS] + (["preset"] if args.preset != "default" else [])
            if refused:
                return _fail("--resume continues with the run's saved config.json; drop "
                             + " ".join("--" + f.replace("_", "-") for f in refused)
                             + f" (only --{', --'.join(f.replace('_', '-') for f in RESUME_FIELDS)} may change)")
            if args.overwrite:
                return _fail("--resume continues a run and --overwrite replaces it: choose one")
            if args.run_dir and Path(args.run_dir) != Path(args.resume):
                return _fail(f"two run directories given: --resume {args.resume} and --run-dir {args.run_dir}")
            config_path = Path(args.resume) / "config.json"
            if not config_path.is_file():
                return _fail(f"--resume {args.resume}: no config.json there (is it a run directory?)")
            saved = TrainConfig.load(str(config_path))
            hints = typing.get_type_hints(TrainConfig)
            overrides = {f: parse_value(getattr(args, f), hints[f], f) for f in given}
            config = TrainConfig.from_dict({**saved.to_dict(), **overrides}).validate()
        else:
            config = config_from_args(args)
    except ValueError as err:
        return _fail(str(err))
    run_dir = Path(args.resume or args.run_dir) if (args.resume or args.run_dir) else None
    try:
        train(config, run_dir, progress=not args.no_progress, resume=bool(args.resume),
              overwrite=args.overwrite, report=True)
    except SetupError as err:
        return _fail(str(err))
    except TrainingInterrupted as stop:
        sys.stdout.flush()
        if stop.checkpoint is None:
            print(f"\n{stop.signal_name}: stopped before training started; nothing was saved", file=sys.stderr)
        else:
            how = "checkpoint saved" if stop.saved_now else "aborted without a new checkpoint; the last one is"
            print(f"\n{stop.signal_name}: {how} at step {stop.step:,} in {stop.checkpoint}. Continue with:\n"
                  f"  python -m experiments.train --resume {shlex.quote(str(stop.run_dir))}", file=sys.stderr)
        return stop.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
