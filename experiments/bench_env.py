"""Steps per second of MovieLensRec-v0 (single and vector) against Gymnasium's CartPole-v1.

Every dataset given (default: ML-100K and ML-1M) is measured in the same run, each against
CartPole-v1 in the same rounds. Each environment gets random in-range actions drawn with numpy before the clock starts and is
reset whenever an episode ends; the vector environment (``NEXT_STEP`` autoreset) counts
``num_envs`` steps per call. The three are measured in alternating rounds and each figure is the
median over rounds (each ratio: the median of the per-round ratios), so that load from other
processes hits all three alike. Targets: single MovieLensRec-v0 >= CartPole-v1 (ratio >= 1) and
the vector environment >= 10x CartPole-v1.

Slate mode (``slate_size=10``, independent response) is measured in the same rounds, single and
vector, with random in-range slates; a slate is one step.

It also times the shared evaluator (:func:`recsim_env.evaluate_ranking`): one full-ranking
pass over every test user and every item (943 x 1,682 on ML-100K, 6,040 x 3,706 on ML-1M) with
a precomputed random score matrix, so only the evaluator's own work is measured.

Usage::

    MOVIELENS_DATA=../shared/data python -m experiments.bench_env [--datasets ml-100k ml-1m] [--seconds 3] [--rounds 5] [--num-envs 64] [--slate-size 10]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from recsim_env.dataset import DATASETS


@dataclass
class BenchConfig:
    """What to measure."""

    seconds: float = 3.0  # wall-clock seconds per environment, over all rounds
    rounds: int = 5  # alternating measurement rounds
    num_envs: int = 64  # sub-environments of the vector environment
    dataset: str = "ml-100k"  # MovieLens dataset of MovieLensRec-v0
    data_dir: str | None = None  # data root (default: $MOVIELENS_DATA, cache, download)
    seed: int = 0  # seed of the environments and of the action draws
    slate_size: int = 10  # items per step of the slate-mode measurement


def bench_single(
    env: gym.Env, seconds: float, rng: np.random.Generator, chunk: int = 5_000
) -> float:
    """Steps per second of ``env`` with random actions and reset on episode end.

    :param env: a ``Discrete``-action environment (from ``gym.make``), already reset, or a
        ``MultiDiscrete`` one (slate mode: each action a random slate)
    :param seconds: minimum wall-clock seconds to run
    :param rng: draws the actions
    :param chunk: steps between clock checks (a chunk's actions are drawn before timing it)
    """
    space = env.action_space
    steps, elapsed = 0, 0.0
    while elapsed < seconds:
        if isinstance(space, gym.spaces.MultiDiscrete):
            actions = list(rng.integers(0, space.nvec, size=(chunk, len(space.nvec))))
        else:
            actions = rng.integers(0, int(space.n), size=chunk).tolist()
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        elapsed += time.perf_counter() - start
        steps += chunk
    return steps / elapsed


def bench_vector(
    envs: gym.vector.VectorEnv, seconds: float, rng: np.random.Generator, chunk: int = 200
) -> float:
    """Sub-environment steps per second (``num_envs`` per call) of a vector environment.

    :param envs: a vector environment with a ``Discrete`` (or, slate mode, ``MultiDiscrete``)
        single action space, already reset (it autoresets itself)
    :param seconds: minimum wall-clock seconds to run
    :param rng: draws the actions
    :param chunk: vector steps between clock checks
    """
    space = envs.single_action_space
    calls, elapsed = 0, 0.0
    while elapsed < seconds:
        if isinstance(space, gym.spaces.MultiDiscrete):
            actions = rng.integers(0, space.nvec, size=(chunk, envs.num_envs, len(space.nvec)))
        else:
            actions = rng.integers(0, int(space.n), size=(chunk, envs.num_envs))
        start = time.perf_counter()
        for batch in actions:
            envs.step(batch)
        elapsed += time.perf_counter() - start
        calls += chunk
    return calls * envs.num_envs / elapsed


def bench_dataset(config: BenchConfig) -> dict[str, float]:
    """The five measurements and four ratios for one dataset (see the module docstring)."""
    data_kwargs = {"dataset": config.dataset, "data_dir": config.data_dir}
    slate_kwargs = {**data_kwargs, "slate_size": config.slate_size}
    vec_kwargs = {"num_envs": config.num_envs, "vectorization_mode": "vector_entry_point"}
    rec_env = gym.make("MovieLensRec-v0", **data_kwargs)
    cartpole_env = gym.make("CartPole-v1")
    envs = gym.make_vec("MovieLensRec-v0", **vec_kwargs, **data_kwargs)
    slate_env = gym.make("MovieLensRec-v0", **slate_kwargs)
    slate_envs = gym.make_vec("MovieLensRec-v0", **vec_kwargs, **slate_kwargs)
    for env in (rec_env, cartpole_env, envs, slate_env, slate_envs):
        env.reset(seed=config.seed)
    rng = np.random.default_rng(config.seed)
    per_round = config.seconds / config.rounds
    rounds = np.array(
        [
            (
                bench_single(rec_env, per_round, rng),
                bench_single(cartpole_env, per_round, rng),
                bench_vector(envs, per_round, rng),
                bench_single(slate_env, per_round, rng),
                bench_vector(slate_envs, per_round, rng),
            )
            for _ in range(config.rounds)
        ]
    )
    rec, cartpole, vec, slate, slate_vec = np.median(rounds, axis=0)
    return {
        "movielens_single_steps_per_s": float(rec),
        "cartpole_steps_per_s": float(cartpole),
        "movielens_vector_steps_per_s": float(vec),
        "single_ratio": float(np.median(rounds[:, 0] / rounds[:, 1])),
        "vector_ratio": float(np.median(rounds[:, 2] / rounds[:, 1])),
        "slate_single_steps_per_s": float(slate),
        "slate_vector_steps_per_s": float(slate_vec),
        "slate_single_ratio": float(np.median(rounds[:, 3] / rounds[:, 1])),
        "slate_vector_ratio": float(np.median(rounds[:, 4] / rounds[:, 1])),
    }


def bench_evaluation(config: BenchConfig, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of one ``evaluate_ranking`` pass over the dataset's test users."""
    from recsim_env import evaluate_ranking, load_movielens, split_ratings

    split = split_ratings(load_movielens(config.dataset, config.data_dir))
    scores = np.random.default_rng(config.seed).random((split.n_users, split.n_items), dtype=np.float32)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate_ranking(lambda users: scores[users], split)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Measure every dataset, print the figures and ratios side by side, and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=BenchConfig.seconds, help="seconds per environment"
    )
    parser.add_argument("--rounds", type=int, default=BenchConfig.rounds, help="alternating rounds")
    parser.add_argument(
        "--num-envs", type=int, default=BenchConfig.num_envs, help="vector sub-environments"
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS,
                        help="datasets to measure (default: all)")
    parser.add_argument(
        "--data-dir", default=os.environ.get("MOVIELENS_DATA"), help="MovieLens data root"
    )
    parser.add_argument("--seed", type=int, default=BenchConfig.seed)
    parser.add_argument("--slate-size", type=int, default=BenchConfig.slate_size,
                        help="items per step of the slate-mode measurement")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.num_envs < 1 or args.slate_size < 2:
        parser.error("--seconds must be > 0, --rounds and --num-envs >= 1, --slate-size >= 2")
    configs = {
        name: BenchConfig(args.seconds, args.rounds, args.num_envs, name, args.data_dir, args.seed,
                          args.slate_size)
        for name in args.datasets
    }
    results = {name: bench_dataset(config) for name, config in configs.items()}
    for name, figures in results.items():
        figures["evaluation_seconds"] = bench_evaluation(configs[name])
    rows = [("", "".join(f"{name:>16s}" for name in results))]
    for label, key, fmt in (
        ("MovieLensRec-v0 (gym.make), steps/s", "movielens_single_steps_per_s", "{:16,.0f}"),
        ("CartPole-v1 (gym.make), steps/s", "cartpole_steps_per_s", "{:16,.0f}"),
        (f"MovieLensRecVectorEnv ({args.num_envs} envs), steps/s", "movielens_vector_steps_per_s", "{:16,.0f}"),
        ("single ratio (/ CartPole-v1), target >= 1", "single_ratio", "{:16.2f}"),
        ("vector ratio (/ CartPole-v1), target >= 10", "vector_ratio", "{:16.2f}"),
        (f"slate k={args.slate_size} (gym.make), slates/s", "slate_single_steps_per_s", "{:16,.0f}"),
        (f"slate k={args.slate_size} vector ({args.num_envs} envs), slates/s", "slate_vector_steps_per_s", "{:16,.0f}"),
        (f"slate k={args.slate_size} single ratio (/ CartPole-v1)", "slate_single_ratio", "{:16.2f}"),
        (f"slate k={args.slate_size} vector ratio (/ CartPole-v1)", "slate_vector_ratio", "{:16.2f}"),
        ("evaluate_ranking, all test users x all items, s", "evaluation_seconds", "{:16.3f}"),
    ):
        rows.append((label, "".join(fmt.format(r[key]) for r in results.values())))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return results


if __name__ == "__main__":
    main()
