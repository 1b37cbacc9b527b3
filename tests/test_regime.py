"""The training regime options of the neural baselines (SASRec, GRU4Rec, STAMP) and of the kNN models.

The default fit must stay the papers' regime exactly: the pinned figures below were computed
with the code before the options existed (commit 04cc794) on the same tiny split and seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.baselines import ItemCFRecommender, UserCFRecommender, make_recommender
from test_baselines import brute_force_itemcf, brute_force_usercf, cycle_split, make_split, random_split

torch = pytest.importorskip("torch")

from agents.baselines.sequential import lr_factor, train_windows  # noqa: E402  (needs torch)
from agents.baselines.tuning import fit_and_validate, tune  # noqa: E402

BASE = dict(dim=8, max_len=4, epochs=3, batch_size=4, dropout=0.1, num_threads=1, seed=3)
#: (model, extra settings) -> (loss per epoch, scores of user 0) computed before the regime options.
PINNED = {
    ("sasrec", ()): ([2.757546, 2.619138, 2.449789],
                     [0.19699, 0.44926, 0.78015, 0.65278, -0.16653, 0.55781, 1.17126, -0.59792, -0.06349]),
    ("sasrec", (("loss", "bce"),)): ([1.609499, 1.571457, 1.63435],
                                     [0.11697, 0.35614, 1.52102, 0.57148, 0.34442, 0.10514, 1.32135, -0.6691, -0.23817]),
    ("gru4rec", ()): ([2.241738, 2.206674, 2.188932],
                      [0.08231, -0.08281, -0.06053, 0.13763, -0.22175, 0.18355, -0.3217, -0.22413, 0.05453]),
    ("stamp", (("lr", 0.05),)): ([2.197614, 2.191926, 2.139677],
                                 [-0.82166, -0.40566, -0.57589, 0.80054, -0.02315, 0.66885, -0.84442, 0.25389, -0.18469]),
}  # fmt: skip
#: GRU4Rec with epochs=6, patience=2 and a scripted monitor: best after epoch 2, stop after 4.
PINNED_EARLY_STOP = ([2.241738, 2.206674, 2.188932, 2.168855],
                     [0.07744, -0.08886, -0.00314, 0.07796, -0.26117, 0.11706, -0.20247, -0.22785, 0.02734])


def pinned_split():
    """10 users, 9 items, 7 to 14 train items each (re-rated items included), fixed by seed."""
    rng = np.random.default_rng(7)
    train = [rng.choice(9, size=int(rng.integers(2, 9)), replace=False).tolist() for _ in range(10)]
    train = [t + rng.choice(9, size=int(rng.integers(0, 8))).tolist() for t in train]
    return make_split(train, [[]] * 10, n_items=9)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name, extra", list(PINNED))
def test_the_default_fit_is_the_papers_regime_unchanged(name: str, extra: tuple) -> None:
    losses, scores = PINNED[(name, extra)]
    model = make_recommender(name, **BASE, **dict(extra)).fit(pinned_split())
    np.testing.assert_allclose(model.loss_history_, losses, atol=2e-6)
    np.testing.assert_allclose(model.score(np.array([0]))[0], scores, atol=2e-5)
    assert model.step_ == model.total_steps_ == 3 * math.ceil(len(train_windows(pinned_split(), 4)) / 4)


def test_default_early_stopping_is_unchanged() -> None:
    values = iter([0.1, 0.3, 0.2, 0.25, 0.05])
    model = make_recommender("gru4rec", **{**BASE, "epochs": 6, "patience": 2})
    model.fit(pinned_split(), monitor=lambda m: next(values))
    losses, scores = PINNED_EARLY_STOP
    assert model.best_epoch_ == 2 and len(model.loss_history_) == 4
    np.testing.assert_allclose(model.loss_history_, losses, atol=2e-6)
    np.testing.assert_allclose(model.score(np.array([0]))[0], scores, atol=2e-5)  # epoch 2's weights


def test_window_stride_puts_a_window_end_at_every_stride_th_prefix() -> None:
    split = make_split([list(range(7)), [3], [4, 5]], [[]] * 3, n_items=8)
    np.testing.assert_array_equal(train_windows(split, 3), train_windows(split, 3, stride=3))  # default = cut
    every = train_windows(split, 3, stride=1)
    # user 0: ends after items 2..7 (6 windows), user 2: one window; each ends at its prefix's last item
    assert every.shape == (7, 4) and every.dtype == np.int32
    np.testing.assert_array_equal(every[:, -1], [7, 6, 5, 4, 3, 2, 6])  # tokens = item + 1
    np.testing.assert_array_equal(every[4], [0, 1, 2, 3])  # the window of prefix (0, 1, 2): front-padded
    # with stride 1 a target is in up to max_len windows; the last ones in fewer (no window ends later)
    targets = [int(t) for w in every for t in w[1:][w[:-1] > 0]]
    assert targets.count(2) == 3 and targets.count(6) == 3 and targets.count(7) == 1
    with pytest.raises(ValueError, match=r"window_stride must be in \[1, max_len=4\]"):
        make_recommender("sasrec", max_len=4, window_stride=5)


def test_a_stride_one_fit_trains_on_more_windows_per_epoch() -> None:
    split = pinned_split()
    cut = make_recommender("stamp", **BASE).fit(split)
    dense = make_recommender("stamp", **BASE, window_stride=1).fit(split)
    windows_cut, windows_dense = len(train_windows(split, 4)), len(train_windows(split, 4, 1))
    assert windows_dense == sum(len(split.train_of(u)[0]) - 1 for u in range(split.n_users)) > windows_cut
    assert dense.step_ == 3 * math.ceil(windows_dense / 4) and cut.step_ == 3 * math.ceil(windows_cut / 4)


def test_lr_schedules_decay_from_lr_to_the_floor() -> None:
    assert lr_factor("constant", 50, 100, 0.0) == 1.0
    assert lr_factor("linear", 0, 100, 0.1) == 1.0 and lr_factor("linear", 50, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor("cosine", 50, 100, 0.1) == pytest.approx(0.55) and lr_factor("cosine", 25, 100, 0.0) == \
        pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("linear", 100, 100, 0.2) == pytest.approx(0.2) == lr_factor("cosine", 100, 100, 0.2)
    split = pinned_split()
    constant = make_recommender("gru4rec", **BASE).fit(split).score(np.arange(3))
    flat = make_recommender("gru4rec", **BASE, lr_schedule="linear", lr_end_factor=1.0).fit(split).score(np.arange(3))
    decayed = make_recommender("gru4rec", **BASE, lr_schedule="linear").fit(split).score(np.arange(3))
    np.testing.assert_allclose(flat, constant, atol=1e-6)  # a decay to 100% is the constant rate
    assert np.abs(decayed - constant).max() > 1e-3  # the schedule is applied
    with pytest.raises(ValueError, match="lr_schedule='constant' has none"):
        make_recommender("gru4rec", lr_end_factor=0.1)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, linear, cosine"):
        make_recommender("gru4rec", lr_schedule="step")


@pytest.mark.parametrize("name, tables", [("sasrec", ["item_emb"]), ("gru4rec", ["item_emb", "out_items"]),
                                          ("stamp", ["item_emb"])])  # fmt: skip
def test_embedding_init_std_redraws_every_item_table(name: str, tables: list[str]) -> None:
    split = cycle_split(n_users=6)
    model = make_recommender(name, dim=64, max_len=4, lr=1e-12, train_steps=1, embedding_init_std=0.01).fit(split)
    paper = make_recommender(name, dim=64, max_len=4, lr=1e-12, train_steps=1).fit(split)
    for table in tables:
        weight = getattr(model.net_, table).weight.detach().numpy()
        real = weight[1:] if getattr(model.net_, table).padding_idx == 0 else weight
        assert real.std() == pytest.approx(0.01, rel=0.1)
        assert getattr(paper.net_, table).weight.detach().numpy().std() > 0.03  # the paper's init is larger
        if getattr(model.net_, table).padding_idx == 0:
            assert not weight[0].any()


def test_train_steps_sets_the_length_and_monitor_every_the_reports() -> None:
    split = pinned_split()
    per_epoch = math.ceil(len(train_windows(split, 4)) / 4)
    seen: list[int] = []
    values = iter([0.5, 0.4, 0.3])  # only worse after the first: no early stopping with patience=None

    def monitor(model) -> float:
        seen.append(model.step_)
        return next(values)

    assert per_epoch == 7
    params = {**BASE, "epochs": None, "train_steps": 10}
    model = make_recommender("sasrec", **params, patience=None).fit(split, monitor=monitor, monitor_every=4)
    assert seen == model.monitor_steps_ == [4, 8, 10]  # every 4 steps across the pass boundary, and the end
    assert model.step_ == 10 and len(model.loss_history_) == 2  # one whole pass and a part
    plain = make_recommender("sasrec", **params).fit(split)
    np.testing.assert_allclose(model.score(np.arange(4)), plain.score(np.arange(4)), atol=1e-6)  # final weights kept
    with pytest.raises(ValueError, match="give epochs .* or train_steps .*, not both"):
        make_recommender("sasrec", epochs=3, train_steps=10)
    with pytest.raises(ValueError, match="monitor_every counts optimizer steps: it needs train_steps"):
        make_recommender("sasrec", **BASE).fit(split, monitor=monitor, monitor_every=2)


def test_tuning_by_steps_picks_a_step_count() -> None:
    split = cycle_split()
    fast = dict(dim=16, max_len=8, batch_size=16, lr=1e-2, dropout=0.0, num_threads=1, seed=0)
    result = tune("gru4rec", split, fixed={**fast, "train_steps": 30, "patience": 2})
    assert set(result.params) == {"train_steps"} and 1 <= result.params["train_steps"] <= 30


def test_fit_and_validate_reports_every_evaluation_and_returns_the_final_value() -> None:
    from recsim_env.splits import holdout_last

    validation = holdout_last(pinned_split(), 0.3)
    fast = dict(dim=16, max_len=8, batch_size=16, lr=1e-2, dropout=0.0, num_threads=1, seed=0)
    reports: list[tuple[int, int, dict]] = []
    value = fit_and_validate("stamp", {**fast, "train_steps": 25}, validation,
                             report=lambda *r: reports.append(r), report_every=10)  # fmt: skip
    assert [(s, b) for s, b, _ in reports] == [(10, 25), (20, 25), (25, 25)]
    assert value == reports[-1][2]["ndcg@10"]  # the final model's value
    once: list[tuple] = []
    fit_and_validate("itemcf", {"k": 2}, validation, report=lambda *r: once.append(r))
    assert [(s, b) for s, b, _ in once] == [(1, 1)]
    with pytest.raises(ValueError, match="drop patience"):
        fit_and_validate("stamp", {"patience": 3}, validation)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, None])
def test_knn_shrinkage_follows_the_shrunk_cosine(seed: int, k: int | None) -> None:
    split, x = random_split(seed)
    np.testing.assert_allclose(ItemCFRecommender(k=k, shrinkage=0.0).fit(split).score(np.arange(split.n_users)),
                               brute_force_itemcf(x, k), rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(ItemCFRecommender(k=k, shrinkage=3.0).fit(split).score(np.arange(split.n_users)),
                               brute_force_itemcf(x, k, shrinkage=3.0), rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(UserCFRecommender(k=k, shrinkage=3.0).fit(split).score(np.arange(split.n_users)),
                               brute_force_usercf(x, k, shrinkage=3.0), rtol=1e-5, atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="shrinkage must be >= 0"):
        UserCFRecommender(shrinkage=-1.0)
