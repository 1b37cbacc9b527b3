"""Agent-side speed and memory figures (prints them; not a timed test).

* Extractor throughput: observations per second through :class:`LongShortExtractor` (forward,
  and forward + backward), on ML-100K- and ML-1M-sized observation spaces.
* Replay memory: bytes per transition in SB3's ``DictReplayBuffer`` and the default buffer's
  total, for both sizes.
* Training throughput: environment transitions per second of the default DQN configuration
  on ML-100K (after the warm-up, gradient steps included).

Usage::

    python -m experiments.bench_agent [--threads 2] [--train-steps 6000] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from experiments.config import make_config
from experiments.train import extractor_kwargs, replay_bytes_per_transition

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


def bench_training(train_steps: int, threads: int) -> dict[str, float]:
    """Transitions/s of the default DQN on ML-100K over ``train_steps`` steps after warm-up."""
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.factory import build_model
    from experiments.train import _algo_kwargs, load_split, make_train_vec_env

    config = make_config("default", torch_threads=threads)
    th.set_num_threads(threads)
    vec_env = make_train_vec_env(config, load_split(config))
    model = build_model("dqn", vec_env, extractor_kwargs=extractor_kwargs(config), net_arch=config.net_arch,
                        dueling=config.dueling, mask_excluded=config.mask_excluded, seed=0, device="cpu",
                        **_algo_kwargs(config))  # fmt: skip
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if "start" not in marks and self.num_timesteps >= config.learning_starts:
                marks["start"], marks["start_step"] = time.perf_counter(), self.num_timesteps
            return True

    model.learn(config.learning_starts + train_steps, callback=Clock())
    elapsed = time.perf_counter() - marks["start"]
    steps = model.num_timesteps - marks["start_step"]
    updates = steps / (config.train_freq * config.n_envs) * config.gradient_steps
    return {"steps_per_s": steps / elapsed, "updates_per_s": updates / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_agent", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=make_config("default").torch_threads,
                        help="torch threads (default: the default config's)")
    parser.add_argument("--train-steps", type=int, default=6000, help="timed training transitions")
    parser.add_argument("--quick", action="store_true", help="shorter timings, no training benchmark")
    args = parser.parse_args(argv)
    import gymnasium as gym
    import torch as th

    th.set_num_threads(args.threads)
    config = make_config("default")
    print(f"torch {th.__version__}, {args.threads} thread(s); extractor {extractor_kwargs(config)}")

    print("\nreplay memory (SB3 DictReplayBuffer, obs + next_obs stored, liked and excluded as packed bits):")
    for name, n in N_ITEMS.items():
        per = replay_bytes_per_transition(observation_space(n), gym.spaces.Discrete(n))
        print(f"  {name:8s} {n:5d} items: {per:5d} bytes/transition; {config.buffer_size:,} transitions = "
              f"{per * config.buffer_size / 2**20:7.1f} MiB")

    print("\nextractor throughput (observations/s):")
    for name, n in N_ITEMS.items():
        for batch in (128, 256):
            fwd, both = bench_extractor(n, batch, seconds=0.5 if args.quick else 1.5)
            print(f"  {name:8s} batch {batch:3d}: forward {fwd:9,.0f}/s   forward+backward {both:9,.0f}/s")

    if not args.quick:
        stats = bench_training(args.train_steps, args.threads)
        print(f"\ntraining (default DQN, ml-100k, {config.n_envs} envs, batch {config.batch_size}): "
              f"{stats['steps_per_s']:,.0f} env transitions/s, {stats['updates_per_s']:,.1f} gradient steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
