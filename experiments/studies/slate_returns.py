"""Simulated return of the baselines and LSRWRL in slate mode (``MovieLensRec-v0``, test mode).

Reads top to bottom: config, data, models, the offline check, the simulation, the files.

* **Models.** The numpy baselines of Table 1 (``--models``, default popularity, ItemCF, UserCF,
  EASE; any registry name works, the neural ones train for minutes) are tuned on the validation
  slice (:func:`agents.baselines.tuning.tune`, as Table 1 does), then refitted on the train part.
  They score by user index (``evaluate_greedy(..., by_user=True)``): their scores are those of
  the start state and ignore the likes within the episode (the mask still removes every item
  shown). LSRWRL (``--lsrwrl-run runs/<run>``, a saved ``experiments.train`` run) scores every
  observation with its Q-values, so it follows the state.
* **Simulation.** For every slate size ``k`` (``--slate-sizes``, default 1 and 10) and response
  model (``--responses``; ``k = 1`` is the single-item environment, whatever the response),
  each model's greedy policy (:func:`recsim_env.evaluate_greedy`: the ``k`` best allowed items
  by its scores) plays one test-mode episode per user with a liked test item (907 on ML-100K),
  ``max_steps = 50`` slates, the default reward (rating / 5 on a like). The cascade draws come
  from the vector environment seeded with ``--seed``.
* **Offline check.** With ``k = 10``, the independent response and a reward of 1 for every
  consumed test item (``reward_map={1: 1.0, ..., 5: 1.0}``, like rule unchanged), the first
  slate's reward in each user's test-mode start state is the number of test items among the
  model's top 10, i.e. the evaluator's hits@10 for that user: over the users a test episode can
  start from (907 on ML-100K) its mean is ``10 x precision@10`` of
  :func:`recsim_env.evaluate_ranking` on those users. Both are written side by side.

Writes ``<out>/slate_returns_<dataset>.json`` and ``.md`` (atomically).

Usage::

    MOVIELENS_DATA=../shared/data python -m experiments.studies.slate_returns [--lsrwrl-run runs/<run>] [--models popularity itemcf usercf ease] [--slate-sizes 1 10] [--responses independent cascade] [--examine 0.8] [--seed 0] [--out results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from recsim_env.dataset import DATASETS, Split
from recsim_env.slates import DEFAULT_EXAMINE, RESPONSES

#: The numpy baselines of Table 1 (fast to tune and fit).
NUMPY_BASELINES: tuple[str, ...] = ("popularity", "itemcf", "usercf", "ease")


@dataclass
class SlateReturnsConfig:
    """What to simulate."""

    dataset: str = "ml-100k"  # MovieLens dataset
    data_dir: str | None = None  # data root (default: $MOVIELENS_DATA, cache, download)
    models: list[str] = field(default_factory=lambda: list(NUMPY_BASELINES))  # baselines to run
    lsrwrl_run: str | None = None  # a saved experiments.train run directory (None: no LSRWRL row)
    slate_sizes: list[int] = field(default_factory=lambda: [1, 10])  # items per step
    responses: list[str] = field(default_factory=lambda: list(RESPONSES))  # slate response models
    examine: float = DEFAULT_EXAMINE  # cascade: probability of examining the next position
    num_envs: int = 128  # users simulated together
    max_users: int | None = None  # simulate only the first N eligible users (None: all; for quick runs)
    seed: int = 0  # seed of the vector environment (cascade draws) and of the baselines
    out: str = "results"  # folder of the result files


@dataclass
class Scorer:
    """A model's item scores: by user index (baselines) or by observation (LSRWRL)."""

    name: str
    score: Callable[[Any], np.ndarray]
    by_user: bool
    ranking_score: Callable[[np.ndarray], np.ndarray]  # user indices -> start-state scores
    details: dict[str, Any] = field(default_factory=dict)


def fit_baseline(name: str, split: Split, seed: int) -> Scorer:
    """Tune ``name`` on the validation slice, refit it on the train part (as Table 1 does)."""
    from agents.baselines import get_recommender_class, init_param_names, make_recommender
    from agents.baselines.tuning import tune

    accepted = set(init_param_names(get_recommender_class(name)))
    fixed = {k: v for k, v in {"seed": seed, "num_threads": 1}.items() if k in accepted}
    t0 = time.perf_counter()
    tuned = tune(name, split, fixed=fixed)
    model = make_recommender(name, **fixed, **tuned.params).fit(split)
    details = {"params": tuned.params, "fit_seconds": round(time.perf_counter() - t0, 1)}
    return Scorer(name, model.score, True, model.score, details)


