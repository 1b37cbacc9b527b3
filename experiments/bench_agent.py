"""Agent-side speed and memory figures (prints them; not a timed test).

* Extractor throughput: observations per second through :class:`LongShortExtractor` (forward,
  and forward + backward), on ML-100K- and ML-1M-sized observation spaces.
* Replay memory: bytes per transition in SB3's ``DictReplayBuffer`` and the default buffer's
  total, for both sizes (the compact buffer the preset uses: :mod:`experiments.bench_replay`).
* Training profile of the ``default`` preset on ML-100K and ML-1M: per training step, the time
  in the environments' step, acting, the replay buffer (add, sampling), next-item sampling, the
  update's forward and backward passes, and validation (amortised); the transitions per second
  and the estimated time of the preset's whole run (:func:`profile_training`).

With ``--synthetic`` the training profile runs on the synthetic log with ML-32M's shape
(:func:`synthetic_data`; its 86,787 rated items, fewer users by default) with the ``"auto"`` catalogue
settings decided for it (:meth:`agents.config.TrainConfig.for_catalogue`).
:mod:`experiments.bench_scale` records the figures of that shape.

Usage::

    python -m experiments.bench_agent [--threads 2] [--train-steps 12800] [--datasets ml-100k ml-1m] [--quick]
    python -m experiments.bench_agent --synthetic [--synthetic-users 3000] [--train-steps 2560] [--set FIELD=VALUE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import make_config, parse_overrides
from agents.make import extractor_kwargs
from agents.replay import dict_replay_bytes_per_transition

#: Items of the two datasets (the action-space size).
N_ITEMS = {"ml-100k": 1682, "ml-1m": 3706}


def observation_space(n_items: int, history_len: int = 20):
    """The ``MovieLensRec-v0`` observation space for ``n_items`` items (COMMON.md)."""
    from gymnasium import spaces

    return spaces.Dict({
        "user": spaces.Box(0, np.array([1, 6, 20]), shape=(3,), dtype=np.int32),
        "history": spaces.Box(0, n_items, shape=(history_len,), dtype=np.int32),
        "liked": spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
        "excluded": spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
    })  # fmt: skip


def random_batch(space, batch: int, seed: int = 0):
    """A float32 tensor batch like SB3 feeds the extractor (about 10% of items liked)."""
    import torch as th

    rng = np.random.default_rng(seed)
    n_items = int(space["history"].high.max())
    hist = rng.integers(1, n_items + 1, size=(batch, space["history"].shape[0]))
    hist[: batch // 4, :5] = 0  # some front padding
    liked = np.packbits(rng.random((batch, n_items)) < 0.1, axis=1, bitorder="little")
    user = np.stack([rng.integers(0, 2, batch), rng.integers(0, 7, batch), rng.integers(0, 21, batch)], 1)
    return {k: th.as_tensor(v, dtype=th.float32) for k, v in (("user", user), ("history", hist), ("liked", liked))}


def bench_extractor(n_items: int, batch: int, seconds: float = 1.5) -> tuple[float, float]:
    """``(forward obs/s, forward+backward obs/s)`` of the default extractor."""
    import torch as th

    from agents.extractor import LongShortExtractor

    space = observation_space(n_items)
    ex = LongShortExtractor(space, **extractor_kwargs(make_config("default")))
    obs = random_batch(space, batch)

    def rate(fn) -> float:
        fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        return n * batch / (time.perf_counter() - t0)

    with th.no_grad():
        fwd = rate(lambda: ex(obs))

    def step() -> None:
        ex.zero_grad(set_to_none=True)
        ex(obs).square().mean().backward()

    return fwd, rate(step)


class _Timers:
    """Accumulated wall time per named part of a training step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.on = False

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        return timed


class _TimedSource:
    """A next-item source whose draws are timed (``__call__`` cannot be wrapped per instance)."""

    def __init__(self, source, timers: _Timers) -> None:
        self._call = timers.wrap("next-item sampling", source.__call__)
        self.windows = timers.wrap("next-item sampling", source.windows)
        if hasattr(source, "negatives"):
            self.negatives = timers.wrap("next-item sampling", source.negatives)

    def __call__(self, batch_size: int):
        return self._call(batch_size)


