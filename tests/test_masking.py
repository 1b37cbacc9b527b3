"""In-network masking (mask_excluded): greedy actions, TD targets, scores and policies skip excluded items."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents.factory import build_model
from agents.masking import MASKED_VALUE, excluded_items, mask_excluded
from agents.scoring import score_observations
from recsim_env import load_movielens, split_ratings, unpack_bits

th.set_num_threads(1)
TINY = dict(embed_dim=8, dnn_hidden=(8,))


@pytest.fixture(scope="module")
def split():
    return split_ratings(load_movielens("ml-100k"))


def _model(algo, split, mode="train", **kwargs):
    env = gym.make("MovieLensRec-v0", mode=mode, split_data=split, max_steps=50)
    extra = {"ppo": dict(n_steps=16, batch_size=16), "a2c": dict(n_steps=16)}.get(algo, {})
    return build_model(algo, env, extractor_kwargs=TINY, net_arch=(16,), seed=0, **extra, **kwargs,
                       **({"n_quantiles": 5} if algo == "qrdqn" else {}))


def _tensor(model, obs):
    return model.policy.obs_to_tensor(obs)[0]


def _next_states(split, n=16):
    """Mid-episode test-mode observations: each user's start plus a few recommended items."""
    env = gym.make("MovieLensRec-v0", mode="test", split_data=split, max_steps=50)
    rng = np.random.default_rng(0)
    rows = []
    for u in env.unwrapped.users[:n]:
        obs, _ = env.reset(options={"user": int(u)})
        for a in rng.choice(np.flatnonzero(env.unwrapped.action_masks()), size=5, replace=False):
            obs, *_ = env.step(int(a))
        rows.append(obs)
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_mask_helpers_use_the_packed_field():
    packed = np.packbits(np.array([[1, 0, 1, 0, 0, 0, 0, 0, 0, 1], [1] * 10], bool), axis=1, bitorder="little")
    obs = {"excluded": th.as_tensor(packed, dtype=th.float32)}  # as SB3 preprocesses it
    excluded = excluded_items(obs, 10)
    assert excluded[0].nonzero().flatten().tolist() == [0, 2, 9]
    assert not excluded[1].any()  # nothing allowed at all: nothing masked, the row is left as is
    masked = mask_excluded(th.zeros(2, 10), obs)
    assert masked[0].tolist() == [MASKED_VALUE if i in (0, 2, 9) else 0.0 for i in range(10)]
    quantiles = mask_excluded(th.zeros(2, 3, 10), obs)  # items on the last axis
    assert (quantiles[0, :, 2] == MASKED_VALUE).all() and (quantiles[0, :, 1] == 0).all()
    with pytest.raises(KeyError, match="'excluded' observation field"):
        excluded_items({"liked": obs["excluded"]}, 10)


