"""Item scores from trained models, the ranking score function and the greedy simulation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents.factory import build_model
from agents.scoring import greedy_return, make_score_fn, score_observations
from recsim_env import evaluate_ranking, load_movielens, split_ratings

th.set_num_threads(1)
TINY = dict(embed_dim=8, dnn_hidden=(8,))


@pytest.fixture(scope="module")
def split():
    return split_ratings(load_movielens("ml-100k"))


def _env(split, mode="test", max_steps=5):
    return gym.make("MovieLensRec-v0", mode=mode, split_data=split, max_steps=max_steps)


def _model(algo, split, **kwargs):
    env = _env(split, mode="train")
    extra = {"ppo": dict(n_steps=16, batch_size=16), "maskable_ppo": dict(n_steps=16, batch_size=16),
             "a2c": dict(n_steps=16)}.get(algo, {})
    return build_model(algo, env, extractor_kwargs=TINY, net_arch=(16,), seed=0, **extra, **kwargs,
                       **({"n_quantiles": 5} if algo == "qrdqn" else {}))


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ppo", "a2c", "maskable_ppo"])
def test_scores_match_the_models_own_greedy_action(algo, split):
    model = _model(algo, split)
    env = _env(split)
    users = env.unwrapped.users[:7]
    obs = env.unwrapped.start_observations(users)
    scores = score_observations(model, obs)
    assert scores.shape == (7, split.n_items) and scores.dtype == np.float32
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(scores.argmax(axis=1), actions)


def test_dqn_scores_are_q_values_and_qrdqn_scores_mean_quantiles(split):
    dqn, qr = _model("dqn", split), _model("qrdqn", split)
    obs = _env(split).unwrapped.start_observations(np.arange(4))
    with th.no_grad():
        q = dqn.q_net(dqn.policy.obs_to_tensor(obs)[0]).numpy()
        quantiles = qr.quantile_net(qr.policy.obs_to_tensor(obs)[0]).numpy()  # (B, n_quantiles, n_items)
    np.testing.assert_allclose(score_observations(dqn, obs), q, rtol=1e-6)
    np.testing.assert_allclose(score_observations(qr, obs), quantiles.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_dueling_dqn_is_value_plus_centred_advantage(split):
    model = _model("dqn", split, dueling=True)
    obs = _env(split).unwrapped.start_observations(np.arange(3))
    net = model.q_net
    with th.no_grad():
        f = net.extract_features(net.obs_to_tensor(obs)[0], net.features_extractor)
        adv, value = net.q_net(f), net.value_net(f)
    q = score_observations(model, obs)
    np.testing.assert_allclose(q, (value + adv - adv.mean(1, keepdim=True)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.mean(axis=1), value[:, 0].numpy(), rtol=1e-5, atol=1e-5)


def test_make_score_fn_scores_the_test_start_state_in_batches(split):
    model = _model("dqn", split)
    env = _env(split)
    users = np.array([5, 0, 942, 17, 3])
    full = make_score_fn(model, env)(users)
    chunked = make_score_fn(model, env, batch_size=2)(users)
    np.testing.assert_allclose(full, chunked, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full, score_observations(model, env.unwrapped.start_observations(users)), rtol=1e-6)
    metrics = evaluate_ranking(make_score_fn(model, env), split)
    assert metrics["n_users"] == 943 and 0.0 <= metrics["precision@10"] <= 1.0
    with pytest.raises(TypeError, match="start_observations"):
        make_score_fn(model, gym.make("CartPole-v1"))


def test_greedy_return_equals_a_single_env_rollout(split):
    """The batched simulation matches stepping each user alone with the masked argmax."""
    model = _model("dqn", split)
    vec = gym.make_vec("MovieLensRec-v0", num_envs=4, vectorization_mode="vector_entry_point",
                       mode="test", split_data=split, max_steps=5)
    users = vec.unwrapped.users[:6]  # 6 users on 4 envs: a padded second batch
    got = greedy_return(model, vec, users=users)
    env = _env(split)
    returns, lengths = [], []
    for u in users:
        obs, _ = env.reset(options={"user": int(u)})
        total, steps, done, seen = 0.0, 0, False, set()
        while not done:
            scores = score_observations(model, {k: v[None] for k, v in obs.items()})[0]
            action = int(np.where(env.unwrapped.action_masks(), scores, -np.inf).argmax())
            assert action not in seen  # the mask forbids repeats
            seen.add(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total), lengths.append(steps)
    assert got["n_episodes"] == 6
    assert got["mean_return"] == pytest.approx(np.mean(returns))
    assert got["mean_length"] == pytest.approx(np.mean(lengths))