#: Parts of a training step, in the printed order (``update`` is the whole gradient step).
PARTS = ("env step", "acting (forward)", "replay add", "replay sampling", "next-item sampling",
         "next-item loss forward", "TD target (no grad)", "TD forward, backward", "optimizer step")


#: Where the synthetic ML-32M log is written and read by default (as experiments.bench_scale_data).
SYNTHETIC_ROOT = Path(tempfile.gettempdir()) / "synthetic-ml-32m"


def synthetic_data(root: str | Path = SYNTHETIC_ROOT, users: int | None = None):
    """The synthetic log with ML-32M's shape (:mod:`experiments.synthetic_log`, written to
    ``<root>/ml-32m/`` when missing) loaded as the official release is
    (``load_movielens("ml-32m", ..., expect_official=False)``, cached in ``<root>/cache``).

    :param root: folder holding ``ml-32m/``
    :param users: keep only the first ``users`` users (a random sample: the log's users are in
        random order) and their ratings, and every item: the catalogue, and so the action space and
        the cost of a step, stay the release's (None: every user)
    """
    import dataclasses
    import subprocess

    from recsim_env import load_movielens

    root = Path(root)
    if not (root / "ml-32m" / "ratings.csv").exists():
        subprocess.run([sys.executable, "-m", "experiments.synthetic_log", "--shape", "ml-32m", "--out", str(root)],
                       check=True)
    data = load_movielens("ml-32m", root, download=False, cache_dir=root / "cache", expect_official=False)
    if users is None or users >= data.n_users:
        return data
    keep = data.user < users
    return dataclasses.replace(
        data, user=data.user[keep], item=data.item[keep], rating=data.rating[keep], timestamp=data.timestamp[keep],
        user_features=data.user_features[:users], user_raw_ids=data.user_raw_ids[:users])


