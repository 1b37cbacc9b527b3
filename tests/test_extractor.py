"""LongShortExtractor and its parts: shapes, masking, the FM identity, gradients, SB3 use."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from agents.attention import MaskedSelfAttention, ShortTermEncoder, sinusoidal_positions
from agents.deepfm import DeepFM, bi_interaction
from agents.extractor import LongShortExtractor, unpack_liked_bits

th.set_num_threads(1)
N_ITEMS = 37  # deliberately not a multiple of 8
HISTORY = 6


def make_space(n_items: int = N_ITEMS, history_len: int = HISTORY) -> spaces.Dict:
    """The MovieLensRec-v0 observation space as COMMON.md specifies it."""
    return spaces.Dict(
        {
            "user": spaces.Box(0, np.array([1, 6, 20]), shape=(3,), dtype=np.int32),
            "history": spaces.Box(0, n_items, shape=(history_len,), dtype=np.int32),
            "liked": spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
        }
    )


def make_obs(rng: np.random.Generator, batch: int, n_items: int = N_ITEMS, history_len: int = HISTORY):
    """Random valid observations as SB3 hands them to forward(): float32 tensors."""
    user = np.stack([rng.integers(0, 2, batch), rng.integers(0, 7, batch), rng.integers(0, 21, batch)], 1)
    history = rng.integers(1, n_items + 1, size=(batch, history_len))
    n_pad = rng.integers(0, history_len + 1, size=batch)
    n_pad[0] = history_len  # an empty history
    n_pad[1] = 0  # a full one
    for b in range(batch):
        history[b, : n_pad[b]] = 0  # front padding
    liked_mask = rng.random((batch, n_items)) < 0.2
    liked_mask[0] = False  # nothing liked yet
    liked = np.packbits(liked_mask, axis=1, bitorder="little")
    obs = {"user": user, "history": history, "liked": liked}
    return {k: th.as_tensor(v, dtype=th.float32) for k, v in obs.items()}, liked_mask


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"embed_dim": 8, "n_heads": 2, "n_layers": 2, "share_item_embeddings": False, "dnn_hidden": ()}],
)
def test_output_shape_and_finite(kwargs):
    th.manual_seed(0)
    ex = LongShortExtractor(make_space(), **kwargs)
    obs, _ = make_obs(np.random.default_rng(0), batch=9)
    out = ex(obs)
    d = kwargs.get("embed_dim", 64)
    assert ex.features_dim == 2 * d
    assert out.shape == (9, 2 * d)
    assert th.isfinite(out).all()  # the all-padding / nothing-liked row must not give NaN


def test_unpack_liked_bits_matches_numpy_packbits():
    rng = np.random.default_rng(1)
    mask = rng.random((4, N_ITEMS)) < 0.5
    packed = np.packbits(mask, axis=1, bitorder="little")
    got = unpack_liked_bits(th.as_tensor(packed, dtype=th.float32), N_ITEMS)
    np.testing.assert_array_equal(got.numpy().astype(bool), mask)
    # item i is bit i % 8 of byte i // 8
    one = np.zeros((1, 2), dtype=np.uint8)
    one[0, 1] = 1 << 3
    assert unpack_liked_bits(th.as_tensor(one), 16)[0].nonzero().flatten().tolist() == [11]


def test_padding_is_ignored():
    """Changing what sits in padded slots (the padding vector) never changes the output."""
    th.manual_seed(0)
    ex = LongShortExtractor(make_space(), embed_dim=8, n_heads=2, n_layers=2).eval()
    obs, _ = make_obs(np.random.default_rng(2), batch=16)
    before = ex(obs)
    with th.no_grad():
        ex.item_embedding.weight[0] = th.randn(8) * 100.0
        ex.item_first_order.weight[0] = 50.0
    after = ex(obs)
    th.testing.assert_close(after, before)
    # The short-term part of an empty history is exactly zero.
    assert th.count_nonzero(after[0, 8:]) == 0


def test_short_term_depends_on_real_items_only_and_on_their_order():
    th.manual_seed(0)
    emb = th.nn.Embedding(N_ITEMS + 1, 8, padding_idx=0)
    enc = ShortTermEncoder(emb, HISTORY, n_heads=1, n_layers=1).eval()
    a = th.tensor([[0, 0, 0, 5, 9, 12]])
    b = th.tensor([[0, 0, 0, 9, 5, 12]])  # same items, different order -> different positions
    assert not th.allclose(enc(a), enc(b))
    # A sequence whose real items are changed does change the output.
    assert not th.allclose(enc(a), enc(th.tensor([[0, 0, 0, 5, 9, 13]])))


def test_masked_attention_hand_computed():
    """d=2, one head, identity projections, last of three slots padded."""
    att = MaskedSelfAttention(2, n_heads=1)
    with th.no_grad():
        for lin in (att.w_q, att.w_k, att.w_v):
            lin.weight.copy_(th.eye(2))
    x = th.tensor([[[1.0, 0.0], [0.0, 2.0], [7.0, 7.0]]])
    mask = th.tensor([[True, True, False]])
    with th.no_grad():
        out = att(x, mask)
    # Query 0: scores with keys 0, 1 = [1, 0] / sqrt(2); query 1: [0, 4] / sqrt(2).
    s = 1.0 / math.sqrt(2.0)
    w0 = np.exp([1 * s, 0]) / np.exp([1 * s, 0]).sum()
    w1 = np.exp([0, 4 * s]) / np.exp([0, 4 * s]).sum()
    v = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(out[0, 0].numpy(), w0 @ v, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1].numpy(), w1 @ v, rtol=1e-6)
    # All-padding sequence: zeros, not NaN.
    empty = att(x, th.zeros(1, 3, dtype=th.bool))
    assert th.equal(empty, th.zeros_like(empty))


def test_multi_head_attention_equals_per_head_computation():
    th.manual_seed(0)
    att = MaskedSelfAttention(4, n_heads=2)
    x = th.randn(1, 3, 4)
    mask = th.tensor([[False, True, True]])
    out = att(x, mask)
    q, k, v = att.w_q(x)[0], att.w_k(x)[0], att.w_v(x)[0]
    for h in range(2):
        sl = slice(2 * h, 2 * h + 2)
        scores = q[:, sl] @ k[1:, sl].T / math.sqrt(2.0)  # keys 1, 2 only
        expected = th.softmax(scores, dim=-1) @ v[1:, sl]
        th.testing.assert_close(out[0, :, sl], expected)


def test_sinusoidal_positions_formula():
    p = sinusoidal_positions(5, 6)
    assert p.shape == (5, 6)
    pos, i = 3, 1
    assert p[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 6)))
    assert p[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 6)))


def test_fm_second_order_equals_explicit_pairwise_sum():
    g = th.Generator().manual_seed(0)
    fields = th.randn(7, 4, 5, generator=g, dtype=th.float64)
    explicit = th.zeros(7, 5, dtype=th.float64)
    for i, j in itertools.combinations(range(4), 2):
        explicit += fields[:, i] * fields[:, j]
    th.testing.assert_close(bi_interaction(fields), explicit)
    # Summed over dimensions it is eq. 6's sum_{i<j} <v_i, v_j>.
    scalar = sum((fields[:, i] * fields[:, j]).sum(-1) for i, j in itertools.combinations(range(4), 2))
    th.testing.assert_close(bi_interaction(fields).sum(-1), scalar)


def test_deepfm_is_fm_plus_dnn():
    th.manual_seed(0)
    fm = DeepFM(4, 5, hidden=(8,))
    fields, first = th.randn(3, 4, 5), th.randn(3, 4)
    expected = fm.bias + first.sum(1, keepdim=True) + bi_interaction(fields) + fm.dnn(fields.flatten(1))
    th.testing.assert_close(fm(fields, first), expected)


def test_long_term_mean_pools_liked_items():
    th.manual_seed(0)
    ex = LongShortExtractor(make_space(), embed_dim=4, share_item_embeddings=False)
    obs, mask = make_obs(np.random.default_rng(3), batch=4)
    # Setting DeepFM's DNN to zero and user embeddings to zero leaves first order + FM terms;
    # with only the liked field non-zero the bi-interaction vanishes and y = w0 + mean w_item.
    with th.no_grad():
        for p in ex.deepfm.dnn.parameters():
            p.zero_()
        for t in ex.user_embeddings:
            t.weight.zero_()
        ex.item_first_order.weight.copy_(th.randn(N_ITEMS + 1, 1))
    long = ex.long_term(obs)
    w = ex.item_first_order.weight[1:, 0].detach().numpy()
    for b in range(4):
        expected = w[mask[b]].mean() if mask[b].any() else 0.0
        np.testing.assert_allclose(long[b].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_parameter():
    th.manual_seed(0)
    ex = LongShortExtractor(make_space(), embed_dim=8, n_heads=2, n_layers=2, share_item_embeddings=False)
    obs, _ = make_obs(np.random.default_rng(4), batch=32)
    (ex(obs) ** 2).sum().backward()
    for name, p in ex.named_parameters():
        assert p.grad is not None, name
        assert th.count_nonzero(p.grad) > 0, name
    # The padding rows stay untouched.
    assert th.count_nonzero(ex.item_embedding.weight.grad[0]) == 0


def test_bad_spaces_and_options_raise():
    with pytest.raises(ValueError, match="Dict observation space"):
        LongShortExtractor(spaces.Box(0, 1, shape=(3,)))
    bad = make_space()
    bad.spaces["liked"] = spaces.Box(0, 255, shape=(2,), dtype=np.uint8)
    with pytest.raises(ValueError, match="packed bits"):
        LongShortExtractor(bad)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        LongShortExtractor(make_space(), embed_dim=6, n_heads=4)


class _TinyRecEnv(gym.Env):
    """A random environment with the MovieLensRec-v0 spaces, only to host SB3 policies."""

    def __init__(self) -> None:
        self.observation_space = make_space()
        self.action_space = spaces.Discrete(N_ITEMS)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        reward = float(int(action) % 5 == 0)
        return self.observation_space.sample(), reward, False, self._t >= 10, {}


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_works_inside_sb3_policies(algo):
    from stable_baselines3 import DQN, PPO

    kwargs = dict(features_extractor_class=LongShortExtractor, features_extractor_kwargs=dict(embed_dim=8))
    env = _TinyRecEnv()
    if algo == "dqn":
        model = DQN("MultiInputPolicy", env, policy_kwargs=kwargs, learning_starts=16, batch_size=8,
                    buffer_size=100, seed=0, device="cpu")
    else:
        model = PPO("MultiInputPolicy", env, policy_kwargs=kwargs, n_steps=16, batch_size=8, n_epochs=1,
                    seed=0, device="cpu")
    net = model.policy.q_net if algo == "dqn" else model.policy
    before = [p.detach().clone() for p in net.features_extractor.parameters()]
    model.learn(48)
    after = list(net.features_extractor.parameters())
    assert any(not th.equal(a, b) for a, b in zip(before, after))  # the extractor is trained
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert 0 <= int(action) < N_ITEMS


# Options of the short-term encoder: causal attention, readouts, positions, transformer blocks ----

ALL_OPTIONS = [
    dict(readout=r, positions=p, feed_forward=f)
    for r in ("last", "mean") for p in ("sinusoidal", "learned", "relative") for f in (False, True)
]  # fmt: skip


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_causal_states_never_see_later_items(options):
    """With causal=True the state after slot t is the same whatever comes after t."""
    th.manual_seed(0)
    emb = th.nn.Embedding(N_ITEMS + 1, 8, padding_idx=0)
    enc = ShortTermEncoder(emb, HISTORY, n_heads=2, n_layers=2, causal=True, **options).eval()
    tokens = th.tensor([[0, 0, 4, 9, 2, 30], [7, 1, 3, 5, 11, 13]])
    states = enc.sequence_states(tokens)
    assert states.shape == (2, HISTORY, 8)
    for t in range(HISTORY - 1):
        changed = tokens.clone()
        changed[:, t + 1 :] = th.randint(1, N_ITEMS + 1, (2, HISTORY - t - 1))
        th.testing.assert_close(enc.sequence_states(changed)[:, : t + 1], states[:, : t + 1])
        assert not th.allclose(enc.sequence_states(changed)[:, -1], states[:, -1])
    # The last state is the encoder's own output on the whole history.
    th.testing.assert_close(states[:, -1], enc(tokens))
    # A non-causal encoder's position outputs do see later items: no per-prefix states from it.
    with pytest.raises(ValueError, match="causal=True"):
        ShortTermEncoder(emb, HISTORY).sequence_states(tokens)


@pytest.mark.parametrize("options", [o for o in ALL_OPTIONS if o["positions"] == "relative"],
                         ids=lambda o: f"{o['readout']}-ff{o['feed_forward']}")
def test_relative_positions_make_every_prefix_state_the_state_of_that_history(options):
    """State t of one pass == forward() of the first t + 1 tokens, front-padded to n slots."""
    th.manual_seed(1)
    emb = th.nn.Embedding(N_ITEMS + 1, 8, padding_idx=0)
    enc = ShortTermEncoder(emb, HISTORY, n_heads=2, n_layers=2, causal=True, **options).eval()
    with th.no_grad():
        for layer in enc.layers:
            bias = layer.attention.relative_bias if options["feed_forward"] else layer.relative_bias
            bias.normal_()  # a non-trivial bias (it starts at zero)
    tokens = th.tensor([[0, 0, 4, 9, 2, 30], [7, 1, 3, 5, 11, 13]])
    states = enc.sequence_states(tokens)
    for t in range(HISTORY):
        prefix = th.zeros_like(tokens)
        prefix[:, HISTORY - 1 - t :] = tokens[:, : t + 1]
        real = tokens[:, t] > 0
        th.testing.assert_close(states[real, t], enc(prefix)[real], rtol=1e-5, atol=1e-6)


def test_relative_bias_is_added_by_query_key_distance():
    """d=2, identity projections, one head, causal: scores q.k / sqrt(2) + r[t - j]."""
    att = MaskedSelfAttention(2, n_heads=1, causal=True, relative_positions=3)
    with th.no_grad():
        for lin in (att.w_q, att.w_k, att.w_v):
            lin.weight.copy_(th.eye(2))
        att.relative_bias.copy_(th.tensor([[9.0, 9.0, 0.5, -1.0, 2.0]]))  # distances -2..2
    x = th.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])
    with th.no_grad():
        out = att(x, th.ones(1, 3, dtype=th.bool))
    s = 1.0 / math.sqrt(2.0)
    v = x[0].numpy()
    np.testing.assert_allclose(out[0, 0].numpy(), v[0], rtol=1e-6)  # only itself
    scores = np.array([(x[0, 2] @ x[0, j]).item() * s for j in range(3)]) + np.array([2.0, -1.0, 0.5])
    w = np.exp(scores) / np.exp(scores).sum()
    np.testing.assert_allclose(out[0, 2].numpy(), w @ v, rtol=1e-6)


@pytest.mark.parametrize("options", [dict(positions="learned", feed_forward=True, readout="last"),
                                     dict(positions="relative", feed_forward=False, readout="mean")])
def test_gradients_reach_the_new_parameters(options):
    th.manual_seed(0)
    ex = LongShortExtractor(make_space(), embed_dim=8, n_heads=2, n_layers=2, causal=True, **options)
    if options["positions"] == "learned":  # a trained table that starts as the paper's sinusoids
        th.testing.assert_close(ex.short_term.position_table.detach(), sinusoidal_positions(HISTORY, 8))
    obs, _ = make_obs(np.random.default_rng(4), batch=32)
    (ex(obs) ** 2).sum().backward()
    for name, p in ex.named_parameters():
        if "relative_bias" in name:  # causal: only the distances 0..n-1 are ever used
            assert th.count_nonzero(p.grad[:, HISTORY - 1 :]) > 0, name
            continue
        assert p.grad is not None and th.count_nonzero(p.grad) > 0, name


def test_bad_encoder_options_raise():
    with pytest.raises(ValueError, match="readout='first' is unknown"):
        LongShortExtractor(make_space(), readout="first")
    with pytest.raises(ValueError, match="positions='rotary' is unknown"):
        LongShortExtractor(make_space(), positions="rotary")
    with pytest.raises(ValueError, match="causal=True"):
        LongShortExtractor(make_space()).sequence_features({})


def test_encoder_option_names_match_the_config():
    from agents.attention import POSITIONS, READOUTS
    from agents.extractor import INTERESTS
    from agents.supervised import NEXT_ITEM_POSITIONS
    from agents import config

    assert (config.POSITIONS, config.READOUTS, config.NEXT_ITEM_POSITIONS, config.INTERESTS) == (
        POSITIONS, READOUTS, NEXT_ITEM_POSITIONS, INTERESTS)


@pytest.mark.parametrize("interests", ["long", "short"])
def test_one_interest_alone_reads_only_its_own_inputs(interests):
    """interests='long' ignores the history, 'short' ignores the liked set and the user features;
    each gives the matching half of the paper's features (d columns)."""
    th.manual_seed(0)
    both = LongShortExtractor(make_space(), embed_dim=8, causal=True)
    th.manual_seed(0)
    one = LongShortExtractor(make_space(), embed_dim=8, causal=True, interests=interests)
    assert one.features_dim == 8 and both.features_dim == 16
    obs, _ = make_obs(np.random.default_rng(5), batch=12)
    out = one(obs)
    half = slice(0, 8) if interests == "long" else slice(8, 16)
    th.testing.assert_close(out, both(obs)[:, half])  # same initial weights, no LayerNorm
    other = dict(obs)
    rng = np.random.default_rng(6)
    if interests == "long":
        other["history"] = th.as_tensor(rng.integers(1, N_ITEMS + 1, size=obs["history"].shape), dtype=th.float32)
    else:
        other["liked"] = th.as_tensor(rng.integers(0, 256, size=obs["liked"].shape), dtype=th.float32)
        other["user"] = th.zeros_like(obs["user"])
    th.testing.assert_close(one(other), out)
    # The per-prefix pass keeps the same columns.
    windows = {"user": obs["user"], "history": obs["history"], "history_liked": th.zeros_like(obs["history"]),
               "liked_before": obs["liked"]}
    th.testing.assert_close(one.sequence_features(windows), both.sequence_features(windows)[..., half])
    with pytest.raises(ValueError, match="interests='neither' is unknown"):
        LongShortExtractor(make_space(), interests="neither")