def load_lsrwrl(run_dir: str, split: Split, dataset: str) -> Scorer:
    """The Q-value scorer of a saved LSRWRL run (its split settings must be the default ones)."""
    from agents.scoring import score_observations
    from experiments.evaluate import load_run

    config, model = load_run(run_dir)
    if (config.dataset, config.split, config.train_ratio) != (dataset, "temporal", 0.8):
        raise ValueError(
            f"{run_dir} was trained on {config.dataset} with the {config.split} split "
            f"(train_ratio {config.train_ratio}); this script simulates {dataset} with the "
            f"default temporal 0.8 split: pass a run trained on those"
        )
    sim = recsim_env.ReplaySimulator(split_data=split, mode="test")

    def ranking_score(users: np.ndarray) -> np.ndarray:
        return np.concatenate([score_observations(model, sim.start_observations(users[i:i + 512]))
                               for i in range(0, len(users), 512)])

    metrics_path = Path(run_dir) / "metrics.json"
    training = json.loads(metrics_path.read_text())["training"] if metrics_path.exists() else {}
    details = {"run": str(run_dir), "algo": config.algo, "total_timesteps": config.total_timesteps,
               "env_steps": training.get("env_steps"), "tune": config.tune}
    return Scorer("lsrwrl", lambda obs: score_observations(model, obs), False, ranking_score, details)


def first_slate_hits(scorer: Scorer, split: Split) -> dict[str, float]:
    """Mean first-slate reward (k = 10, independent, every test item worth 1) beside hits@10.

    Over the users a test episode can start from (a liked test item), in their start state; the
    like rule is the default one, so state-based scorers see the default observations.
    """
    from recsim_env import MovieLensRecVectorEnv, TopKPolicy, evaluate_ranking

    ones = {r: 1.0 for r in range(1, 6)}
    users = recsim_env.ReplaySimulator(split_data=split, mode="test").users
    env = MovieLensRecVectorEnv(
        len(users), split_data=split, mode="test", slate_size=10, reward_map=ones
    )
    obs, _ = env.reset(options={"user": users})
    if scorer.by_user:
        policy = TopKPolicy(lambda o: scorer.score(users), slate_size=10)
    else:
        policy = TopKPolicy(scorer.score, slate_size=10)
    _, reward, _, _, _ = env.step(policy(obs))
    ranking = evaluate_ranking(scorer.ranking_score, split, users=users, return_per_user=True)
    hits = ranking["per_user"]["precision@10"] * 10
    return {
        "first_slate_reward": float(reward.mean()),
        "hits@10": float(hits.mean()),
        "precision@10": ranking["precision@10"],
        "equal_per_user": bool(np.array_equal(reward, np.rint(hits))),
        "n_users": int(len(users)),
    }


def simulate(
    scorer: Scorer, split: Split, k: int, response: str, config: SlateReturnsConfig
) -> dict[str, Any]:
    """One greedy test-mode episode per eligible user with slates of ``k`` items."""
    from recsim_env import evaluate_greedy

    examine = config.examine if (response == "cascade" and k > 1) else None
    env = gym.make_vec(
        "MovieLensRec-v0", num_envs=config.num_envs, vectorization_mode="vector_entry_point",
        mode="test", split_data=split, slate_size=k, response=response, examine=examine,
    )
    t0 = time.perf_counter()
    users = env.unwrapped.users[: config.max_users]
    result = evaluate_greedy(scorer.score, env, users, by_user=scorer.by_user, seed=config.seed)
    env.close()
    return {"model": scorer.name, "slate_size": k, "response": response if k > 1 else "single item",
            **result, "seconds": round(time.perf_counter() - t0, 1)}


