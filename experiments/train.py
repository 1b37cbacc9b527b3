"""Train the LSRWRL agent (or another algorithm around its extractor) on ``MovieLensRec-v0``.

Reads top to bottom: config -> data and environments -> model -> training loop (callbacks:
episode returns, validation curve, checkpoints, budget) -> test evaluation -> saving.

Usage::

    python -m experiments.train                       # preset "default", ml-100k
    python -m experiments.train --preset paper        # the paper's settings
    python -m experiments.train --algo ppo --total-timesteps 100000 --seed 1
    python -m experiments.train --resume runs/lsrwrl-20250101-120000

A run directory ``<runs_dir>/<name>-<timestamp>/`` holds ``config.json`` (full config incl.
seed), ``versions.json``, ``metrics.json``, ``curve.json``, ``model.zip``, ``learning_curve.png``,
``tensorboard/`` and ``checkpoints/``. Every file is written atomically (temporary file in the
same folder, then ``os.replace``), so an interrupt never leaves a half-written result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from experiments.config import OFF_POLICY_ALGOS, TrainConfig, add_config_arguments, config_from_args

#: The paper's ML-100K figures (Table 1, LSRWRL row), printed beside ours.
PAPER_ML100K = {"precision@10": 0.207, "recall@10": 0.121}
PAPER_FIGURES = {"ml-100k": PAPER_ML100K, "ml-1m": {"precision@10": 0.243, "recall@10": 0.136}}
METRIC_KEYS = ("precision@10", "recall@10", "ndcg@10", "hit_rate@10")


# Atomic files --------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then ``os.replace(tmp_path, path)``.

    :param path: final path (its folder is created if needed)
    :param write: writes the complete file at the temporary path it is given
    :return: ``path`` as a :class:`Path`
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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


def new_run_dir(config: TrainConfig) -> Path:
    """A fresh ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]`` folder."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.runs_dir) / f"{config.name}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()  # atomic: two runs started in the same second get different folders
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


# Data and environments ---------------------------------------------------------------------


def load_split(config: TrainConfig):
    """The configured :class:`recsim_env.Split` of the configured dataset."""
    from recsim_env import load_movielens, split_ratings

    data = load_movielens(config.dataset, config.data_dir)
    return split_ratings(data, config.split, config.train_ratio, config.split_seed)


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
    """
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    return DummyVecEnv([lambda: Monitor(make_env(config, split, "train")) for _ in range(config.n_envs)])


def replay_bytes_per_transition(observation_space: gym.spaces.Dict, action_space: gym.Space) -> int:
    """Bytes one transition takes in SB3's ``DictReplayBuffer`` (no memory optimisation).

    ``2 * sum(obs field bytes)`` (observation and next observation, stored in their own
    dtypes: int32 user and history, uint8 packed liked bits) + the action (int64 for
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
    """
    from agents.scoring import greedy_return, make_score_fn
    from recsim_env import evaluate_ranking

    test_env = make_env(config, split, "test")
    metrics = evaluate_ranking(make_score_fn(model, test_env), split, k=k)
    if greedy:
        vec = make_test_vec_env(config, split)
        sim = greedy_return(model, vec)
        vec.close()
        metrics.update({f"greedy_{key}": value for key, value in sim.items()})
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
        """Episode returns, periodic validation, checkpoints, episode and wall-clock budgets."""

        def __init__(self, runner: _Runner) -> None:
            super().__init__()
            self.runner = runner

        def _on_step(self) -> bool:
            r = self.runner
            for info in self.locals.get("infos", ()):
                ep = info.get("episode")
                if ep is not None:
                    r.curve["episodes"].append([int(self.num_timesteps), float(ep["r"]), int(ep["l"])])
            n_episodes = len(r.curve["episodes"])
            if r.config.eval_freq and self.num_timesteps >= r.next_eval:
                r.validate(self.model)
                r.next_eval += r.config.eval_freq
            if r.config.checkpoint_freq and self.num_timesteps >= r.next_checkpoint:
                r.save_checkpoint(self.model)
                r.next_checkpoint += r.config.checkpoint_freq
            if r.config.max_episodes is not None and n_episodes >= r.config.max_episodes:
                r.stop_reason = f"max_episodes={r.config.max_episodes} reached"
                return False
            if r.config.max_train_seconds is not None and r.train_seconds() >= r.config.max_train_seconds:
                r.stop_reason = f"max_train_seconds={r.config.max_train_seconds:g} reached"
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
    :param training: wall time, environment steps, throughput, stop reason
    """

    model: Any
    metrics: dict[str, float]
    popularity_metrics: dict[str, float]
    run_dir: Path
    curve: dict[str, list] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


class _Runner:
    """State of one training run shared by :func:`train` and its callback."""

    def __init__(self, config: TrainConfig, run_dir: Path, val_split) -> None:
        self.config = config
        self.run_dir = run_dir
        self.val_split = val_split
        self.curve: dict[str, list] = {"episodes": [], "validation": [], "validation_popularity": None}
        self.elapsed_before = 0.0  # training seconds of earlier sessions (resume)
        self.session_start = time.monotonic()
        self.eval_seconds = 0.0
        self.next_eval = config.eval_freq
        self.next_checkpoint = config.checkpoint_freq
        self.stop_reason = "total_timesteps reached"
        self.on_evaluation: Callable[[int, dict[str, float]], None] | None = None

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
        if self.config.algo in OFF_POLICY_ALGOS:
            atomic_write(folder / "replay_buffer.pkl", lambda tmp: model.save_replay_buffer(tmp))
        atomic_write_json(folder / "state.json", self.state(model))
        atomic_write_json(root / "latest.json", {"checkpoint": folder.name})
        for old in root.glob("step-*"):  # keep only the newest checkpoint
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return folder


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
    kwargs["next_item_weight"] = config.next_item_weight
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
    )


