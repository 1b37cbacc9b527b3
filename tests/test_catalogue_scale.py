"""Training and evaluation at catalogue scale: the sampled next-item softmax, the sparse item
terms (``item_compute="sparse"``), the ``"auto"`` rule, and the evaluator's bounded batches."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents import make_agent
from agents.config import DEFAULT_NEXT_ITEM_NEGATIVES, LARGE_CATALOGUE, make_config
from agents.extractor import LongShortExtractor, packed_contains, packed_item_indices, unpack_bits
from agents.factory import build_model
from agents.masking import acting_values
from agents.next_item import LoggedNextItems
from agents.policies import action_q_values, best_items, greedy_q_values, item_layer, item_q_values
from agents.scoring import score_observations
from agents.supervised import window_excluded, window_excluded_at
from recsim_env.evaluation import BATCH_CELLS, evaluate_ranking, top_k_items

th.set_num_threads(1)

#: Tiny model sizes (as tests/test_make_agent.py's).
TINY = dict(n_envs=2, max_steps=5, embed_dim=8, dnn_hidden=(8,), net_arch=(16,), learning_starts=20,
            batch_size=8, buffer_size=500, target_update_interval=40, next_item_batch=4, pretrain_steps=6)


def _tiny(algo: str, **overrides) -> dict:
    values = dict(TINY)
    if algo == "ppo":
        values.update(n_steps=8, n_epochs=1)
        for key in ("learning_starts", "buffer_size", "target_update_interval"):
            values.pop(key)
    return {**values, **overrides}


def _next_item_loss(model, softmax: str, seed: int) -> th.Tensor:
    """The next-item loss of the same logged draws (the source re-seeded) with ``softmax``."""
    model.next_item_source.rng = np.random.default_rng(seed)
    model.next_item_softmax = softmax
    return model.next_item_loss()


@pytest.mark.parametrize("algo,positions", [("dqn", "all"), ("dqn", "last"), ("ppo", "all")])
def test_the_sampled_softmax_with_every_item_drawn_once_is_the_full_loss(algo, positions, ml100k_split):
    model = make_agent(ml100k_split, algo=algo, seed=0, next_item_positions=positions, next_item_loss="sampled",
                       next_item_negatives=ml100k_split.n_items, **_tiny(algo))
    assert model.next_item_softmax == "sampled" and model.agent_config.next_item_negatives == 1682
    model.policy.set_training_mode(False)  # no dropout: both losses see the same network
    grads = {}
    for softmax in ("sampled", "full"):
        model.policy.optimizer.zero_grad()
        loss = _next_item_loss(model, softmax, seed=5)
        loss.backward()
        grads[softmax] = (loss.item(), [p.grad.clone() for p in model.policy.parameters() if p.grad is not None])
    (sampled, g_sampled), (full, g_full) = grads["sampled"], grads["full"]
    assert sampled == pytest.approx(full, rel=1e-5) and full > 1.0
    assert len(g_sampled) == len(g_full)
    for a, b in zip(g_sampled, g_full):
        assert th.allclose(a, b, rtol=1e-4, atol=1e-7)


class _FixedState:
    """A next-item source that always returns one logged state, with the real negatives."""

    def __init__(self, source: LoggedNextItems, user: int, prefix: int) -> None:
        self.source = source
        self.observation = source.observations(np.array([user]), np.array([prefix]))
        self.item = source.items[(source.users == user) & (source.prefixes == prefix)]

    def __call__(self, batch_size: int):
        return self.observation, self.item

    def negatives(self, k: int):
        return self.source.negatives(k)


def test_the_corrected_negatives_estimate_the_full_normaliser_without_bias(ml100k_split):
    """The documented sense: sum over the draws of exp(s_j) / (K q_j) is unbiased for the full
    softmax's normaliser over the allowed items other than the target; recovered from the loss."""
    model = make_agent(ml100k_split, algo="dqn", seed=0, next_item_positions="last", next_item_loss="sampled",
                       next_item_negatives=64, **TINY)
    with th.no_grad():  # a network whose logits differ from item to item
        generator = th.Generator().manual_seed(0)
        for p in model.q_net.parameters():
            p.add_(th.randn(p.shape, generator=generator) * 0.05)
    model.policy.set_training_mode(False)
    source = model.next_item_source
    fixed = _FixedState(source, user=int(source.users[500]), prefix=int(source.prefixes[500]))
    model.set_next_item_source(fixed)
    obs, _ = model.policy.obs_to_tensor(fixed.observation)
    with th.no_grad():
        logits = acting_values(model.q_net, model._item_logits(model.q_net.extract_features(
            obs, model.q_net.features_extractor)), obs)[0].double()
        target = int(fixed.item[0])
        others = th.ones_like(logits, dtype=th.bool)
        others[target] = False
        truth = logits[others].exp().sum().item()  # masked items are exp(-1e8) = 0
        estimates = []
        for _ in range(3000):
            loss = model.next_item_loss().double().item()
            estimates.append(np.exp(loss + logits[target].item()) - np.exp(logits[target].item()))
    estimates = np.array(estimates)
    standard_error = estimates.std() / np.sqrt(estimates.size)
    assert abs(estimates.mean() - truth) < 4 * standard_error
    assert standard_error < 0.05 * truth  # the check has power: a wrong correction is far off
    # The excluded items (the state's history) never count: without the mask the normaliser is larger.
    assert (logits <= -1e7).sum() == len(ml100k_split.train_of(source.users[500])[0][: source.prefixes[500]])


