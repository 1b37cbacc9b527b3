"""The training loop of a run: :func:`train` builds the agent of a config (:mod:`agents.make`),
trains it with validation, checkpoints and budgets, evaluates it and writes its run directory.
``python -m experiments.train`` is its command line.

Reads top to bottom: config -> data and environments -> model -> pre-training -> training loop
(callbacks: episode returns, validation curve, checkpoints, budget) -> test evaluation -> saving.

A run directory ``<runs_dir>/<name>-<timestamp>/`` holds ``config.json`` (full config incl.
seed; the fields the algorithm does not take are recorded too and listed in ``metrics.json``
under ``training.unused_settings``), ``versions.json``, ``data.json`` (a run on an interaction
log: its path and SHA-256, checked on resume and evaluation), ``metrics.json``, ``curve.json``,
``model.zip``, ``learning_curve.png``, ``tensorboard/`` and ``checkpoints/``. Every file is
written atomically (temporary file in the same folder, then ``os.replace``), so an interrupt
never leaves a half-written result.

The budget is counted in environment steps (``total_timesteps``, optionally ``max_episodes``),
so the same seed gives the same result on a fast or a slow machine (of the same kind: float
results depend on the CPU's kernel path). ``max_train_seconds`` is an optional wall-clock cap; a
run it (or an interrupt) stops early is marked incomplete.

Nothing is created before the config, the device and the data have been checked
(:class:`SetupError`). An existing run directory is refused unless ``resume`` (continue it) or
``overwrite`` (replace it). SIGINT and SIGTERM stop training at the next step and save a
checkpoint (:class:`TrainingInterrupted`); a second signal aborts at once. A checkpoint is
saved before pre-training and the first step, so any run that got that far can be resumed (a
run stopped while pre-training pre-trains again).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import OFF_POLICY_ALGOS, TrainConfig
from agents.kernel_path import KernelPathError, pin_kernel_path
from agents.evaluate import METRIC_KEYS, evaluate_model, popularity_metrics
from agents.make import (
    DATA_RECORD,
    attach_logged_data,
    build_agent,
    check_data_record,
    load_split,
    make_env,
    make_train_vec_env,
)
from agents.run_dir import RunDirError, RunDirLock, check_new_run_dir, clear_run_dir, new_run_dir
from recsim_env.files import atomic_write, atomic_write_text

#: The paper's ML-100K figures (Table 1, LSRWRL row), printed beside ours.
PAPER_ML100K = {"precision@10": 0.207, "recall@10": 0.121}
PAPER_FIGURES = {"ml-100k": PAPER_ML100K, "ml-1m": {"precision@10": 0.243, "recall@10": 0.136}}



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



def replay_memory_line(buffer, buffer_size: int) -> str:
    """The printed line on a model's replay buffer: its class and bytes per transition
    (:func:`agents.replay.replay_bytes_per_transition`), and the total at ``buffer_size``.

    An empty :class:`~agents.replay.CompactDictReplayBuffer` only knows its fixed part: the item
    ids of the packed sets are measured once transitions are stored.
    """
    from agents.replay import CompactDictReplayBuffer, replay_bytes_per_transition

    per = replay_bytes_per_transition(buffer)
    name = type(buffer).__name__
    if isinstance(buffer, CompactDictReplayBuffer) and buffer.size() == 0:
        return (f"replay buffer: {name}, {per:,.0f} bytes per transition before the item ids of "
                f"{' and '.join(buffer.bitset_keys)} (measured at the end)")
    return (f"replay buffer: {name}, {per:,.0f} bytes per transition x {buffer_size:,} = "
            f"{per * buffer_size / 2**20:,.1f} MiB")



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
    :param per_user: the ranking metrics of every evaluated user, on the split of ``metrics``
        (:func:`agents.evaluate.evaluate_model`'s ``"per_user"``: ``"user"``, every user with a
        test item in ascending index, and one array per metric aligned to it); not written to
        ``metrics.json``
    """

    model: Any
    metrics: dict[str, float]
    popularity_metrics: dict[str, float]
    run_dir: Path
    curve: dict[str, list] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    per_user: dict[str, np.ndarray] | None = None


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