@pytest.mark.parametrize("dueling", [False, True])
def test_deterministic_dqn_predict_never_repeats_within_an_episode(dueling, split):
    """Through the observation alone: the masked net avoids repeats, SB3's plain one does not."""

    def repeats(model) -> int:
        env = gym.make("MovieLensRec-v0", mode="test", split_data=split, max_steps=20)
        count = 0
        for u in env.unwrapped.users[:5]:
            obs, _ = env.reset(options={"user": int(u)})
            done = False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                count += not env.unwrapped.action_masks()[int(action)]  # a repeat or a history item
                obs, _, terminated, truncated, _ = env.step(int(action))
                done = terminated or truncated
        return count

    tied = dict(tied_item_embeddings=True) if dueling else {}
    assert repeats(_model("dqn", split, dueling=dueling, mask_excluded=True, **tied)) == 0
    assert repeats(_model("dqn", split, dueling=dueling, **tied)) > 0


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_scores_of_a_masked_model_are_its_greedy_action(algo, split):
    model = _model(algo, split, mask_excluded=True)
    obs = _next_states(split, n=6)
    excluded = unpack_bits(obs["excluded"], split.n_items)
    scores = score_observations(model, obs)
    assert (scores[excluded] < MASKED_VALUE / 2).all() and (scores[~excluded] > MASKED_VALUE / 2).all()
    np.testing.assert_array_equal(scores.argmax(axis=1), model.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("double_q", [False, True])
def test_td_target_max_runs_over_allowed_items_only(double_q, split):
    model = _model("dqn", split, dueling=True, tied_item_embeddings=True, mask_excluded=True, double_q=double_q)
    with th.no_grad():  # random advantages, so the unmasked argmax is a real competitor
        model.q_net.item_bias.normal_(0, 1)
        model.q_net_target.item_bias.copy_(model.q_net.item_bias)
        model.q_net_target.item_bias[:50] += 5.0  # target net only: double Q must not follow it
    obs = _next_states(split)
    # Put the online net's best items into "excluded": the target must ignore them.
    tensor = _tensor(model, obs)
    with th.no_grad():
        raw_online = model.q_net(tensor).numpy()
        raw_target = model.q_net_target(tensor).numpy()
    excluded = unpack_bits(obs["excluded"], split.n_items)
    for row, best in enumerate(raw_online.argmax(axis=1)):
        excluded[row, best] = True
        excluded[row, :50] = True  # the items the target net favours
    obs["excluded"] = np.packbits(excluded, axis=1, bitorder="little")
    got = model.next_q_values(_tensor(model, obs)).numpy()[:, 0]
    if double_q:
        choice = np.where(excluded, -np.inf, raw_online).argmax(axis=1)
        expected = raw_target[np.arange(len(choice)), choice]
    else:
        expected = np.where(excluded, -np.inf, raw_target).max(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    unmasked = np.where(excluded, -np.inf, raw_target).max(axis=1) < raw_target.max(axis=1)
    assert unmasked.all()  # the plain max would have taken an excluded item in every row
    # The same net without the mask takes the plain max (eq. 9).
    model.q_net.mask_excluded = model.q_net_target.mask_excluded = False
    plain = model.next_q_values(_tensor(model, obs)).numpy()[:, 0]
    if not double_q:
        np.testing.assert_allclose(plain, raw_target.max(axis=1), rtol=1e-6)


def test_masked_dqn_update_stays_finite_for_excluded_actions(split):
    """Unmasked exploration (the paper's) puts excluded actions in the buffer; Q(s, a) is never masked."""
    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    # learn() collects train_freq steps at a time: 64 random-policy steps, no update yet.
    model = build_model("dqn", env, extractor_kwargs=TINY, net_arch=(16,), seed=0, learning_starts=64,
                        batch_size=32, buffer_size=500, train_freq=64, mask_excluded=True)  # fmt: skip
    model.learn(64)
    batch = model.replay_buffer.sample(32)
    obs = {k: v.numpy() for k, v in batch.observations.items()}
    excluded = unpack_bits(obs["excluded"], split.n_items)
    actions = batch.actions.long().numpy()[:, 0]
    actions[:8] = excluded[:8].argmax(axis=1)  # force excluded actions into the batch
    batch = batch._replace(actions=th.as_tensor(actions[:, None]))
    model.replay_buffer.sample = lambda *a, **k: batch
    with th.no_grad():
        current = model.q_net(batch.observations).gather(1, batch.actions)
        target = batch.rewards + (1 - batch.dones) * model.gamma * model.next_q_values(batch.next_observations)
        expected = th.nn.functional.smooth_l1_loss(current, target).item()
    recorded = {}
    model.logger.record = lambda key, value, exclude=None: recorded.__setitem__(key, value)
    model.train(gradient_steps=1, batch_size=32)
    assert np.isfinite(recorded["train/loss"]) and recorded["train/loss"] < 100
    assert recorded["train/loss"] == pytest.approx(expected, rel=1e-5)


def test_qrdqn_masked_predict_and_target(split):
    model = _model("qrdqn", split, mask_excluded=True)
    obs = _next_states(split, n=8)
    tensor = _tensor(model, obs)
    excluded = unpack_bits(obs["excluded"], split.n_items)
    with th.no_grad():
        means = model.quantile_net(tensor).mean(dim=1).numpy()
        target = model.quantile_net_target(tensor).numpy()  # (B, n_quantiles, n_items)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, np.where(excluded, -np.inf, means).argmax(axis=1))
    assert not excluded[np.arange(8), actions].any()
    greedy = np.where(excluded, -np.inf, target.mean(axis=1)).argmax(axis=1)
    np.testing.assert_allclose(model.next_quantiles(tensor).numpy(), target[np.arange(8), :, greedy], rtol=1e-6)
    scores = score_observations(model, obs)
    assert (scores[excluded] == MASKED_VALUE).all()
    np.testing.assert_allclose(scores[~excluded], means[~excluded], rtol=1e-6)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_actor_critic_policy_gives_excluded_items_no_probability(algo, split):
    model = _model(algo, split, mask_excluded=True)
    obs = _next_states(split, n=6)
    tensor = _tensor(model, obs)
    excluded = th.as_tensor(unpack_bits(obs["excluded"], split.n_items))
    with th.no_grad():
        probs = model.policy.get_distribution(tensor).distribution.probs
        actions, values, log_prob = model.policy(tensor)  # a rollout step samples allowed items
        values2, log_prob2, entropy = model.policy.evaluate_actions(tensor, actions)
    assert probs[excluded].max() < 1e-30 and th.allclose(probs.sum(1), th.ones(6))
    assert not excluded[th.arange(6), actions].any()
    th.testing.assert_close(log_prob, log_prob2)  # the update sees the same distribution
    assert th.isfinite(entropy).all()
    predicted, _ = model.predict(obs, deterministic=True)
    assert not excluded.numpy()[np.arange(6), predicted].any()
    with pytest.raises(ValueError, match="maskable_ppo"):
        build_model("maskable_ppo", gym.make("MovieLensRec-v0", split_data=split), mask_excluded=True)


def test_next_item_softmax_runs_over_allowed_items(split):
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    model = build_model("dqn", env, extractor_kwargs=TINY, net_arch=(16,), seed=0, dueling=True,
                        tied_item_embeddings=True, next_item_weight=1.0, mask_excluded=True)  # fmt: skip
    with th.no_grad():
        model.q_net.item_bias.normal_(0, 1)
    logged = LoggedNextItems(env, seed=3)
    obs, items = LoggedNextItems(env, seed=3)(64)
    model.set_next_item_source(logged)
    excluded = unpack_bits(obs["excluded"], split.n_items)
    assert not excluded[np.arange(64), items].any()  # the logged next item is never excluded
    with th.no_grad():
        logits = (model.q_net(_tensor(model, obs)) * model.q_net.log_logit_scale.exp()).numpy().astype(np.float64)
        logits[excluded] = -np.inf
        log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        expected = float(np.mean(log_z - logits[np.arange(64), items]))
        got = model.next_item_loss(64).item()
    assert got == pytest.approx(expected, rel=1e-4)


def test_mask_excluded_survives_save_and_load(tmp_path, split):
    from agents.factory import LSRDQN

    model = _model("dqn", split, dueling=True, tied_item_embeddings=True, mask_excluded=True)
    model.save(tmp_path / "model.zip")
    loaded = LSRDQN.load(tmp_path / "model.zip")
    assert loaded.mask_excluded and loaded.q_net_target.mask_excluded
    obs = _next_states(split, n=4)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