def test_sampled_negatives_follow_the_popularity_proposal(ml100k_split):
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split)
    source = LoggedNextItems(env, seed=0)
    counts = np.bincount(ml100k_split.train_items, minlength=ml100k_split.n_items) + 1.0
    np.testing.assert_allclose(source.proposal, counts / counts.sum())
    draws = [source.negatives(1000) for _ in range(60)]
    for items, log_expected in draws:
        np.testing.assert_allclose(log_expected, np.log(1000 * source.proposal[items]))
    observed = np.bincount(np.concatenate([d[0] for d in draws]), minlength=ml100k_split.n_items) / 60_000
    top = np.argsort(source.proposal)[-20:]  # the most popular items: their draw frequency
    np.testing.assert_allclose(observed[top], source.proposal[top], rtol=0.25)
    every, zero = source.negatives(10**6)  # at least the catalogue: each item once, no correction
    np.testing.assert_array_equal(every, np.arange(ml100k_split.n_items))
    assert not zero.any()


def test_sparse_lookups_of_packed_and_window_exclusions_equal_the_dense_masks(ml100k_split):
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split)
    source = LoggedNextItems(env, seed=1)
    windows, targets = source.windows(16)
    tensors = {k: th.as_tensor(v) for k, v in windows.items()}
    valid = th.as_tensor(targets) >= 0
    n = ml100k_split.n_items
    items = th.as_tensor(np.random.default_rng(0).integers(0, n, 300))
    dense = window_excluded(tensors, valid, n)
    assert dense.any()
    assert th.equal(window_excluded_at(tensors, valid, items), dense[:, items])
    packed = tensors["excluded_before"].float()  # SB3 hands observations over as float32
    assert th.equal(packed_contains(packed, items), unpack_bits(packed, n)[:, items])
    rows, found = packed_item_indices(packed, n)
    assert [t.tolist() for t in unpack_bits(packed, n).nonzero(as_tuple=True)] == [rows.tolist(), found.tolist()]


