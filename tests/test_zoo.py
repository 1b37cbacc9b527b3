"""The RL Baselines3 Zoo path (:mod:`agents.zoo`): ``python -m rl_zoo3.train`` with the project's
config modules trains the LSRWRL network, and the zoo's ``-optimize`` keeps it.

The command-line runs are a few hundred environment steps on two environments (the
``--hyperparams`` overrides shrink the preset's 64 environments, buffer and batches): they
check that the pieces fit together, not what is learned.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rl_zoo3")

import optuna  # noqa: E402  (the zoo's own dependency)
from rl_zoo3.exp_manager import ExperimentManager  # noqa: E402
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER  # noqa: E402
from rl_zoo3.utils import ALGOS, get_class_by_name  # noqa: E402

from agents import zoo  # noqa: E402

_REPO = Path(__file__).resolve().parents[1]

#: Per algorithm: the zoo's --hyperparams overrides and -n budget of the tiny command-line run.
TINY = {
    "dqn": (["n_envs:2", "learning_starts:50", "buffer_size:1000", "batch_size:16"], 200),
    "ppo": (["n_envs:2", "n_steps:16", "batch_size:16", "n_epochs:1"], 64),
}
#: Entry keys the zoo consumes itself (not constructor arguments of the algorithm).
ZOO_KEYS = ("n_envs", "n_timesteps", "env_kwargs", "policy")


def _network(model):
    """The network that holds the features extractor: DQN's Q-network, QR-DQN's quantile
    network, the actor-critic policy."""
    for name in ("q_net", "quantile_net"):
        if hasattr(model, name):
            return getattr(model, name)
    return model.policy


def _features_extractor(model):
    return _network(model).features_extractor


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(TINY))
def test_zoo_train_command_trains_the_lsrwrl_network(algo: str, ml100k_dir: Path, tmp_path: Path) -> None:
    overrides, budget = TINY[algo]
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", "MovieLensRec-v0",
        "--gym-packages", "recsim_env", "--conf-file", f"agents.zoo_{algo}", "-n", str(budget), "--seed", "0",
        "-f", str(tmp_path), "--eval-freq", "-1", "--device", "cpu", "--num-threads", "1",
        "--hyperparams", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "MOVIELENS_DATA": str(ml100k_dir)}
    result = subprocess.run(command, cwd=_REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    zips = sorted(tmp_path.glob(f"{algo}/MovieLensRec-v0_*/MovieLensRec-v0.zip"))
    assert len(zips) == 1, sorted(str(p) for p in tmp_path.rglob("*"))
    model = ALGOS[algo].load(zips[0], device="cpu")
    assert type(model) is ALGOS[algo]  # the zoo builds SB3's own class, not LSRDQN / LSRPPO
    assert type(_features_extractor(model)).__name__ == "LongShortExtractor"
    assert type(model.policy).__name__ == ("ZooDuelingDQNPolicy" if algo == "dqn" else "ZooActorCriticPolicy")
    if algo == "dqn":
        assert type(model.q_net).__name__ == "DuelingQNetwork" and model.q_net.tied_item_embeddings
        assert model.q_net.mask_excluded
    else:
        assert model.policy.mask_excluded
    assert model.n_envs == 2
    config = (zips[0].parent / "MovieLensRec-v0" / "config.yml").read_text()
    assert "agents.zoo.Zoo" in config and "LongShortExtractor" in config and "reward_map" in config
    if algo == "dqn":
        assert type(model.replay_buffer).__name__ == "CompactDictReplayBuffer" and "CompactDictReplayBuffer" in config


@pytest.mark.parametrize("algo", zoo.ZOO_ALGOS)
def test_entries_hold_the_default_preset_in_the_zoo_s_terms(algo: str) -> None:
    from agents.config import make_config

    entry = importlib.import_module(f"agents.zoo_{algo}").hyperparams["MovieLensRec-v0"]
    config = make_config("default", algo=algo)
    assert entry["n_timesteps"] == config.total_timesteps == 600_000
    assert entry["n_envs"] == config.n_envs
    assert entry["learning_rate"] == f"lin_{config.learning_rate!r}"  # the preset's linear decay to 0
    assert entry["gamma"] == config.gamma
    assert entry["env_kwargs"] == {"reward_map": {1: 0.2, 2: 0.4, 3: 0.6, 4: 0.8, 5: 1.0}}
    kwargs = entry["policy_kwargs"]
    assert kwargs["features_extractor_class"].__name__ == "LongShortExtractor"
    assert kwargs["features_extractor_kwargs"]["embed_dim"] == config.embed_dim
    # Every other key is a constructor argument of the zoo's (SB3's) class, and the policy a
    # dotted name the zoo can import (it tests `"." in policy`).
    accepted = set(inspect.signature(ALGOS[algo].__init__).parameters)
    assert set(entry) - set(ZOO_KEYS) <= accepted
    assert isinstance(entry["policy"], str) and get_class_by_name(entry["policy"])
    assert not set(entry) & set(zoo.LSR_ONLY_ARGUMENTS)
    if algo in ("dqn", "qrdqn"):  # the preset's replay buffer reaches SB3's own class too
        assert entry["replay_buffer_class"].__name__ == "CompactDictReplayBuffer"


@pytest.mark.parametrize("algo", ["dqn", "ppo", "a2c", "qrdqn"])
def test_optimize_keeps_the_extractor(algo: str, ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The zoo's samplers replace policy_kwargs with {"net_arch": ...}; the policy classes'
    defaults keep the LSRWRL extractor (what ExperimentManager.objective builds)."""
    from stable_baselines3.common.env_util import make_vec_env

    import recsim_env  # noqa: F401  (registers the id)

    monkeypatch.setenv("MOVIELENS_DATA", str(ml100k_dir))
    kwargs = {k: v for k, v in zoo.zoo_hyperparams(algo).items() if k not in ZOO_KEYS}
    kwargs = ExperimentManager._preprocess_schedules(kwargs)  # the entry's "lin_" learning rate
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sampled = HYPERPARAMS_SAMPLER[algo](trial, 0, 2, {"using_her_replay_buffer": False, "her_kwargs": {}})
    assert set(sampled["policy_kwargs"]) <= {"net_arch", "activation_fn", "n_quantiles"}
    kwargs.update(sampled)
    if "buffer_size" in kwargs:
        kwargs["buffer_size"] = 1000
    env = make_vec_env("MovieLensRec-v0", n_envs=2, seed=0)
    model = ALGOS[algo](get_class_by_name(zoo.zoo_hyperparams(algo)["policy"]), env, device="cpu", **kwargs)
    assert type(_features_extractor(model)).__name__ == "LongShortExtractor"
    assert _network(model).mask_excluded
    if algo == "dqn":
        assert type(model.q_net).__name__ == "DuelingQNetwork"


