"""The data side at catalogue scale: loading, the environment and replay memory on a synthetic ML-32M.

``python -m experiments.bench_scale_data`` writes (once) the synthetic log of
:mod:`experiments.synthetic_log` (ML-32M's shape and format; not MovieLens data), then measures
on it and merges into ``results/scale_synthetic-ml-32m.json`` (other keys of that file, from
the training benchmark, are kept):

* ``load_seconds``: parsing ``ratings.csv`` and ``movies.csv`` into the dataset (and writing
  the cache); ``cached_load_seconds``: the next load, from the cache;
* ``peak_rss_mb``: this process's peak resident memory after loading, splitting and building
  the environments (the log is written by a child process, so its memory does not count);
* ``env_single_cartpole_ratio`` and ``env_vec64_cartpole_ratio``: MovieLensRec-v0 steps per
  second, single and as a 64-env vector env, over CartPole-v1's in the same alternating rounds
  (:mod:`experiments.bench_env`'s method);
* ``replay_bytes_per_transition``: the compact replay buffer's measured bytes per transition
  (:class:`agents.replay.CompactDictReplayBuffer`) after random-policy transitions of the vector
  env, and SB3's ``DictReplayBuffer`` figure for comparison;
* ``env_vec64_cartpole_ratio_ml-1m``: the same vector ratio on the real ML-1M
  (:func:`experiments.bench_env.bench_dataset`), so that speed at catalogue scale is not bought
  at ML-1M's size (skipped with ``--no-ml-1m``, or when ML-1M is not found).

Timings are only meaningful on an otherwise idle machine; the file records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULT = Path("results/scale_synthetic-ml-32m.json")
#: The catalogue-scale targets (issue 24; the synthetic ML-32M log on the 2-core machine, idle):
#: (key of the results file, what it measures, "max" or "min", bound, unit).
TARGETS: tuple[tuple[str, str, str, float, str], ...] = (
    ("load_seconds", "load from the CSV files", "max", 60, "s"),
    ("cached_load_seconds", "load from the cache", "max", 5, "s"),
    ("peak_rss_mb", "peak memory: loads, a single and a 64-env vector environment", "max", 8e9 / 2**20, "MiB"),
    ("env_vec64_cartpole_ratio", "64-env vector environment, steps/s over CartPole-v1's", "min", 2, "x"),
    ("env_vec64_cartpole_ratio_ml-1m", "the same on the real ML-1M", "min", 10, "x"),
    ("replay_bytes_per_transition", "replay memory per transition", "max", 2048, "B"),
    ("train_steps_per_second", "LSRWRL training, preset default, environment steps/s", "min", 500, "/s"),
    ("evaluate_seconds", "full-ranking evaluation of every user", "max", 300, "s"),
)


def merge_result(path: Path, values: dict) -> dict:
    """Merge ``values`` into the JSON record at ``path`` (atomically) and return it. Writers
    (this module, :mod:`experiments.bench_scale`) take turns on a lock file, ``<path>.lock``, so
    that none drops the keys another one merged meanwhile."""
    import fcntl

    from recsim_env.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        record.update(values)
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "synthetic-ml-32m"),
                        help="folder holding ml-32m/ (the synthetic log is written there if missing)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per environment, all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replay-steps", type=int, default=100, help="vector steps into the replay buffer")
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument("--no-ml-1m", action="store_true", help="skip the ML-1M vector ratio")
    args = parser.parse_args(argv)
    root = Path(args.root)
    command = "python -m experiments.bench_scale_data " + " ".join(argv if argv is not None else sys.argv[1:])
    if not (root / "ml-32m" / "ratings.csv").exists():
        subprocess.run([sys.executable, "-m", "experiments.synthetic_log", "--shape", "ml-32m", "--out", str(root)],
                       check=True)
    load_average_start = os.getloadavg()

    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
    from experiments.bench_env import bench_single, bench_vector
    from recsim_env.movielens import load_movielens

    with tempfile.TemporaryDirectory() as cache:
        kwargs = dict(data_dir=root, download=False, cache_dir=cache, expect_official=False)
        t0 = time.perf_counter()
        data = load_movielens("ml-32m", **kwargs)
        load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = load_movielens("ml-32m", **kwargs)
        cached_load_seconds = time.perf_counter() - t0
    print(f"loaded {data.n_ratings:,} ratings, {data.n_users:,} users, {data.n_items:,} items: "
          f"{load_seconds:.1f} s, cached {cached_load_seconds:.1f} s", flush=True)

    single = gym.make("MovieLensRec-v0", data=data)
    vec = gym.make_vec("MovieLensRec-v0", num_envs=64, vectorization_mode="vector_entry_point", data=data)
    cartpole = gym.make("CartPole-v1")
    for env in (single, vec, cartpole):
        env.reset(seed=0)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    rng = np.random.default_rng(0)
    per_round = args.seconds / args.rounds
    rounds = np.array([(bench_single(single, per_round, rng, chunk=500), bench_single(cartpole, per_round, rng),
                        bench_vector(vec, per_round, rng, chunk=20)) for _ in range(args.rounds)])
    print(f"steps/s: single {np.median(rounds[:, 0]):,.0f}, CartPole {np.median(rounds[:, 1]):,.0f}, "
          f"vector x64 {np.median(rounds[:, 2]):,.0f}", flush=True)

    from agents.replay import CompactDictReplayBuffer, dict_replay_bytes_per_transition, replay_bytes_per_transition

    buffer = CompactDictReplayBuffer(args.replay_steps * vec.num_envs, vec.single_observation_space,
                                     vec.single_action_space, n_envs=vec.num_envs)
    obs, _ = vec.reset(seed=1)
    for _ in range(args.replay_steps):
        actions = rng.integers(0, vec.single_action_space.n, size=vec.num_envs)
        next_obs, rewards, terminated, truncated, infos = vec.step(actions)
        buffer.add(obs, next_obs, actions, rewards, terminated, [{} for _ in range(vec.num_envs)])
        obs = next_obs
    compact = replay_bytes_per_transition(buffer)
    plain = dict_replay_bytes_per_transition(vec.single_observation_space, vec.single_action_space)
    print(f"replay: compact {compact:,.0f} bytes per transition, SB3 {plain:,} bytes", flush=True)

    ml1m = {}
    if not args.no_ml_1m:
        from experiments.bench_env import BenchConfig, bench_dataset
        from recsim_env.movielens import DatasetNotFoundError

        try:
            figures = bench_dataset(BenchConfig(dataset="ml-1m", seconds=args.seconds, rounds=args.rounds))
        except DatasetNotFoundError as exc:
            print(f"ML-1M ratio skipped: {exc}", flush=True)
        else:
            ml1m = {"env_vec64_cartpole_ratio_ml-1m": round(figures["vector_ratio"], 3)}
            print(f"ML-1M: vector x64 / CartPole {figures['vector_ratio']:.2f}", flush=True)

    record = merge_result(Path(args.out), {
        "n_users": int(data.n_users), "n_items": int(data.n_items), "n_interactions": int(data.n_ratings),
        "load_seconds": round(load_seconds, 2), "cached_load_seconds": round(cached_load_seconds, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "env_single_steps_per_second": round(float(np.median(rounds[:, 0])), 1),
        "env_vec64_steps_per_second": round(float(np.median(rounds[:, 2])), 1),
        "cartpole_steps_per_second": round(float(np.median(rounds[:, 1])), 1),
        "env_single_cartpole_ratio": round(float(np.median(rounds[:, 0] / rounds[:, 1])), 3),
        "env_vec64_cartpole_ratio": round(float(np.median(rounds[:, 2] / rounds[:, 1])), 3),
        "replay_bytes_per_transition": round(float(compact), 1),
        "replay_bytes_per_transition_sb3": int(plain),
        **ml1m,
        "data_command": command,
        "data_load_average": [round(load_average_start[0], 2), round(os.getloadavg()[0], 2)],
    })
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
