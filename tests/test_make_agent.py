"""``agents.make_agent``: the recommended agent in one call, the next-item loss and pre-training
for every algorithm, and settings an algorithm does not take refused everywhere."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents import make_agent
from agents.config import ALGO_FIELDS, ALGOS, TrainConfig, make_config
from agents.factory import ALGO_HYPERPARAMETERS, build_model
from agents.make import LOOP_FIELDS
from agents.training import TrainingInterrupted, train
from experiments.train import main

th.set_num_threads(1)

#: Tiny sizes for every algorithm (each takes the ones ALGO_FIELDS gives it).
TINY = dict(n_envs=2, max_steps=5, embed_dim=8, dnn_hidden=(8,), net_arch=(16,), learning_starts=20,
            batch_size=8, buffer_size=500, target_update_interval=40, n_steps=8, n_epochs=1, n_quantiles=4,
            next_item_batch=4, pretrain_steps=6)


def tiny(algo: str, **overrides) -> dict:
    values = {k: v for k, v in TINY.items() if algo in ALGO_FIELDS.get(k, (algo,))}
    return {**values, **overrides}


@pytest.fixture(scope="module")
def split():
    from recsim_env import load_movielens, split_ratings

    return split_ratings(load_movielens("ml-100k"))


def test_make_agent_builds_and_trains_the_same_model_as_make_train(tmp_path, split):
    """make_agent + learn and the training loop (what make train runs) end with identical weights."""
    settings = tiny("dqn", seed=3)
    config = make_config("default", **settings, algo="dqn", total_timesteps=64, eval_freq=32,
                         checkpoint_freq=0, torch_threads=1, runs_dir=str(tmp_path))
    result = train(config, progress=False)
    # the run's per-user ranking metrics come back with it (not in metrics.json)
    assert result.per_user["ndcg@10"].mean() == result.metrics["ndcg@10"]
    assert result.per_user["user"].size == result.metrics["n_users"] and "per_user" not in result.metrics
    assert "per_user" not in (result.run_dir / "metrics.json").read_text(encoding="utf-8")
    model = make_agent(split, algo="dqn", **settings)
    model_fields = lambda c: {k: v for k, v in c.to_dict().items() if k not in LOOP_FIELDS}  # noqa: E731
    # Both decide the "auto" catalogue settings alike, and the run records what it decided.
    recorded = TrainConfig.load(str(result.run_dir / "config.json"))
    assert (recorded.next_item_loss, recorded.item_compute) == ("full", "dense")
    assert model_fields(model.agent_config) == model_fields(recorded) == model_fields(config.for_catalogue(split.n_items))
    model.learn(64)
    assert model.pretrained_steps == result.model.pretrained_steps == 6
    ours, theirs = model.policy.state_dict(), result.model.policy.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert th.equal(ours[key], theirs[key]), key


def test_the_default_agent_has_the_presets_settings_and_logged_data(split):
    model = make_agent(split, **tiny("dqn", pretrain_steps=0))
    config = make_config("default")
    assert (model.double_q, model.mask_actions, model.mask_excluded) == (True, True, True)
    assert model.q_net.tied_item_embeddings and model.gamma == config.gamma
    assert model.next_item_weight == config.next_item_weight and model.next_item_source is not None
    extractor = model.q_net.features_extractor
    assert extractor.short_term.causal and model.policy.optimizer.param_groups[0]["lr"] == config.learning_rate
    # Training rewards: the preset's (0.2 per star), not the environment's default.
    env = model.get_env().envs[0].unwrapped
    assert env.reward_map == {r: v for r, v in zip(range(1, 6), config.train_rewards)}


def test_evaluate_model_gives_per_user_metrics_of_the_users_with_test_items(split):
    from agents.evaluate import METRIC_KEYS, evaluate_model

    model = make_agent(split, **tiny("dqn", pretrain_steps=0))
    metrics = evaluate_model(model, model.agent_config, split, greedy=False, return_per_user=True)
    per_user = metrics["per_user"]
    np.testing.assert_array_equal(per_user["user"], np.flatnonzero(np.diff(split.test_indptr) > 0))
    for key in METRIC_KEYS:
        assert per_user[key].shape == (metrics["n_users"],)
        assert per_user[key].mean() == metrics[key]  # exactly: the metric is their mean
    assert "per_user" not in evaluate_model(model, model.agent_config, split, greedy=False)


def test_an_untrained_recommended_dqn_never_repeats_an_item(split):
    model = make_agent(split, **tiny("dqn", pretrain_steps=0))
    env = gym.make("MovieLensRec-v0", split_data=split, mode="test", max_steps=40)
    obs, _ = env.reset(seed=0)
    chosen = []
    for _ in range(40):
        action, _ = model.predict(obs, deterministic=True)
        assert env.unwrapped.action_masks()[int(action)], "an excluded item was recommended"
        chosen.append(int(action))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert len(chosen) == len(set(chosen)) > 1


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_learns_the_next_item_from_pretraining(algo, split):
    model = make_agent(split, algo=algo, **tiny(algo, pretrain_steps=0, learning_rate=1e-2, final_learning_rate=None))
    losses = model.pretrain(40, batch_size=8)
    assert len(losses) == 40 and model.pretrained_steps == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.3, losses


@pytest.mark.parametrize("algo", ["ppo", "a2c", "maskable_ppo", "qrdqn"])
def test_the_next_item_loss_joins_every_update(algo, split):
    """Same seed, the next-item weight on and off: the updates differ, the loss is logged, and
    the actor-critic optimizer gets its own zero_grad back."""
    states = {}
    for weight in (0.0, 0.5):
        model = make_agent(split, algo=algo, seed=1, **tiny(algo, pretrain_steps=0, next_item_weight=weight))
        model.learn(48)
        states[weight] = model.policy.state_dict()
        assert "zero_grad" not in vars(model.policy.optimizer)
        logged = model.logger.name_to_value
        if weight:
            assert "train/next_item_loss" in logged or model._n_updates > 0
    differs = [k for k in states[0.0] if not th.equal(states[0.0][k], states[0.5][k])]
    assert differs, "the next-item loss changed nothing"


def test_pretraining_runs_once_and_is_saved_with_the_model(tmp_path, split):
    model = make_agent(split, algo="ppo", **tiny("ppo"))
    model.learn(16)
    assert model.pretrained_steps == 6
    model.save(tmp_path / "m.zip")
    from agents import LSRPPO

    loaded = LSRPPO.load(tmp_path / "m.zip", env=model.get_env())
    assert loaded.pretrained_steps == 6 and loaded.next_item_source is None
    loaded.set_next_item_source(model.next_item_source)
    before = {k: v.clone() for k, v in loaded.policy.state_dict().items()}
    assert loaded.pretrain(0) == [] and all(th.equal(before[k], v) for k, v in loaded.policy.state_dict().items())


def test_settings_an_algorithm_does_not_take_are_errors(split, capsys):
    with pytest.raises(ValueError, match=r"dueling \(taken by dqn\)"):
        make_agent(split, algo="ppo", dueling=True)
    with pytest.raises(ValueError, match=r"learning_start \(did you mean learning_starts"):
        make_agent(split, learning_start=1000)
    with pytest.raises(ValueError, match="training loop"):
        make_agent(split, total_timesteps=10)
    env = gym.make("MovieLensRec-v0", split_data=split)
    with pytest.raises(ValueError, match="history_len configure the environments"):
        make_agent(env, history_len=10)
    with pytest.raises(ValueError, match=r"'buffer_size' \(taken by dqn, qrdqn\)"):
        build_model("ppo", env, buffer_size=1000)
    # The command line refuses them before loading anything, with the same names.
    assert main(["--algo", "a2c", "--n-epochs", "3"]) == 2
    assert "n_epochs (taken by ppo, maskable_ppo)" in capsys.readouterr().err


def test_the_algorithm_tables_agree():
    """ALGO_FIELDS (config fields) and ALGO_HYPERPARAMETERS (constructor arguments) say the same."""
    from agents.make import CONFIG_FIELD_OF

    renamed = {field: name for name, field in CONFIG_FIELD_OF.items()}
    for field, algos in ALGO_FIELDS.items():
        name = renamed.get(field, field)
        takers = [a for a, names in ALGO_HYPERPARAMETERS.items() if name in names]
        if takers:  # policy options (dueling, mask_excluded, n_quantiles) are build_model arguments
            assert sorted(takers) == sorted(algos), field


def test_a_run_stopped_while_pretraining_resumes(tmp_path, monkeypatch):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    from agents.dqn import LSRDQN

    original = LSRDQN.pretrain
    calls = []

    def pretrain_then_sigterm(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a kill while pre-training
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LSRDQN, "pretrain", pretrain_then_sigterm)
    config = make_config("default", **tiny("dqn"), total_timesteps=32, eval_freq=0, checkpoint_freq=0,
                         torch_threads=1, runs_dir=str(tmp_path))
    run_dir = Path(tmp_path) / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train(config, run_dir, progress=False)
    assert info.value.checkpoint is not None and info.value.step == 0
    result = train(config, run_dir, progress=False, resume=True)
    assert result.training["complete"] and result.training["pretrain_steps"] == 6 and len(calls) == 2


def test_make_agent_takes_your_own_environment_as_it_is(split):
    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)  # the environment's own rewards
    settings = {k: v for k, v in tiny("ppo").items() if k not in ("n_envs", "max_steps")}
    model = make_agent(env, algo="ppo", **settings)
    assert model.next_item_source is not None and model.n_envs == 1
    model.learn(16)
    assert model.pretrained_steps == 6 and model.num_timesteps == 16
    with pytest.raises(ValueError, match="train"):
        make_agent(gym.make("MovieLensRec-v0", split_data=split, mode="test"), algo="ppo", **settings)


def test_qrdqn_next_item_logits_are_the_scaled_mean_quantiles(split):
    model = make_agent(split, algo="qrdqn", **tiny("qrdqn", pretrain_steps=0))
    net = model.quantile_net
    features = th.randn(5, net.features_dim)
    quantiles = net.quantile_net(features).view(5, net.n_quantiles, -1)
    expected = quantiles.mean(dim=1) * net.log_logit_scale.exp()
    assert th.allclose(net.next_item_logits(features), expected, atol=1e-5)


@pytest.mark.parametrize("algo", ["dqn", "maskable_ppo"])
def test_the_generic_policy_trains_on_multi_hot_observations(algo, tmp_path):
    """policy=multi_hot: SB3's default MultiInputPolicy on wrapped envs, scored the same way."""
    from recsim_env.wrappers import multi_hot_encoder

    config = make_config("default", algo=algo, policy="multi_hot", **tiny(algo, pretrain_steps=0), total_timesteps=48,
                         eval_freq=24, checkpoint_freq=0, torch_threads=1, runs_dir=str(tmp_path))
    assert config.next_item_weight == 0 and not config.mask_excluded and "embed_dim" in config.unused_fields()
    result = train(config, progress=False)
    model = result.model
    modules = {type(m).__name__ for m in model.policy.modules()}
    assert "CombinedExtractor" in modules and "LongShortExtractor" not in modules  # SB3's own extractor
    raw = gym.make("MovieLensRec-v0").observation_space
    assert model.observation_space == multi_hot_encoder(raw).space
    assert 0.0 <= result.metrics["precision@10"] <= 1.0 and np.isfinite(result.metrics["greedy_mean_return"])
    assert result.training["unused_settings"] == config.unused_fields()
    with pytest.raises(ValueError, match="policy='multi_hot'.*cannot take next_item_weight"):
        make_config("default", algo=algo, policy="multi_hot", next_item_weight=0.5)


def test_maskable_ppo_with_the_extractor_is_ppo_with_its_in_network_mask(split):
    """The excluded items are the env's action masks, so MaskablePPO's masked distribution is
    PPO's with ``mask_excluded``: same seed, same updates, bit for bit (the algorithm table's
    MaskablePPO rows repeat PPO's; a change to either masking path breaks this)."""
    states = {}
    for algo in ("ppo", "maskable_ppo"):
        model = make_agent(split, algo=algo, seed=3, **tiny(algo, pretrain_steps=4))
        model.learn(48)
        states[algo] = model.policy.state_dict()
    assert states["ppo"].keys() == states["maskable_ppo"].keys()
    assert all(th.equal(states["ppo"][k], states["maskable_ppo"][k]) for k in states["ppo"])
    # Not a tautology: a different seed gives other weights.
    other = make_agent(split, algo="ppo", seed=4, **tiny("ppo", pretrain_steps=4))
    other.learn(48)
    assert not all(th.equal(states["ppo"][k], other.policy.state_dict()[k]) for k in states["ppo"])