def train(
    config: TrainConfig,
    run_dir: Path | None = None,
    progress: bool = True,
    *,
    resume: bool = False,
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, evaluate and save one run.

    :param config: the run's settings (validated here, before anything else happens)
    :param run_dir: run directory; default a new ``<runs_dir>/<name>-<timestamp>``. With
        ``resume=True`` the directory of the interrupted run
    :param progress: show SB3's progress bar and print progress lines
    :param resume: continue from ``run_dir/checkpoints`` (model, replay buffer, curve, budget
        already used); the environments are re-seeded, so a resumed run is not bit-identical
        to an uninterrupted one
    :param on_evaluation: called after every validation evaluation (each ``eval_freq``
        environment steps and at the end) with the step and that evaluation's row (``step``,
        ``seconds``, ``precision@k`` ...); :mod:`experiments.search` reports it to Ray Tune.
        Default none
    :return: :class:`TrainResult`
    """
    config.validate()
    import torch as th

    from agents.factory import algorithm_class, build_model
    from agents.next_item import LoggedNextItems
    from recsim_env import holdout_last
    from stable_baselines3.common.logger import configure

    say = print if progress else (lambda *a, **k: None)
    if resume:
        if run_dir is None or not (Path(run_dir) / "checkpoints" / "latest.json").exists():
            raise FileNotFoundError(f"--resume needs a run directory with checkpoints/latest.json, got {run_dir}")
        run_dir = Path(run_dir)
    else:
        run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", config.to_dict())
        atomic_write_json(run_dir / "versions.json", package_versions())

    threads_before = th.get_num_threads()
    th.set_num_threads(config.torch_threads)
    try:
        # Data: the test split is only touched after training; tuning uses the validation slice.
        split = load_split(config)
        val_split = holdout_last(split, config.val_fraction)
        train_split, eval_split = (val_split, val_split) if config.tune else (split, split)
        vec_env = make_train_vec_env(config, train_split)

        # Model.
        runner = _Runner(config, run_dir, val_split)
        runner.on_evaluation = on_evaluation
        cls = algorithm_class(config.algo)
        if resume:
            ckpt = run_dir / "checkpoints" / json.loads((run_dir / "checkpoints" / "latest.json").read_text())["checkpoint"]
            model = cls.load(ckpt / "model.zip", env=vec_env, device=config.device)
            if config.algo in OFF_POLICY_ALGOS and (ckpt / "replay_buffer.pkl").exists():
                model.load_replay_buffer(ckpt / "replay_buffer.pkl")
            state = json.loads((ckpt / "state.json").read_text())
            runner.curve = state["curve"]
            runner.elapsed_before = float(state["train_seconds"])
            runner.next_eval, runner.next_checkpoint = state["next_eval"], state["next_checkpoint"]
            # The saved model remembers the old environments' last observation; drop it so
            # learn() resets the new ones (seeded afresh: new users after the resume).
            model._last_obs = None
            vec_env.seed(config.seed + int(model.num_timesteps))
            say(f"resuming {run_dir} at step {model.num_timesteps:,} ({runner.elapsed_before:.0f} s trained)")
        else:
            dueling = config.dueling and config.algo == "dqn"  # DQN-only options; ignored otherwise
            model = build_model(
                config.algo, vec_env, extractor_kwargs=extractor_kwargs(config), net_arch=config.net_arch,
                n_quantiles=config.n_quantiles, dueling=dueling,
                tied_item_embeddings=dueling and config.tied_item_embeddings,
                seed=config.seed, device=config.device, **_algo_kwargs(config),
            )  # fmt: skip
        if config.algo == "dqn" and config.next_item_weight > 0:
            # Logged next items of the training split, read through the first training env's tables
            # (not saved in the model: attached again on resume).
            model.set_next_item_source(LoggedNextItems(vec_env.envs[0], seed=config.seed))
        model.set_logger(configure(str(run_dir / "tensorboard"), ["tensorboard"]))
        runner.curve["validation_popularity"] = popularity_metrics(val_split, config.eval_k)

        n_params = sum(p.numel() for p in model.policy.parameters())
        say(f"run dir: {run_dir}\nalgo {config.algo} on {config.dataset} ({split.n_users} users, "
            f"{split.n_items} items), {config.n_envs} envs, {n_params:,} parameters, "
            f"torch threads {config.torch_threads}, device {model.device}")
        if config.algo in OFF_POLICY_ALGOS:
            per = replay_bytes_per_transition(vec_env.observation_space, vec_env.action_space)
            say(f"replay buffer: {per:,} bytes per transition x {config.buffer_size:,} = "
                f"{per * config.buffer_size / 2**20:,.1f} MiB")

        # Training loop (SB3's), with the monitor callback.
        remaining = config.total_timesteps - int(model.num_timesteps)
        runner.session_start = time.monotonic()
        steps_before = int(model.num_timesteps)
        if remaining > 0 and not _budget_used(runner):
            try:
                model.learn(remaining, callback=_training_callback_class()(runner),
                            progress_bar=progress, reset_num_timesteps=not resume,
                            tb_log_name=config.algo)  # fmt: skip
            except KeyboardInterrupt:
                folder = runner.save_checkpoint(model)
                print(f"\ninterrupted: checkpoint saved to {folder}; continue with "
                      f"python -m experiments.train --resume {run_dir}", file=sys.stderr)
                raise
        session_seconds = time.monotonic() - runner.session_start
        train_seconds = runner.train_seconds()
        session_eval_seconds = runner.eval_seconds
        if config.eval_freq:
            runner.validate(model)
        runner.save_checkpoint(model)
        atomic_write(run_dir / "model.zip", lambda tmp: model.save(tmp))

        # Evaluation: test split (validation slice when tuning), popularity on the same split.
        t0 = time.monotonic()
        metrics = evaluate_model(model, config, eval_split, k=config.eval_k)
        pop = popularity_metrics(eval_split, config.eval_k)
        steps = int(model.num_timesteps) - steps_before
        training = {
            "env_steps": int(model.num_timesteps),
            "episodes": len(runner.curve["episodes"]),
            "train_seconds": round(train_seconds, 2),
            "validation_seconds": round(runner.eval_seconds, 2),
            "env_steps_per_second": round(steps / max(session_seconds - session_eval_seconds, 1e-9), 1),
            "evaluation_seconds": round(time.monotonic() - t0, 2),
            "stop_reason": runner.stop_reason if remaining > 0 else "already complete",
            "n_parameters": n_params,
        }
        if config.algo in OFF_POLICY_ALGOS:
            training["replay_bytes_per_transition"] = replay_bytes_per_transition(
                vec_env.observation_space, vec_env.action_space)
        evaluated_on = "validation" if config.tune else "test"
        atomic_write_json(run_dir / "metrics.json", {
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
        vec_env.close()
        say(format_report(config, metrics, pop, training, evaluated_on))
        return TrainResult(model, metrics, pop, run_dir, runner.curve, training)
    finally:
        th.set_num_threads(threads_before)


def _budget_used(runner: _Runner) -> bool:
    c = runner.config
    if c.max_episodes is not None and len(runner.curve["episodes"]) >= c.max_episodes:
        return True
    return c.max_train_seconds is not None and runner.elapsed_before >= c.max_train_seconds


def _plot(curve: dict, run_dir: Path) -> None:
    from experiments.plots import plot_learning_curve

    plot_learning_curve(curve, run_dir / "learning_curve.png")


def metric_lines(metrics: dict, pop: dict, paper: dict) -> list[str]:
    """One line per metric (agent, popularity, paper) plus the greedy policy's return."""
    lines = []
    for key in METRIC_KEYS:
        ref = f"{paper[key]:.3f}" if key in paper else "-"
        lines.append(f"{key:<14}{metrics[key]:>9.4f}{pop[key]:>12.4f}{ref:>9}")
    if "greedy_mean_return" in metrics:
        lines.append(f"greedy policy: mean return {metrics['greedy_mean_return']:.3f}, "
                     f"{metrics['greedy_mean_likes']:.2f} likes in {metrics['greedy_mean_length']:.1f} steps "
                     f"per user ({metrics['greedy_n_episodes']} users)")
    return lines


