"""Replay memory and sampling time: SB3's ``DictReplayBuffer`` against :class:`agents.replay.CompactDictReplayBuffer`.

For ML-100K (the real split) and a synthetic catalogue of ML-32M's 87,585 items (users who rate
160 random items each, ML-32M's mean, half of them liked), both buffers are filled with the same
transitions of preset ``default``'s training environments (its ``n_envs``, ``max_steps`` and
rewards; uniformly random actions, as SB3's warm-up) until they wrap around, then:

* bytes per transition, measured (:func:`agents.replay.replay_bytes_per_transition`; the
  compact buffer's per-slot arrays are spread over the capacity, so a larger buffer costs a
  little less per transition);
* time to add one vector step and to sample one batch of the preset's ``batch_size`` (median);
* a check that both buffers sample identical batches.

Usage::

    python -m experiments.bench_replay [--capacity 8192] [--samples 200] [--catalogues ml-100k 87585]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np

from agents.config import make_config

#: ML-32M's catalogue, the largest MovieLens release.
ML32M_ITEMS = 87_585


def synthetic_split(n_users: int, n_items: int, per_user: int, like_share: float = 0.5, seed: int = 0):
    """A :class:`recsim_env.Split` of users who each rate ``per_user`` random items (a share
    ``like_share`` rated 5, the others 1..3; no user features), split 80/20 in time.

    :param n_users: users
    :param n_items: catalogue size
    :param per_user: ratings per user (``<= n_items``)
    :param like_share: probability that a rating is a like (5)
    :param seed: seed of the items and ratings
    """
    from recsim_env import split_ratings
    from recsim_env.dataset import MovieLensData

    rng = np.random.default_rng(seed)
    item = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)]).astype(np.int32)
    rating = np.where(rng.random(item.size) < like_share, 5, rng.integers(1, 4, item.size)).astype(np.int8)
    data = MovieLensData(
        name="synthetic", user=np.repeat(np.arange(n_users), per_user).astype(np.int32), item=item, rating=rating,
        timestamp=np.arange(item.size, dtype=np.int64), user_features=np.zeros((n_users, 3), np.int32),
        user_raw_ids=np.arange(n_users, dtype=np.int64), item_raw_ids=np.arange(n_items, dtype=np.int64),
        item_titles=np.array(["x"] * n_items, dtype=object), item_years=np.full(n_items, 1999, np.int32),
        item_genres=np.zeros((n_items, 1), bool), genre_names=("Drama",),
    )  # fmt: skip
    return split_ratings(data, "temporal", 0.8)


def bench(split, capacity: int, samples: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Fill both buffers with the same ``2 * capacity`` transitions and time them.

    :param split: the split the training environments replay
    :param capacity: buffer capacity in transitions (each buffer)
    :param samples: sampled batches to time per buffer
    :return: per buffer class name: ``bytes_per_transition``, ``add_ms`` (per vector step),
        ``sample_ms`` (median per batch); and ``"identical"``: whether the checked batches matched
    """
    import torch as th
    from stable_baselines3.common.buffers import DictReplayBuffer

    from agents.make import make_train_vec_env
    from agents.replay import CompactDictReplayBuffer, replay_bytes_per_transition

    config = make_config("default")
    env = make_train_vec_env(config, split)
    env.seed(seed)
    n = env.num_envs
    buffers = [cls(capacity, env.observation_space, env.action_space, "cpu", n)
               for cls in (DictReplayBuffer, CompactDictReplayBuffer)]
    add_seconds = [0.0, 0.0]
    rng = np.random.default_rng(seed)
    obs = env.reset()
    steps = 2 * capacity // n
    for _ in range(steps):  # SB3's collection step (OffPolicyAlgorithm._store_transition)
        actions = rng.integers(0, env.action_space.n, n)
        new_obs, rewards, dones, infos = env.step(actions)
        next_obs = copy.deepcopy(new_obs)
        for i in np.flatnonzero(dones):
            for key in next_obs:
                next_obs[key][i] = infos[i]["terminal_observation"][key]
        for j, buffer in enumerate(buffers):
            t0 = time.perf_counter()
            buffer.add(obs, next_obs, actions, rewards, dones, infos)
            add_seconds[j] += time.perf_counter() - t0
        obs = new_obs
    env.close()
    identical = True
    for s in range(5):
        batches = []
        for buffer in buffers:
            np.random.seed(s)
            batches.append(buffer.sample(config.batch_size))
        a, b = batches
        identical &= all(th.equal(a.observations[k], b.observations[k]) and
                         th.equal(a.next_observations[k], b.next_observations[k]) for k in a.observations)
    out: dict[str, dict[str, float]] = {}
    for j, buffer in enumerate(buffers):
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            buffer.sample(config.batch_size)
            times.append(time.perf_counter() - t0)
        out[type(buffer).__name__] = {
            "bytes_per_transition": replay_bytes_per_transition(buffer),
            "add_ms": 1e3 * add_seconds[j] / steps,
            "sample_ms": 1e3 * float(np.median(times)),
        }
    out["identical"] = {"value": float(identical)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_replay", description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=int, default=8192, help="transitions each buffer holds (default 8192)")
    parser.add_argument("--samples", type=int, default=200, help="timed batches per buffer (default 200)")
    parser.add_argument("--catalogues", nargs="+", default=["ml-100k", str(ML32M_ITEMS)],
                        help="'ml-100k' (real data) and/or item counts of synthetic catalogues")
    args = parser.parse_args(argv)
    import torch as th

    th.set_num_threads(1)
    config = make_config("default")
    print(f"preset default: {config.n_envs} envs, max_steps {config.max_steps}, batch {config.batch_size}; each "
          f"buffer holds {args.capacity:,} transitions (the preset's: {config.buffer_size:,}), filled twice over")
    for name in args.catalogues:
        if name == "ml-100k":
            from agents.make import load_split

            split = load_split(make_config("default", dataset="ml-100k"))
        else:
            split = synthetic_split(n_users=1_000, n_items=int(name), per_user=160)
            name = "synthetic catalogue (160 random ratings per user)"
        result = bench(split, args.capacity, args.samples)
        print(f"\n{name}, {split.n_items:,} items ({(split.n_items + 7) // 8:,} bytes per packed set); "
              f"identical samples: {'yes' if result.pop('identical')['value'] else 'NO'}")
        for cls, r in result.items():
            print(f"  {cls:<24}{r['bytes_per_transition']:>9,.0f} bytes/transition; add {r['add_ms']:6.2f} ms per "
                  f"vector step, sample {r['sample_ms']:6.2f} ms per batch of {config.batch_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
