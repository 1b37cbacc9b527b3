"""examples/tianshou_dqn.py: Tianshou 2.x masked DQN on MovieLensRec-v0, at a tiny budget.

Skipped as a whole when the optional ``tianshou`` package is not installed (it is not part of
the ``agents``/``dev`` extras), and, like the other real-data tests, without the ML-100K files.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("tianshou")
import torch  # noqa: E402  (after the skip: torch comes with tianshou's requirements)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tianshou_dqn.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tianshou_dqn_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def _keep_globals():
    """The example seeds numpy's and torch's global generators and sets torch's thread count;
    give other tests theirs back."""
    np_state, torch_state = np.random.get_state(), torch.random.get_rng_state()
    threads = torch.get_num_threads()
    yield
    np.random.set_state(np_state)
    torch.random.set_rng_state(torch_state)
    torch.set_num_threads(threads)


def test_tianshou_dqn_example_tiny(ml100k_dir, _keep_globals, capsys) -> None:
    example = _load_example()
    result = example.main(["--tiny", "--seed", "0", "--eval-users", "5"])
    out = capsys.readouterr().out

    n_items = result["n_items"]
    assert n_items == 1682  # ML-100K
    # the budget was spent: at least the tiny number of env steps, and gradient steps were taken
    assert example.TINY_STEPS <= result["train_steps"] < example.TINY_STEPS + 50
    assert result["update_steps"] > 0

    for name in ("greedy", "random"):
        ev = result[name]
        assert ev["n_users"] == 5
        # Tianshou's mask: neither the greedy argmax nor epsilon-greedy picks an excluded item
        assert ev["n_invalid"] == 0, name
        assert ev["n_repeats"] == 0, name
        assert ev["q_shape"] == (1, n_items)
        returns = np.asarray(ev["returns"], dtype=float)
        assert returns.shape == (5,)
        assert np.all(np.isfinite(returns)) and np.all(returns >= 0.0)
        # default reward map: 0.8 or 1.0 per like, at most max_steps (50) recommendations
        assert np.all(returns <= 50.0)
        assert math.isclose(ev["mean_return"], float(returns.mean()))
        assert 1.0 <= ev["mean_length"] <= 50.0
        # each like earns 0.8 or 1.0, so the return is bracketed by the number of likes
        assert 0.8 * ev["mean_likes"] - 1e-9 <= ev["mean_return"] <= ev["mean_likes"] + 1e-9

    assert "greedy DQN return" in out
    assert "greedy excluded/repeated recommendations: 0/0" in out
    assert result["seconds"] < 120


def test_mask_wrapper_and_network(ml100k_dir) -> None:
    """The wrapper's mask is the env's action mask; masked items never win the argmax."""
    example = _load_example()
    env = example.make_env("train")
    obs, _ = env.reset(seed=3)
    base = env.unwrapped
    assert obs["mask"].dtype == bool
    np.testing.assert_array_equal(obs["mask"], base.action_masks())
    assert set(obs["obs"]) == {"history", "liked"}

    net = example.ItemQNet(base.n_items)
    batch = example.as_batch(obs)
    q, _ = net(batch.obs.obs)
    assert q.shape == (1, base.n_items)
    # the features are the multi-hot history (tokens - 1) and the unpacked liked set
    feats = net.features(batch.obs.obs)[0].numpy()
    hist_items = obs["obs"]["history"][obs["obs"]["history"] > 0] - 1
    assert set(np.flatnonzero(feats[: base.n_items])) == set(hist_items.tolist())
    liked = example.unpack_bits(obs["obs"]["liked"], base.n_items)
    np.testing.assert_array_equal(feats[base.n_items :] > 0, liked)

    from gymnasium import spaces
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy

    policy = DiscreteQLearningPolicy(model=net, action_space=spaces.Discrete(base.n_items))
    with torch.no_grad():
        # make a forbidden item the unmasked favourite: the masked argmax must still skip it
        forbidden = int(np.flatnonzero(~obs["mask"])[0])
        net.mlp[-1].bias[forbidden] = 1e6
        act = int(policy(batch).act[0])
    assert obs["mask"][act]
    assert act != forbidden
    env.close()