def render_markdown(rows: list[dict[str, Any]], checks: dict[str, dict[str, float]],
                    scorers: dict[str, Scorer], config: SlateReturnsConfig, command: str) -> str:
    """The markdown report: one table of returns, one of the offline check."""
    names = list(scorers)
    settings = list(dict.fromkeys((r["slate_size"], r["response"]) for r in rows))  # run order
    lines = [
        f"# Simulated return in slate mode ({config.dataset}, test mode)",
        "",
        f"`{command}`",
        "",
        "Mean return per user (mean liked items per user in brackets) of each model's greedy policy, "
        "one test-mode episode per user with a liked test item, at most 50 steps (slates), reward "
        f"rating / 5 per like; cascade examine = {config.examine}, seed {config.seed}. Baselines "
        "score by user (start-state scores for the whole episode); LSRWRL scores every observation.",
        "",
        "| setting | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    by_key = {(r["model"], r["slate_size"], r["response"]): r for r in rows}
    for k, response in settings:
        label = "k = 1" if k == 1 else f"k = {k}, {response}"
        cells = [by_key[(n, k, response)] for n in names]
        cells = [f"{c['mean_return']:.3f} ({c['mean_liked_items']:.2f})" for c in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    users = rows[0]["n_episodes"] if rows else 0
    lines += [
        "",
        f"{users} users. Offline check: with k = 10, the independent response and a reward of 1 for "
        "every consumed test item (`reward_map={1: 1.0, ..., 5: 1.0}`), the first slate's reward in "
        "the test-mode start state is the number of test items in the model's top 10 (the "
        "evaluator's hits@10, here over the users a test episode can start from):",
        "",
        "| model | mean first-slate reward | mean hits@10 (`evaluate_ranking`) | precision@10 "
        "| equal for every user |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        c = checks[name]
        equal = "yes" if c["equal_per_user"] else "NO"
        lines.append(f"| {name} | {c['first_slate_reward']:.4f} | {c['hits@10']:.4f} "
                     f"| {c['precision@10']:.4f} | {equal} ({c['n_users']} users) |")
    details = [f"- {n}: {json.dumps(s.details, sort_keys=True)}" for n, s in scorers.items()]
    return "\n".join(lines + ["", "Models:", "", *details, ""])


def parse_args(argv: Sequence[str] | None) -> SlateReturnsConfig:
    defaults = SlateReturnsConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=defaults.dataset, choices=DATASETS)
    parser.add_argument("--data-dir", default=os.environ.get("MOVIELENS_DATA") or None,
                        help="MovieLens data root")
    parser.add_argument("--models", nargs="*", default=defaults.models,
                        help="baselines (registry names)")
    parser.add_argument("--lsrwrl-run", default=None, help="saved experiments.train run directory")
    parser.add_argument("--slate-sizes", nargs="+", type=int, default=defaults.slate_sizes)
    parser.add_argument("--responses", nargs="+", default=defaults.responses, choices=RESPONSES)
    parser.add_argument("--examine", type=float, default=defaults.examine,
                        help="cascade examine probability")
    parser.add_argument("--num-envs", type=int, default=defaults.num_envs)
    parser.add_argument("--max-users", type=int, default=None,
                        help="simulate only the first N eligible users (default: all)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", default=defaults.out, help="folder of the result files")
    args = parser.parse_args(argv)
    if (any(k < 1 for k in args.slate_sizes) or args.num_envs < 1 or not 0 <= args.examine <= 1
            or (args.max_users is not None and args.max_users < 1)):
        parser.error("--slate-sizes, --num-envs and --max-users must be >= 1, --examine in [0, 1]")
    if not args.models and args.lsrwrl_run is None:
        parser.error("nothing to simulate: give --models and/or --lsrwrl-run")
    return SlateReturnsConfig(**{k: v for k, v in vars(args).items()})


def main(argv: Sequence[str] | None = None) -> int:
    from recsim_env.files import atomic_write_text
    from recsim_env import load_movielens, split_ratings

    config = parse_args(argv)
    command = "python -m experiments.studies.slate_returns " + " ".join(sys.argv[1:] if argv is None else argv)

    # Data: the default temporal split, as Table 1 and experiments.train.
    split = split_ratings(load_movielens(config.dataset, config.data_dir))

    # Models.
    scorers: dict[str, Scorer] = {}
    for name in config.models:
        scorers[name] = fit_baseline(name, split, config.seed)
        print(f"{name}: {scorers[name].details}", flush=True)
    if config.lsrwrl_run is not None:
        scorers["lsrwrl"] = load_lsrwrl(config.lsrwrl_run, split, config.dataset)

    # The offline check, then the simulation.
    checks = {name: first_slate_hits(s, split) for name, s in scorers.items()}
    rows = []
    for k in config.slate_sizes:
        for response in (config.responses if k > 1 else config.responses[:1]):
            for name, scorer in scorers.items():
                rows.append(simulate(scorer, split, k, response, config))
                r = rows[-1]
                print(f"k={k:<3} {r['response']:<12} {name:<10} return {r['mean_return']:.3f}  "
                      f"liked {r['mean_liked_items']:.2f}  steps {r['mean_length']:.1f}", flush=True)

    out = Path(config.out)
    stem = f"slate_returns_{config.dataset}"
    payload = {"config": asdict(config), "command": command, "rows": rows, "first_slate_check": checks,
               "models": {n: s.details for n, s in scorers.items()}}
    atomic_write_text(out / f"{stem}.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / f"{stem}.md", render_markdown(rows, checks, scorers, config, command))
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