def format_report(config: TrainConfig, metrics: dict, pop: dict, training: dict, evaluated_on: str) -> str:
    """The closing table: agent vs popularity (vs the paper on ML-100K / ML-1M)."""
    paper = PAPER_FIGURES.get(config.dataset, {})
    lines = [
        f"\n{config.algo} ({config.preset} preset, seed {config.seed}) on {config.dataset}, "
        f"{evaluated_on} split, {metrics['n_users']} users:",
        f"{'metric':<14}{'agent':>9}{'popularity':>12}{'paper':>9}",
    ]
    lines += metric_lines(metrics, pop, paper)
    lines.append(f"training: {training['env_steps']:,} env steps, {training['episodes']:,} episodes, "
                 f"{training['train_seconds']:.0f} s ({training['env_steps_per_second']:,.0f} steps/s); "
                 f"stop: {training['stop_reason']}")
    return "\n".join(lines)


# CLI ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train",
        description="Train the LSRWRL agent on MovieLensRec-v0 and evaluate it on the test split.",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run from its last checkpoint (uses its config.json)")
    parser.add_argument("--run-dir", default=None, help="run directory (default: <runs-dir>/<name>-<timestamp>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume:
        changed = [a for a in vars(args) if a not in ("resume", "run_dir", "no_progress", "preset")
                   and getattr(args, a) is not None]
        if changed or args.preset != "default":
            parser.error("--resume continues with the run's saved config.json; drop the options "
                         + " ".join("--" + c.replace("_", "-") for c in changed or ["preset"]))
        config_path = Path(args.resume) / "config.json"
        if not config_path.exists():
            parser.error(f"--resume {args.resume}: no config.json there (is it a run directory?)")
    # Every config problem is reported here, before any data is loaded or any training starts.
    try:
        config = TrainConfig.load(str(config_path)).validate() if args.resume else config_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    run_dir = Path(args.resume or args.run_dir) if (args.resume or args.run_dir) else None
    train(config, run_dir, progress=not args.no_progress, resume=bool(args.resume))
    return 0


if __name__ == "__main__":
    sys.exit(main())