def test_embedding_init_std_scales_the_item_and_user_tables():
    th.manual_seed(0)
    ex = LongShortExtractor(make_space(n_items=400), embed_dim=16, embedding_init_std=0.05,
                            share_item_embeddings=False)
    for table in (ex.item_embedding, ex.long_item_embedding):
        assert table.weight[1:].std().item() == pytest.approx(0.05, rel=0.1)
        assert th.count_nonzero(table.weight[0]) == 0  # the padding row stays zero
    for table in ex.user_embeddings:
        assert table.weight.abs().max().item() < 0.5  # N(0, 1) would exceed this in 2 * 16 draws
    default = LongShortExtractor(make_space(n_items=400), embed_dim=16)
    assert default.item_embedding.weight[1:].std().item() == pytest.approx(1.0, rel=0.1)  # PyTorch's N(0, 1)
    with pytest.raises(ValueError, match="embedding_init_std must be > 0"):
        LongShortExtractor(make_space(), embedding_init_std=0.0)


def test_no_user_features_long_term_uses_the_liked_items_alone():
    """A dataset without user features (no "user" field): the long-term part is DeepFM over the
    liked-item field alone, its one-pass prefix states equal forward() of each prefix, and
    gradients flow."""
    th.manual_seed(0)
    space = spaces.Dict({k: v for k, v in make_space().spaces.items() if k != "user"})
    ex = LongShortExtractor(space, embed_dim=4, causal=True, share_item_embeddings=False).eval()
    assert len(ex.user_embeddings) == 0 and ex.deepfm.dnn[0].in_features == 4  # one field of d=4
    obs, mask = make_obs(np.random.default_rng(3), batch=4)
    del obs["user"]
    with th.no_grad():  # DNN off: one field has no pairwise term, so y = w0 + mean of liked w_item
        for p in ex.deepfm.dnn.parameters():
            p.zero_()
        ex.item_first_order.weight.copy_(th.randn(N_ITEMS + 1, 1))
    long = ex.long_term(obs)
    w = ex.item_first_order.weight[1:, 0].detach().numpy()
    for b in range(4):
        expected = w[mask[b]].mean() if mask[b].any() else 0.0
        np.testing.assert_allclose(long[b].detach().numpy(), expected, rtol=1e-5, atol=1e-6)

    windows = {"history": th.tensor([[0, 0, 4, 9, 2, 30], [7, 1, 3, 5, 11, 13]]),
               "history_liked": th.tensor([[0, 0, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0]]),
               "liked_before": th.zeros((2, (N_ITEMS + 7) // 8))}
    states = ex.sequence_features(windows)
    liked_last = np.stack([np.isin(np.arange(N_ITEMS) + 1, tokens) for tokens in ([4, 2, 30], [7, 1, 11])])
    last = {"history": windows["history"].float(),
            "liked": th.as_tensor(np.packbits(liked_last, axis=1, bitorder="little"), dtype=th.float32)}
    th.testing.assert_close(states[:, -1], ex(last), rtol=1e-5, atol=1e-6)
    ex.train()
    (ex(obs) ** 2).sum().backward()
    assert th.count_nonzero(ex.item_first_order.weight.grad) > 0