#: other field is the run's (``config.json``); changing one would mix two experiments.
RESUME_FIELDS: tuple[str, ...] = (
    "total_timesteps", "max_episodes", "max_train_seconds", "data_dir", "device", "torch_threads",
    "data",  # a log that moved: its contents must still be the run's (data.json's SHA-256)
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


def unfinished_run(config: TrainConfig) -> Path | None:
    """The newest run directory of ``config`` that stopped before its end, or None.

    A candidate is a ``<runs_dir>/<name>-*`` folder with a checkpoint and no ``metrics.json``
    whose ``config.json`` is ``config`` (its ``"auto"`` catalogue settings as the run decided
    them, :meth:`TrainConfig.with_catalogue_of`). ``train(config, that_dir, resume=True)``
    continues it: how a study killed mid-run (a session ending, SIGKILL) picks up its run
    instead of starting it again. A resumed run is not bit-identical to an uninterrupted one.

    :param config: the run's settings
    """
    for run_dir in sorted(Path(config.runs_dir).glob(f"{config.name}-*"), reverse=True):
        if (run_dir / "metrics.json").exists() or not (run_dir / "checkpoints" / "latest.json").exists():
            continue
        try:
            saved = TrainConfig.load(str(run_dir / "config.json"))
        except (OSError, ValueError):
            continue
        if config.with_catalogue_of(saved) == saved:
            return run_dir
    return None


def _check_resume_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """The run's saved config; ``config`` may only differ from it in :data:`RESUME_FIELDS`."""
    try:
        saved = TrainConfig.load(str(run_dir / "config.json"))
    except (OSError, ValueError) as err:
        raise SetupError(f"cannot resume {run_dir}: its config.json is unreadable ({err})") from None
    config = config.with_catalogue_of(saved)  # "auto" settings: as the run decided them
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

    # Checks that change nothing on disk: kernels, device, run directory, data.
    try:
        pin_kernel_path(config.kernel_path)
    except (KernelPathError, ValueError) as err:
        raise SetupError(str(err)) from None
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
        # An interaction log is recorded by content; a resumed run must find the same file.
        record = check_data_record(config, run_dir if resume else None)
        split = load_split(config)
    except (OSError, ValueError) as err:
        raise SetupError(f"cannot load the {config.data_name} data: {err}") from err
    try:  # the "auto" catalogue settings, decided here and recorded in config.json
        config = config.for_catalogue(split.n_items)
    except ValueError as err:
        raise SetupError(str(err)) from None

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
            if record is not None:
                atomic_write_json(run_dir / DATA_RECORD, record)

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
        unused = config.unused_fields()
        if unused:
            say(f"not used by {config.algo} (recorded in config.json only): {', '.join(unused)}")
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
            # A checkpoint before pre-training and the first step: a run killed at any later
            # moment (even SIGKILL) can be resumed; one killed while pre-training pre-trains again.
            runner.save_checkpoint(model)
        if model.pretrained_steps < model.pretrain_steps:  # what the first learn() would do, timed
            runner.session_start = t0 = time.monotonic()
            say(f"pre-training: {model.pretrain_steps - model.pretrained_steps:,} gradient steps of the "
                "next-item loss")
            losses = model.pretrain()
            runner.pretrain_seconds = time.monotonic() - t0
            runner.elapsed_before += runner.pretrain_seconds  # training time includes it
            runner.curve["pretrain_loss"] = [round(float(np.mean(losses[i:i + 100])), 4)
                                             for i in range(0, len(losses), 100)]
            if config.eval_freq:
                runner.validate(model)  # the step-0 row: the pre-trained network before any RL update
            runner.save_checkpoint(model)

        n_params = sum(p.numel() for p in model.policy.parameters())
        say(f"run dir: {run_dir}\nalgo {config.algo} on {config.data_name} ({split.n_users} users, "
            f"{split.n_items} items), {config.n_envs} envs, {n_params:,} parameters, "
            f"torch threads {config.torch_threads}, device {model.device}; next-item softmax {config.next_item_loss}"
            + (f" ({config.next_item_negatives} negatives)" if config.next_item_loss == "sampled" else "")
            + f", item terms {config.item_compute}")
        if config.algo in OFF_POLICY_ALGOS:
            say(replay_memory_line(model.replay_buffer, config.buffer_size))

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
        if config.algo in OFF_POLICY_ALGOS and config.replay_buffer == "compact":  # now measured
            say(replay_memory_line(model.replay_buffer, config.buffer_size))
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
        metrics = evaluate_model(model, config, eval_split, k=config.eval_k, return_per_user=True)
        per_user = metrics.pop("per_user")
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
            "pretrain_steps": int(model.pretrained_steps),
            "pretrain_seconds": round(runner.pretrain_seconds, 2),
            "validation_seconds": round(runner.eval_seconds, 2),
            "env_steps_per_second": round(steps / max(session_seconds - session_eval_seconds, 1e-9), 1),
            "evaluation_seconds": round(time.monotonic() - t0, 2),
            "device": str(model.device),
            # What the floats depend on besides the seed (see experiments.studies.determinism).
            "torch_threads": config.torch_threads,
            "kernel_path": config.kernel_path,
            "cpu_capability": th.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": os.environ.get("MKL_CBWR"),
            "n_parameters": n_params,
            "unused_settings": config.unused_fields(),
        }
        if config.algo in OFF_POLICY_ALGOS:
            from agents.replay import replay_bytes_per_transition

            training["replay_bytes_per_transition"] = round(replay_bytes_per_transition(model.replay_buffer), 1)
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
        return TrainResult(model, metrics, pop, run_dir, runner.curve, training, per_user)
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
    from agents.plots import plot_learning_curve

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
        f"{config.algo} ({config.preset} preset, seed {config.seed}) on {config.data_name}, {evaluated_on} split:",
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