def test_zoo_module_itself_points_to_the_per_algo_modules() -> None:
    module = importlib.import_module("agents.zoo")  # what `--conf-file agents.zoo` reads
    with pytest.raises(AttributeError, match="agents.zoo_<algo>"):
        module.hyperparams  # noqa: B018


def test_what_the_zoo_cannot_express_is_refused_or_listed() -> None:
    with pytest.raises(ValueError, match="no zoo entry"):
        zoo.zoo_hyperparams("maskable_ppo")
    with pytest.raises(ValueError, match="episode='pass'"):
        zoo.zoo_hyperparams("dqn", preset="paper")
    with pytest.raises(ValueError, match="final_learning_rate"):
        zoo.zoo_hyperparams("ppo", final_learning_rate=1e-4)
    assert zoo.zoo_omissions("dqn") == {
        "mask_actions": True, "double_q": True, "td_weight": 1.0, "next_item_weight": 0.1,
        "next_item_positions": "all", "pretrain_steps": 1500, "loss": "huber", "next_item_batch": 32,
        "pretrain_batch": None, "next_item_loss": "auto", "next_item_negatives": None, "item_compute": "auto",
    }  # fmt: skip
    assert set(zoo.zoo_omissions("ppo")) == {"next_item_weight", "next_item_positions", "pretrain_steps",
                                            "next_item_batch", "pretrain_batch", "next_item_loss",
                                            "next_item_negatives"}
    # Another dataset's preset values reach the environments and the extractor.
    entry = zoo.zoo_hyperparams("ppo", dataset="ml-1m")
    assert entry["env_kwargs"]["dataset"] == "ml-1m" and entry["env_kwargs"]["history_len"] == 50
    assert entry["policy_kwargs"]["features_extractor_kwargs"]["embed_dim"] == 64