def _observations(split, n=12):
    """Mid-episode test-mode observations (a few items already recommended)."""
    env = gym.make("MovieLensRec-v0", mode="test", split_data=split, max_steps=50)
    rng = np.random.default_rng(0)
    rows = []
    for u in env.unwrapped.users[:n]:
        obs, _ = env.reset(options={"user": int(u)})
        for a in rng.choice(np.flatnonzero(env.unwrapped.action_masks()), size=4, replace=False):
            obs, *_ = env.step(int(a))
        rows.append(obs)
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("head", ["tied", "untied", "plain"])
def test_sparse_item_terms_equal_the_dense_ones(head, ml100k_split):
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split, max_steps=50)
    options = {"tied": dict(dueling=True, tied_item_embeddings=True), "untied": dict(dueling=True),
               "plain": dict(mask_excluded=False)}[head]
    models = {compute: build_model("dqn", env, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,),
                                                                     liked_pooling=compute),
                                   net_arch=(16,), seed=0, item_compute=compute, double_q=True,
                                   **{"mask_excluded": True, **options}) for compute in ("dense", "sparse")}
    dense, sparse = models["dense"], models["sparse"]
    sparse.policy.load_state_dict(dense.policy.state_dict())
    with th.no_grad():
        for p in dense.policy.parameters():  # trained-looking weights: no exact ties
            p.add_(th.randn_like(p) * 0.2)
        sparse.policy.load_state_dict(dense.policy.state_dict())
    for m in models.values():
        m.policy.set_training_mode(False)
    obs = dense.policy.obs_to_tensor(_observations(ml100k_split))[0]
    actions = th.as_tensor(np.random.default_rng(1).integers(0, ml100k_split.n_items, (12, 1)))
    with th.no_grad():
        features = dense.q_net.extract_features(obs, dense.q_net.features_extractor)
        assert th.allclose(sparse.q_net.extract_features(obs, sparse.q_net.features_extractor), features, atol=1e-5)
        q_all = dense.q_net(obs)
        assert th.allclose(sparse.current_q_values(obs, actions), th.gather(q_all, 1, actions), atol=1e-5)
        assert th.allclose(action_q_values(dense.q_net, features, actions[:, 0]), q_all.gather(1, actions)[:, 0],
                           atol=1e-5)
        assert th.allclose(sparse.next_q_values(obs), dense.next_q_values(obs), atol=1e-5)
        acting = acting_values(dense.q_net, q_all, obs)
        greedy, value = greedy_q_values(dense.q_net, features, obs)
        assert th.equal(greedy, acting.argmax(dim=1)) and th.allclose(value, acting.max(dim=1).values, atol=1e-5)
        assert th.allclose(item_q_values(dense.q_net, features, obs), acting, atol=1e-5)
        np.testing.assert_allclose(score_observations(sparse, _observations(ml100k_split)),
                                   score_observations(dense, _observations(ml100k_split)), atol=1e-5)
        # The blocked argmax over every item, with the excluded ones skipped, forced small blocks.
        hidden, weight, bias = item_layer(dense.q_net, features)
        excluded = unpack_bits(obs["excluded"], ml100k_split.n_items)
        reference = th.addmm(bias, hidden, weight.T).masked_fill(excluded, -1e8)
        best, index = best_items(hidden, weight, bias, excluded.nonzero(as_tuple=True))
        assert th.equal(index, reference.argmax(dim=1)) and th.allclose(best, reference.max(dim=1).values)
    # The behaviour policy: the same greedy actions and the same exploration draws.
    vec = DummyVecEnv([lambda: gym.make("MovieLensRec-v0", split_data=ml100k_split, max_steps=50)] * 3)
    vec.seed(0)
    start = vec.reset()
    for m in models.values():
        m.mask_actions, m.exploration_rate = True, 0.5
        m.env, m._last_obs = vec, start
    picks = {}
    for compute, m in models.items():
        np.random.seed(4)
        picks[compute] = m._sample_action(0, None, 3)[0]
    np.testing.assert_array_equal(picks["sparse"], picks["dense"])


def test_the_auto_rule_decides_by_catalogue_size_and_is_recorded():
    config = make_config("default")
    assert (config.next_item_loss, config.item_compute, config.next_item_negatives) == ("auto", "auto", None)
    small = config.for_catalogue(LARGE_CATALOGUE)
    large = config.for_catalogue(LARGE_CATALOGUE + 1)
    assert (small.next_item_loss, small.item_compute, small.next_item_negatives) == ("full", "dense", None)
    assert (large.next_item_loss, large.item_compute, large.next_item_negatives) == (
        "sampled", "sparse", DEFAULT_NEXT_ITEM_NEGATIVES)
    explicit = make_config("default", next_item_loss="sampled", next_item_negatives=64, item_compute="dense")
    assert explicit.for_catalogue(1682) == explicit  # explicit values are kept
    # Without a next-item loss "auto" stays the inert full softmax.
    assert make_config("default", next_item_weight=0.0, pretrain_steps=0).for_catalogue(10**6).next_item_loss == "full"
    # The extractor applies the same rule to its own catalogue.
    from experiments.bench_agent import observation_space

    for n, pooling in ((LARGE_CATALOGUE, "dense"), (LARGE_CATALOGUE + 1, "sparse")):
        assert LongShortExtractor(observation_space(n), embed_dim=4, liked_pooling="auto").liked_pooling == pooling