def profile_training(config, train_steps: int, pretrain_probe: int = 20, split=None) -> tuple[dict[str, float], Any]:
    """Where a training step of ``config`` (normally the ``default`` preset) spends its time.

    Runs the model (SB3 DQN, ``config.n_envs`` environments) for ``train_steps`` environment
    steps after the warm-up and times, per vector step (``n_envs`` transitions,
    ``gradient_steps`` updates): the environments' step, acting (the masked epsilon-greedy
    forward pass), adding to the replay buffer, replay sampling, next-item sampling (logged
    windows or pairs, and the negatives of a sampled loss), the next-item loss's forward pass,
    the TD target (no gradient), the rest of the update (TD forward and the backward pass of
    both losses) and the optimizer step. Validation is timed once and amortised over
    ``eval_freq`` steps; pre-training (if the config has it) is timed over ``pretrain_probe``
    steps and extrapolated.

    :param config: the :class:`~agents.config.TrainConfig` (``torch_threads`` is applied)
    :param train_steps: timed environment steps (after ``learning_starts``)
    :param pretrain_probe: pre-training steps to time
    :param split: the split to train on (default: ``config``'s dataset, :func:`agents.make.load_split`)
    :return: ``(profile, model)``: milliseconds per vector step of each part of :data:`PARTS`
        (``"other"``: SB3's loop, callbacks), ``"total"``, ``"transitions_per_s"``,
        ``"cpu_transitions_per_s"`` (per second of this process's CPU time), ``"evaluation_s"``
        (one validation), ``"pretrain_ms_per_step"``, ``"estimated_run_s"`` (the config's whole
        budget); and the model after the timed steps
    """
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.scoring import make_score_fn
    from agents.make import attach_logged_data, build_agent, load_split, make_env, make_train_vec_env
    from recsim_env import evaluate_ranking, holdout_last

    th.set_num_threads(config.torch_threads)
    split = load_split(config) if split is None else split
    vec_env = make_train_vec_env(config, split)
    model = build_agent(config, vec_env)
    attach_logged_data(model, config, vec_env)
    timers = _Timers()
    out: dict[str, float] = {"pretrain_ms_per_step": 0.0}
    if model.__dict__.get("next_item_source") is not None:
        model.set_next_item_source(_TimedSource(model.next_item_source, timers))
        if config.pretrain_steps:
            model.pretrain(2)  # warm-up
            t0 = time.perf_counter()
            model.pretrain(pretrain_probe)
            out["pretrain_ms_per_step"] = 1e3 * (time.perf_counter() - t0) / pretrain_probe
        model.pretrained_steps = model.pretrain_steps  # the rest is estimated from the probe, not run by learn()
    vec_env.step_wait = timers.wrap("env step", vec_env.step_wait)
    model._sample_action = timers.wrap("acting (forward)", model._sample_action)
    model.train = timers.wrap("update", model.train)
    model.next_item_loss = timers.wrap("next-item loss", model.next_item_loss)
    if hasattr(model, "next_q_values"):
        model.next_q_values = timers.wrap("TD target (no grad)", model.next_q_values)
    model.policy.optimizer.step = timers.wrap("optimizer step", model.policy.optimizer.step)
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_training_start(self) -> None:
            buffer = self.model.replay_buffer  # created by learn(): wrap it now
            buffer.add = timers.wrap("replay add", buffer.add)
            buffer.sample = timers.wrap("replay sampling", buffer.sample)

        def _on_step(self) -> bool:
            if "start" not in marks and self.num_timesteps >= config.learning_starts:
                marks["start"], marks["cpu"] = time.perf_counter(), time.process_time()
                marks["start_step"] = self.num_timesteps
                timers.on = True
            return True

    model.learn(config.learning_starts + train_steps, callback=Clock())
    timers.on = False
    elapsed, cpu = time.perf_counter() - marks["start"], time.process_time() - marks["cpu"]
    vector_steps = (model.num_timesteps - marks["start_step"]) / config.n_envs
    ms = {k: 1e3 * v / vector_steps for k, v in timers.seconds.items()}
    ms["next-item loss forward"] = ms.pop("next-item loss", 0.0) - ms.get("next-item sampling", 0.0)
    ms["TD forward, backward"] = ms.pop("update", 0.0) - sum(ms.get(k, 0.0) for k in (
        "replay sampling", "next-item sampling", "next-item loss forward", "TD target (no grad)", "optimizer step"))
    parts = {k: ms.get(k, 0.0) for k in PARTS}
    total = 1e3 * elapsed / vector_steps
    out.update(parts)
    out["other"] = total - sum(parts.values())
    out["total"] = total
    out["transitions_per_s"] = config.n_envs * vector_steps / elapsed
    out["cpu_transitions_per_s"] = config.n_envs * vector_steps / cpu

    val = holdout_last(split, config.val_fraction)
    env = make_env(config, val, "test")
    t0 = time.perf_counter()
    evaluate_ranking(make_score_fn(model, env), val, k=config.eval_k)
    out["evaluation_s"] = time.perf_counter() - t0
    out["evaluation"] = 1e3 * out["evaluation_s"] * config.n_envs / config.eval_freq if config.eval_freq else 0.0
    n_evals = config.total_timesteps // config.eval_freq if config.eval_freq else 0
    out["estimated_run_s"] = (config.total_timesteps / out["transitions_per_s"] + n_evals * out["evaluation_s"]
                              + config.pretrain_steps * out["pretrain_ms_per_step"] / 1e3)
    out["n_envs"] = config.n_envs
    vec_env.close()
    return out, model


