"""Masked DQN from Tianshou 2.x on ``MovieLensRec-v0``.

Run (from the repository root, with the optional ``tianshou`` package installed)::

    MOVIELENS_DATA=../shared/data .venv/bin/python examples/tianshou_dqn.py --steps 20000
    .venv/bin/python examples/tianshou_dqn.py --tiny          # a few hundred steps, seconds
    TIANSHOU_EXAMPLE_TINY=1 .venv/bin/python examples/tianshou_dqn.py   # the same

``$MOVIELENS_DATA`` defaults to ``../shared/data`` beside the repository when that folder exists.

What it shows, top to bottom:

1. **env**: ``MovieLensRec-v0`` (train mode) behind a small wrapper that puts the action mask
   into the observation, ``{"obs": {"history", "liked"}, "mask": bool (n_items,)}``. That is
   Tianshou's own masking convention: ``DiscreteQLearningPolicy.forward`` reads ``obs.mask``,
   gives masked items a Q-value below every allowed one before the argmax
   (``compute_q_value``), and its epsilon-greedy exploration draws only allowed items too.
   The mask is ``~unpack_bits(obs["excluded"])`` (= ``env.action_masks()``): the episode's
   history and everything already recommended.
2. **network**: an MLP over a multi-hot encoding of the recent history and the liked set,
   one Q-value per item.
3. **policy / algorithm**: ``DiscreteQLearningPolicy`` + ``DQN`` (double DQN, target network).
4. **collector**: ``Collector`` with a ``VectorReplayBuffer`` and epsilon-greedy exploration.
5. **trainer**: ``OffPolicyTrainerParams`` -> ``algorithm.run_training``, epsilon decayed
   linearly from 1 to 0.05 over the first half of the ``--steps`` budget.
6. **evaluation**: greedy (epsilon 0) episodes in ``gym.make("MovieLensRec-v0", mode="test")``
   (whole train history -> held-out test items), one per user for the first ``--eval-users``
   test users, beside a uniformly random *allowed* item (the same policy with epsilon 1) on the
   same users. Every chosen item is checked against the environment's ``action_masks()``: a
   repeated or excluded recommendation is counted (and must be 0).

The printed numbers are what this run measured; nothing is tuned or hard-coded. At a tiny
budget the greedy return is mostly that of an untrained network (still a valid, repeat-free
ranking); the comparison with the random allowed item shows whether training helped.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

import recsim_env
from recsim_env import unpack_bits

from tianshou.algorithm import DQN
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OffPolicyTrainerParams

TINY_ENV_VAR = "TIANSHOU_EXAMPLE_TINY"
TINY_STEPS = 300
_REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------- env
class MaskInObservation(gym.ObservationWrapper):
    """``{"obs": {"history", "liked"}, "mask": bool (n_items,)}``: Tianshou's masked layout.

    ``"mask"`` is True for the items that may be recommended now, ``~unpack_bits(excluded)``,
    which equals ``env.action_masks()``. The packed ``"liked"`` field is kept packed (211 bytes
    for ML-100K), so a replay buffer of 20,000 transitions stays under 100 MB.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.n_items = int(env.unwrapped.n_items)
        inner = env.observation_space
        self.observation_space = spaces.Dict(
            {
                "obs": spaces.Dict({"history": inner["history"], "liked": inner["liked"]}),
                "mask": spaces.MultiBinary(self.n_items),
            }
        )

    def observation(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        mask = ~unpack_bits(obs["excluded"], self.n_items, "excluded")
        return {"obs": {"history": obs["history"], "liked": obs["liked"]}, "mask": mask}


def make_env(mode: str = "train") -> MaskInObservation:
    return MaskInObservation(gym.make("MovieLensRec-v0", mode=mode))


# ----------------------------------------------------------------------------------- network
class ItemQNet(nn.Module):
    """Q(s, .) for every item: an MLP over multi-hot(history) ++ multi-hot(liked set).

    Tianshou's DQN policy calls ``model(obs.obs, state=..., info=...)`` and expects
    ``(q_values (B, n_items), state)``; the mask never reaches the network.
    """

    def __init__(self, n_items: int, hidden: int = 128) -> None:
        super().__init__()
        self.n_items = n_items
        self.mlp = nn.Sequential(
            nn.Linear(2 * n_items, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_items),
        )  # fmt: skip
        self.register_buffer("bit", torch.arange(8, dtype=torch.uint8), persistent=False)

    def features(self, obs: Batch) -> torch.Tensor:
        history = torch.as_tensor(obs.history, dtype=torch.long, device=self.bit.device)
        liked = torch.as_tensor(obs.liked, dtype=torch.uint8, device=self.bit.device)
        # history tokens are item + 1 (0 = padding): scatter into n_items + 1 slots, drop slot 0
        hist = torch.zeros(history.shape[0], self.n_items + 1, device=history.device)
        hist.scatter_(1, history, 1.0)
        # packed bits, little-endian: item i is bit i % 8 of byte i // 8
        bits = (liked.unsqueeze(-1) >> self.bit) & 1
        liked_hot = bits.flatten(1)[:, : self.n_items].float()
        return torch.cat([hist[:, 1:], liked_hot], dim=1)

    def forward(self, obs: Batch, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        return self.mlp(self.features(obs)), state


# -------------------------------------------------------------------------------- evaluation
def as_batch(obs: dict[str, Any]) -> Batch:
    """One wrapped observation as a Tianshou batch of size 1 (what a collector would pass)."""
    one = {
        "obs": {key: value[None] for key, value in obs["obs"].items()},
        "mask": obs["mask"][None],
    }
    return Batch(obs=one, info=Batch())


@torch.no_grad()
def evaluate(
    policy: DiscreteQLearningPolicy, n_users: int, eps: float = 0.0, seed: int = 0
) -> dict[str, Any]:
    """One test-mode episode for each of the first ``n_users`` test users.

    Acts exactly as a collector would (``policy(batch).act`` then
    ``policy.add_exploration_noise``, with ``eps_inference = eps``: 0 is greedy), and checks
    every chosen item against the unwrapped environment's ``action_masks()``.
    """
    env = make_env("test")
    base = env.unwrapped
    n_users = min(n_users, len(base.users))
    policy.eval()
    policy.set_eps_inference(eps)
    np.random.seed(seed)  # Tianshou's epsilon-greedy draws from numpy's global generator
    returns, likes, lengths = [], [], []
    n_invalid = n_repeats = 0
    q_shape: tuple[int, ...] = ()
    for _ in range(n_users):
        obs, _ = env.reset(options={"user": "next"})
        done, ret, n_likes, steps, seen = False, 0.0, 0, 0, set()
        while not done:
            batch = as_batch(obs)
            out = policy(batch)
            q_shape = tuple(out.logits.shape)
            act = int(policy.add_exploration_noise(out.act, batch)[0])
            n_invalid += not bool(base.action_masks()[act])  # excluded: history or recommended
            n_repeats += act in seen
            seen.add(act)
            obs, reward, terminated, truncated, _ = env.step(act)
            ret, n_likes, steps = ret + float(reward), n_likes + (reward > 0), steps + 1
            done = terminated or truncated
        returns.append(ret)
        likes.append(n_likes)
        lengths.append(steps)
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "returns": returns,
        "mean_likes": float(np.mean(likes)),
        "mean_length": float(np.mean(lengths)),
        "n_users": n_users,
        "n_invalid": n_invalid,
        "n_repeats": n_repeats,
        "q_shape": q_shape,
    }


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true",
                        help=f"{TINY_STEPS} steps, 5 evaluation users (or ${TINY_ENV_VAR}=1)")
    parser.add_argument("--eval-users", type=int, default=50, help="test users to evaluate on")
    parser.add_argument("--n-envs", type=int, default=4, help="parallel (dummy) train envs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: the small network gains nothing from more)")
    parser.add_argument("--quiet", action="store_true", help="no Tianshou progress output")
    args = parser.parse_args(argv)  # fmt: skip
    if args.tiny or os.environ.get(TINY_ENV_VAR, "") not in ("", "0"):
        args.steps, args.eval_users, args.quiet = TINY_STEPS, min(args.eval_users, 5), True
    if not os.environ.get("MOVIELENS_DATA") and (_REPO.parent / "shared" / "data").is_dir():
        os.environ["MOVIELENS_DATA"] = str(_REPO.parent / "shared" / "data")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    start = time.perf_counter()

    # env: n_envs copies of the train-mode environment, each seeded
    train_envs = DummyVectorEnv([make_env for _ in range(args.n_envs)])
    train_envs.seed(args.seed)
    n_items = int(train_envs.get_env_attr("n_items", 0)[0])

    # network, policy, algorithm
    net = ItemQNet(n_items)
    policy = DiscreteQLearningPolicy(
        model=net,
        action_space=spaces.Discrete(n_items),
        eps_training=1.0,
        eps_inference=0.0,
    )
    algorithm = DQN(
        policy=policy,
        optim=AdamOptimizerFactory(lr=1e-3),
        gamma=0.9,
        n_step_return_horizon=1,
        target_update_freq=200,  # gradient steps between target-network copies
        is_double=True,  # the target's argmax goes through the policy, so it is masked too
    )

    # collector: epsilon-greedy over the allowed items into a replay buffer
    buffer = VectorReplayBuffer(min(args.steps, 50_000), buffer_num=args.n_envs)
    collector = Collector(algorithm, train_envs, buffer, exploration_noise=True)

    # trainer: the budget split into at most 10 epochs; epsilon 1 -> 0.05 over half of it
    n_epochs = max(1, min(10, args.steps // 2_000))
    per_step = 2 * args.n_envs  # env steps per collection step (then gradient steps / 4)
    decay = max(1, args.steps // 2)

    def set_epsilon(epoch: int, env_step: int) -> None:
        policy.set_eps_training(max(0.05, 1.0 - 0.95 * env_step / decay))

    params = OffPolicyTrainerParams(
        training_collector=collector,
        max_epochs=n_epochs,
        epoch_num_steps=math.ceil(args.steps / n_epochs),
        collection_step_num_env_steps=per_step,
        update_step_num_gradient_steps_per_sample=0.25,
        batch_size=64,
        training_fn=set_epsilon,
        test_collector=None,  # evaluation below, on the held-out test items
        verbose=not args.quiet,
        show_progress=not args.quiet,
    )
    info = algorithm.run_training(params)
    train_envs.close()
    print(
        f"trained {info.train_step} env steps ({info.train_episode} episodes), "
        f"{info.update_step} gradient steps, {info.timing.total_time:.1f}s"
    )

    # evaluation: greedy masked DQN vs a random allowed item, same test users
    greedy = evaluate(policy, args.eval_users, eps=0.0, seed=args.seed)
    random_allowed = evaluate(policy, args.eval_users, eps=1.0, seed=args.seed)
    print(
        f"test mode, {greedy['n_users']} users: greedy DQN return {greedy['mean_return']:.3f} "
        f"(likes {greedy['mean_likes']:.2f}, length {greedy['mean_length']:.1f}); "
        f"random allowed item {random_allowed['mean_return']:.3f}"
    )
    print(
        f"greedy excluded/repeated recommendations: {greedy['n_invalid']}/{greedy['n_repeats']}"
    )
    if greedy["n_invalid"] or greedy["n_repeats"]:
        raise AssertionError("masked DQN recommended an excluded or repeated item")
    return {
        "greedy": greedy,
        "random": random_allowed,
        "train_steps": info.train_step,
        "update_steps": info.update_step,
        "n_items": n_items,
        "seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