def test_settings_that_cannot_apply_are_refused(ml100k_split):
    with pytest.raises(ValueError, match="no next-item loss"):
        make_config("default", next_item_loss="sampled", next_item_weight=0.0, pretrain_steps=0)
    with pytest.raises(ValueError, match="next_item_negatives applies to the sampled"):
        make_config("default", next_item_loss="full", next_item_negatives=64)
    with pytest.raises(ValueError, match="next_item_negatives must be a positive"):
        make_config("default", next_item_loss="sampled", next_item_negatives=0)
    with pytest.raises(ValueError, match="item_compute='bogus' is unknown"):
        make_config("default", item_compute="bogus")
    with pytest.raises(ValueError, match="is the full softmax on 1,682 items"):
        make_config("default", next_item_negatives=64).for_catalogue(1682)
    env = gym.make("MovieLensRec-v0", split_data=ml100k_split)
    with pytest.raises(ValueError, match="no next-item loss"):
        build_model("dqn", env, dueling=True, next_item_softmax="sampled")
    with pytest.raises(ValueError, match="applies to the sampled softmax"):
        build_model("ppo", env, next_item_weight=1.0, next_item_negatives=8)
    with pytest.raises(ValueError, match="is unknown"):
        LongShortExtractor(env.observation_space, liked_pooling="bag")
    # A logged-data source without negatives cannot feed the sampled softmax.
    model = make_agent(ml100k_split, algo="dqn", seed=0, next_item_positions="last", next_item_loss="sampled",
                       **TINY)
    source = model.next_item_source
    model.set_next_item_source(lambda batch_size: source(batch_size))
    with pytest.raises(RuntimeError, match="negatives"):
        model.next_item_loss()
    # SB3's generic policy has no next-item loss: the settings are recorded as unused there.
    assert {"next_item_loss", "next_item_negatives", "item_compute"} <= set(
        make_config("default", policy="multi_hot").unused_fields())


def test_top_k_equals_a_stable_full_sort_with_ties_and_exclusions():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(40, 517)).astype(np.float32)  # many ties
    scores[0] = 2.0  # a row of ties only
    scores[1, :510] = -np.inf  # fewer finite scores than k
    scores[2, rng.integers(0, 517, 100)] = -np.inf
    for k in (1, 10, 517, 600):
        reference = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, 517)]
        np.testing.assert_array_equal(top_k_items(scores, k), reference)


def test_evaluation_batches_are_bounded_and_give_the_metrics_of_one_batch():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 50_000
    from test_evaluation import make_split

    train = [list(rng.choice(n_items, 8, replace=False)) for _ in range(n_users)]
    test = [[int(i) for i in rng.choice(400, 4, replace=False) if i not in t] for t in train]
    test[5] = []  # a user without test items is skipped
    split = make_split(train, test, n_items=n_items)
    table = rng.normal(size=(n_users, n_items)).astype(np.float32)
    table[:, :400] += 1.5  # hits happen
    table[7, :] = 0.0  # a user whose scores all tie
    sizes = []

    def score(users):
        sizes.append(len(users))
        return table[users]

    batched = evaluate_ranking(score, split, return_per_user=True)
    assert max(sizes) == BATCH_CELLS // n_items < n_users  # never every user's scores at once
    whole = evaluate_ranking(lambda u: table[u].astype(np.float64), split, batch_size=n_users, return_per_user=True)
    ones = evaluate_ranking(lambda u: table[u], split, batch_size=1, return_per_user=True)
    assert batched["n_users"] == n_users - 1 and batched["hit_rate@10"] > 0
    for result in (whole, ones):
        assert {k: v for k, v in result.items() if k != "per_user"} == {
            k: v for k, v in batched.items() if k != "per_user"}
        for key, values in batched["per_user"].items():
            np.testing.assert_array_equal(result["per_user"][key], values)