def print_profile(label: str, config, prof: dict[str, float]) -> None:
    """The breakdown of :func:`profile_training` as a table."""
    print(f"\ntraining step profile, preset {config.preset} on {label} (one vector step = {config.n_envs} "
          f"transitions and {config.gradient_steps} gradient step(s)):")
    for name in (*PARTS, "other", "evaluation"):
        note = f" (one validation {prof['evaluation_s']:.1f} s every {config.eval_freq:,} steps)" \
            if name == "evaluation" else ""
        print(f"  {name:<26}{prof[name]:8.2f} ms  {100 * prof[name] / (prof['total'] + prof['evaluation']):5.1f}%{note}")
    print(f"  {'total':<26}{prof['total'] + prof['evaluation']:8.2f} ms")
    print(f"  training throughput: {prof['transitions_per_s']:,.0f} transitions/s "
          f"({prof['cpu_transitions_per_s']:,.0f} per second of process CPU time)")
    if config.pretrain_steps:
        print(f"  pre-training: {prof['pretrain_ms_per_step']:.1f} ms per step x {config.pretrain_steps:,} steps = "
              f"{prof['pretrain_ms_per_step'] * config.pretrain_steps / 1e3:.0f} s")
    print(f"  estimated run of the config's {config.total_timesteps:,} steps: {prof['estimated_run_s'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_agent", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=make_config("default").torch_threads,
                        help="torch threads (default: the default config's)")
    parser.add_argument("--train-steps", type=int, default=12_800, help="timed training transitions")
    parser.add_argument("--datasets", nargs="+", default=list(N_ITEMS), choices=list(N_ITEMS),
                        help="datasets of the training profile (default: both)")
    parser.add_argument("--quick", action="store_true", help="shorter timings, no training profile")
    parser.add_argument("--synthetic", action="store_true",
                        help="profile the synthetic log with ML-32M's shape instead of --datasets "
                             "(experiments.synthetic_log; written to --synthetic-root when missing)")
    parser.add_argument("--synthetic-root", default=str(SYNTHETIC_ROOT),
                        help="folder holding the synthetic ml-32m/ (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field of the profiled config (repeatable), e.g. --set next_item_loss=full "
                             "--set item_compute=dense for the computations of a small catalogue")
    parser.add_argument("--synthetic-users", type=int, default=3_000,
                        help="users of the synthetic log, its ratings scaled alike (default 3,000: the "
                             "per-step cost depends on the catalogue and the user lengths, not on the number "
                             "of users; each of the 64 environments holds its own copy of the split)")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    from agents.kernel_path import pin_kernel_path

    kernel_path = pin_kernel_path(make_config("default", **overrides).kernel_path)  # as make train, before torch runs
    import gymnasium as gym
    import torch as th

    th.set_num_threads(args.threads)
    config = make_config("default")
    print(f"torch {th.__version__}, {args.threads} thread(s), kernel path {kernel_path}; extractor "
          f"{extractor_kwargs(config)}")

    print("\nreplay memory of SB3's DictReplayBuffer (replay_buffer=sb3; obs + next_obs stored, liked and excluded "
          "as packed bits; the default compact buffer: python -m experiments.bench_replay):")
    for name, n in N_ITEMS.items():
        per = dict_replay_bytes_per_transition(observation_space(n), gym.spaces.Discrete(n))
        print(f"  {name:8s} {n:5d} items: {per:5d} bytes/transition; {config.buffer_size:,} transitions = "
              f"{per * config.buffer_size / 2**20:7.1f} MiB")

    print("\nextractor throughput (observations/s):")
    for name, n in N_ITEMS.items():
        for batch in (128, 256):
            fwd, both = bench_extractor(n, batch, seconds=0.5 if args.quick else 1.5)
            print(f"  {name:8s} batch {batch:3d}: forward {fwd:9,.0f}/s   forward+backward {both:9,.0f}/s")

    if args.synthetic:
        from recsim_env import split_ratings

        split = split_ratings(synthetic_data(args.synthetic_root, users=args.synthetic_users))
        config = make_config("default", dataset="ml-32m", torch_threads=args.threads, **overrides)
        config = config.for_catalogue(split.n_items)
        label = (f"synthetic ml-32m ({split.n_users:,} users, {split.n_items:,} items; next-item softmax "
                 f"{config.next_item_loss}, item terms {config.item_compute})")
        print_profile(label, config, profile_training(config, args.train_steps, split=split)[0])
    elif not args.quick:
        for dataset in args.datasets:
            config = make_config("default", dataset=dataset, torch_threads=args.threads, **overrides)
            print_profile(dataset, config, profile_training(config, args.train_steps)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
