"""Reference returns for your own agent: what simple rules and a generic SB3 DQN score.

Every figure of the README's "From your own code" part comes from this script. All policies
are evaluated the same way, by :func:`recsim_env.evaluate_greedy` in the test-mode
environment (one episode per test user, the whole train history as the start state, at most
``max_steps`` recommendations): at each step the highest-scoring item among those the
observation allows (``~unpack_bits(obs["excluded"])``), and for contrast the plain argmax.

* ``random_allowed``: a uniformly random allowed item (random scores, seeded);
* ``popularity_unseen``: the most popular item (train-split rating counts) the user has not
  seen and has not been recommended yet;
* ``sb3_dqn``: ``stable_baselines3.DQN("MultiInputPolicy", env, seed=seed)`` with SB3's
  defaults, trained on the train-mode environment for ``--dqn-steps`` steps and scored by its
  Q-values, masked (``evaluate_greedy``) and unmasked (what ``model.predict(obs,
  deterministic=True)`` does), at a few budgets along the way.

Usage::

    python -m experiments.studies.own_code_reference                 # writes results/own_code_reference.json
    python -m experiments.studies.own_code_reference --dqn-steps 0   # the two rules only (seconds)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.training import atomic_write_json, package_versions

#: Default output file (committed, so that the README's figures are traceable).
DEFAULT_OUT = Path("results") / "own_code_reference.json"


def reference_returns(
    dataset: str = "ml-100k",
    data_dir: str | None = None,
    dqn_steps: int = 50_000,
    eval_at: tuple[int, ...] = (10_000, 25_000),
    seed: int = 0,
    num_envs: int = 64,
    n_users: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Greedy test-mode returns of the reference policies (see the module docstring).

    :param dataset: ``"ml-100k"`` or ``"ml-1m"``
    :param data_dir: data root (None: ``MOVIELENS_DATA``, cache, download)
    :param dqn_steps: training steps of the generic SB3 DQN (0: skip it)
    :param eval_at: extra budgets (steps, below ``dqn_steps``) at which the DQN is evaluated too
    :param seed: seed of the DQN and of the random policy
    :param num_envs: users simulated at once by the test vector environment
    :param n_users: evaluate the first ``n_users`` test users only (None: all of them)
    :param progress: print a line per result
    :return: JSON-ready dict
    """
    import gymnasium as gym

    import recsim_env  # registers MovieLensRec-v0
    from recsim_env import evaluate_greedy, load_movielens, split_ratings

    say = print if progress else (lambda *a, **k: None)
    split = split_ratings(load_movielens(dataset, data_dir))
    test_env = gym.make_vec("MovieLensRec-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                            mode="test", split_data=split)  # fmt: skip
    n_items = split.n_items
    results: dict[str, Any] = {}

    users = test_env.unwrapped.users[:n_users]

    def evaluate(name: str, score, masked: bool = True) -> dict[str, float]:
        got = evaluate_greedy(score, test_env, users, masked=masked)
        say(f"{name:<32} mean return {got['mean_return']:.3f}  likes {got['mean_likes']:.2f}  "
            f"length {got['mean_length']:.1f}  ({got['n_episodes']} users)")
        return got

    rng = np.random.default_rng(seed)
    results["random_allowed"] = evaluate("random allowed item", lambda obs: rng.random((len(obs["user"]), n_items)))
    popularity = np.bincount(split.train_items, minlength=n_items).astype(np.float64)

    def popular(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.broadcast_to(popularity, (len(obs["user"]), n_items))

    results["popularity_unseen"] = evaluate("most popular allowed item", popular)
    results["popularity_unmasked"] = evaluate("most popular item (unmasked)", popular, masked=False)

    if dqn_steps > 0:
        results["sb3_dqn"] = _generic_dqn(split, test_env, dqn_steps, eval_at, seed, evaluate)
    max_steps = test_env.unwrapped.max_steps
    test_env.close()
    return {
        "dataset": dataset,
        "split": f"{split.method}, train_ratio {split.train_ratio} (the environment's default)",
        "mode": "test",
        "max_steps": max_steps,
        "seed": seed,
        "policies": results,
        "versions": package_versions(),
    }


def _generic_dqn(split, test_env, steps: int, eval_at: tuple[int, ...], seed: int, evaluate) -> dict[str, Any]:
    """SB3's DQN with its defaults, as a user of another project would run it."""
    import gymnasium as gym
    import torch as th
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    def q_values(model):
        def score(obs: dict[str, np.ndarray]) -> np.ndarray:
            with th.no_grad():
                return model.q_net(model.policy.obs_to_tensor(obs)[0]).cpu().numpy()

        return score

    budgets: dict[str, Any] = {}

    def record(model, n_steps: int, seconds: float) -> None:
        score = q_values(model)
        budgets[str(n_steps)] = {
            "masked": evaluate(f"SB3 DQN {n_steps:,} steps, masked", score),
            "unmasked": evaluate(f"SB3 DQN {n_steps:,} steps, unmasked", score, masked=False),
            "train_seconds": round(seconds, 1),
        }

    class Checkpoints(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in eval_at:
                record(self.model, self.num_timesteps, time.perf_counter() - start)
            return True

    train_env = gym.make("MovieLensRec-v0", split_data=split)
    model = DQN("MultiInputPolicy", train_env, seed=seed)
    start = time.perf_counter()
    model.learn(steps, callback=Checkpoints())
    record(model, steps, time.perf_counter() - start)
    return {
        "construction": 'DQN("MultiInputPolicy", gym.make("MovieLensRec-v0"), seed=seed), SB3 defaults',
        "torch_threads": th.get_num_threads(),
        "budgets": budgets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.own_code_reference",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--dataset", default="ml-100k", choices=("ml-100k", "ml-1m"))
    parser.add_argument("--data-dir", default=None, help="data root (default: MOVIELENS_DATA, cache, download)")
    parser.add_argument("--dqn-steps", type=int, default=50_000, help="SB3 DQN training steps (0: skip)")
    parser.add_argument("--eval-at", default="10000,25000", help="extra DQN budgets to evaluate, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-users", type=int, default=None, help="first N test users only (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.dqn_steps < 0:
        parser.error(f"--dqn-steps must be >= 0, got {args.dqn_steps}")
    if args.n_users is not None and args.n_users < 1:
        parser.error(f"--n-users must be >= 1, got {args.n_users}")
    try:
        eval_at = tuple(int(s) for s in args.eval_at.split(",") if s.strip())
    except ValueError:
        parser.error(f"--eval-at must be comma-separated integers, got {args.eval_at!r}")
    import torch as th

    th.set_num_threads(args.threads)
    command = "python -m experiments.studies.own_code_reference " + " ".join(argv if argv is not None else sys.argv[1:])
    result = reference_returns(args.dataset, args.data_dir, args.dqn_steps, eval_at, args.seed,
                               n_users=args.n_users)  # fmt: skip
    atomic_write_json(args.out, {"command": command.strip(), **result})
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
