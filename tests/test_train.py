"""Training entry point: configs, presets, CLI, every algorithm end to end, resume, run files."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from experiments.config import ALGOS, PRESETS, TrainConfig, make_config, parse_value
from experiments.train import atomic_write, atomic_write_json, main, replay_bytes_per_transition, train

th.set_num_threads(1)


def tiny(tmp_path: Path, algo: str = "dqn", **overrides) -> TrainConfig:
    """A config that trains for a few hundred steps with tiny networks on real ML-100K."""
    values = dict(
        algo=algo, runs_dir=str(tmp_path / "runs"), torch_threads=1, n_envs=2, max_steps=5,
        total_timesteps=240, learning_starts=40, batch_size=16, buffer_size=1_000, gradient_steps=1,
        target_update_interval=50, n_steps=16, n_epochs=1, embed_dim=8, dnn_hidden=(8,), net_arch=(16,),
        n_quantiles=5, eval_freq=120, checkpoint_freq=120, max_train_seconds=None,
    )
    values.update(overrides)
    return make_config("default", **values)


@pytest.fixture(scope="module")
def split():
    from recsim_env import load_movielens, split_ratings

    return split_ratings(load_movielens("ml-100k"))


# Config -------------------------------------------------------------------------------------


def test_presets_are_valid_and_paper_preset_has_the_papers_settings():
    for name in PRESETS:
        make_config(name)
    paper = make_config("paper")
    assert (paper.batch_size, paper.gamma, paper.learning_rate, paper.target_update_interval) == (128, 0.9, 0.01, 50)
    # Greedy with probability 0.9: epsilon is 0.1 for the whole run.
    assert paper.exploration_initial_eps == paper.exploration_final_eps == pytest.approx(0.1)
    assert paper.loss == "mse" and paper.max_episodes == 1000 and paper.algo == "dqn"
    assert paper.next_item_weight == 0.0 and not paper.dueling  # eq. 10: the TD loss alone
    assert not paper.mask_excluded and make_config("default").mask_excluded  # eq. 9's max over all items
    assert paper.total_timesteps == 1000 * paper.max_steps


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algo": "sac"}, "algo='sac' is unknown"),
        ({"dataset": "ml-20m"}, "dataset='ml-20m' is unknown"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"embed_dim": -4}, "embed_dim must be a positive integer"),
        ({"embed_dim": 30, "n_heads": 4}, "divisible by n_heads"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"exploration_final_eps": 2.0}, "exploration_final_eps must be in"),
        ({"batch_size": 512, "buffer_size": 100}, "exceeds buffer_size"),
        ({"algo": "ppo", "n_steps": 8, "n_envs": 2, "batch_size": 64}, "exceeds the PPO rollout"),
        ({"net_arch": (64, 0)}, "net_arch sizes must be positive"),
        ({"final_learning_rate": 0.1}, "final_learning_rate must be"),
        ({"train_rewards": (1.0, 2.0)}, "train_rewards must be 5 finite numbers"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("default", **overrides)


def test_config_round_trips_through_json_and_rejects_unknown_keys(tmp_path):
    config = make_config("paper", seed=7, net_arch=(32, 16))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.load(str(path)) == config
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"learning_rat": 0.1})
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("fast")


def test_cli_values_parse_into_the_field_types():
    assert parse_value("1e-3", float, "learning_rate") == 0.001
    assert parse_value("200_000", int, "buffer_size") == 200_000
    assert parse_value("1e5", int, "total_timesteps") == 100_000
    assert parse_value("128,64", tuple[int, ...], "net_arch") == (128, 64)
    assert parse_value("", tuple[int, ...], "net_arch") == ()
    assert parse_value("false", bool, "dueling") is False
    assert parse_value("none", int | None, "max_episodes") is None
    with pytest.raises(ValueError, match="--batch-size"):
        parse_value("12.5", int, "batch_size")


def test_cli_rejects_bad_values_before_training(tmp_path, capsys):
    runs = tmp_path / "runs"
    for argv in (["--learning-rate", "0"], ["--algo", "nope"], ["--batch-size", "abc"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--runs-dir", str(runs), "--no-progress"])
        assert exc.value.code == 2
    assert "learning_rate must be > 0" in capsys.readouterr().err
    assert not runs.exists()  # nothing was started


def test_train_rewards_apply_to_training_envs_only(split):
    from experiments.train import make_env

    config = make_config("default", train_rewards=(0.1, 0.2, 0.3, 0.4, 0.5))
    assert make_env(config, split, "train").unwrapped.reward_map == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}
    # Test environments (greedy return) keep the paper's reward: rating / 5 on a like.
    assert make_env(config, split, "test").unwrapped.reward_map == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.8, 5: 1.0}


# Replay memory ------------------------------------------------------------------------------


def test_replay_bytes_formula_matches_sb3_buffer_and_ml1m_fits_2gib():
    from stable_baselines3.common.buffers import DictReplayBuffer

    n_items = 3706  # ML-1M
    space = gym.spaces.Dict({
        "user": gym.spaces.Box(0, np.array([1, 6, 20]), shape=(3,), dtype=np.int32),
        "history": gym.spaces.Box(0, n_items, shape=(20,), dtype=np.int32),
        "liked": gym.spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
        "excluded": gym.spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
    })  # fmt: skip
    action_space = gym.spaces.Discrete(n_items)
    per = replay_bytes_per_transition(space, action_space)
    buf = DictReplayBuffer(64, space, action_space, device="cpu", n_envs=1)
    arrays = [*buf.observations.values(), *buf.next_observations.values(), buf.actions, buf.rewards,
              buf.dones, buf.timeouts]
    assert sum(a.nbytes for a in arrays) == per * 64
    assert per == 2 * (12 + 80 + 464 + 464) + 8 + 12
    assert per * make_config("default").buffer_size < 2 * 2**30
    assert make_config("default").buffer_size >= 200_000


# Atomic files -------------------------------------------------------------------------------


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"a": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text('{"half":')
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


# End to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_trains_end_to_end(algo, tmp_path):
    from experiments.evaluate import evaluate_run

    result = train(tiny(tmp_path, algo), progress=False)
    run = result.run_dir
    for name in ("config.json", "versions.json", "metrics.json", "curve.json", "model.zip", "learning_curve.png",
                 "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    assert result.model.num_timesteps >= 240
    # The default preset's in-network masking reaches every policy but MaskablePPO's (env masks).
    assert getattr(result.model.policy, "mask_excluded", False) == (algo != "maskable_ppo")
    m = result.metrics
    assert m["n_users"] == 943
    assert set(m) >= {"precision@10", "recall@10", "ndcg@10", "hit_rate@10", "greedy_mean_return"}
    assert 0 < m["greedy_mean_length"] <= 5
    assert result.popularity_metrics["precision@10"] > 0.05  # the same evaluator, a real baseline
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["agent"]["precision@10"] == pytest.approx(m["precision@10"])
    assert json.loads((run / "config.json").read_text())["algo"] == algo
    assert {"python", "torch", "stable_baselines3", "gymnasium", "numpy"} <= set(
        json.loads((run / "versions.json").read_text()))
    assert len(result.curve["validation"]) >= 2
    # The saved model reloads and evaluates to the same ranking metrics.
    again = evaluate_run(run, greedy=False)
    assert again["agent"]["precision@10"] == pytest.approx(m["precision@10"])


def test_maskable_ppo_trains_on_the_environment_masks(tmp_path, monkeypatch):
    from recsim_env.env import MovieLensRecEnv

    calls = []
    original = MovieLensRecEnv.action_masks

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(MovieLensRecEnv, "action_masks", counting)
    train(tiny(tmp_path, "maskable_ppo", total_timesteps=64, eval_freq=0, checkpoint_freq=0), progress=False)
    assert len(calls) >= 64  # one mask per environment step


def test_seed_makes_training_reproducible(tmp_path):
    a = train(tiny(tmp_path, seed=3, total_timesteps=120, eval_freq=0), run_dir=tmp_path / "a", progress=False)
    b = train(tiny(tmp_path, seed=3, total_timesteps=120, eval_freq=0), run_dir=tmp_path / "b", progress=False)
    assert a.metrics["precision@10"] == b.metrics["precision@10"]
    assert a.curve["episodes"] == b.curve["episodes"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["seed"] == 3


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    config = tiny(tmp_path, total_timesteps=160, checkpoint_freq=80)
    first = train(config, run_dir=tmp_path / "run", progress=False)
    episodes_before = list(first.curve["episodes"])
    buffer_before = first.model.replay_buffer.pos
    # Extend the budget as if the first session had been interrupted at step 160.
    longer = TrainConfig.from_dict({**config.to_dict(), "total_timesteps": 320})
    atomic_write_json(tmp_path / "run" / "config.json", longer.to_dict())
    second = train(longer, run_dir=tmp_path / "run", progress=False, resume=True)
    assert second.model.num_timesteps == 320
    # The next-item data is not saved in the model; the resumed run attached it again.
    assert second.model.next_item_weight > 0 and second.model.next_item_source is not None
    assert second.curve["episodes"][: len(episodes_before)] == episodes_before
    assert len(second.curve["episodes"]) > len(episodes_before)
    # The replay buffer came back with the checkpoint and kept filling.
    assert second.model.replay_buffer.pos == buffer_before + (320 - 160) // config.n_envs
    latest = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert latest["checkpoint"] == "step-320"
    with pytest.raises(FileNotFoundError, match="latest.json"):
        train(longer, run_dir=tmp_path / "missing", progress=False, resume=True)


# Algorithm options (agents.factory) ---------------------------------------------------------


class _MaskChecker(gym.Wrapper):
    """Counts actions that ``action_masks()`` did not allow when they were taken."""

    def __init__(self, env):
        super().__init__(env)
        self.violations = 0
        self.steps = 0

    def step(self, action):
        self.steps += 1
        self.violations += int(not self.env.unwrapped.action_masks()[int(action)])
        return self.env.step(action)


@pytest.mark.parametrize("mask_actions", [True, False])
def test_masked_exploration_only_takes_allowed_items(mask_actions, split):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.factory import build_model

    checkers = [_MaskChecker(gym.make("MovieLensRec-v0", split_data=split, max_steps=20)) for _ in range(2)]
    vec = DummyVecEnv([lambda c=c: c for c in checkers])
    model = build_model("dqn", vec, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)), net_arch=(16,), seed=0,
                        learning_starts=50, batch_size=16, buffer_size=500, exploration_fraction=0.0,
                        exploration_initial_eps=0.3, exploration_final_eps=0.3, mask_actions=mask_actions)
    model.learn(400)
    violations = sum(c.violations for c in checkers)
    assert sum(c.steps for c in checkers) >= 400
    if mask_actions:
        assert violations == 0
    else:  # SB3's greedy action repeats the same missed item: the masks would have forbidden it
        assert violations > 0


@pytest.mark.parametrize("td_loss", ["mse", "huber"])
@pytest.mark.parametrize("double_q", [False, True])
def test_dqn_update_uses_the_configured_loss_and_target(td_loss, double_q, split):
    """One gradient step's logged loss equals the loss computed by hand on the same batch."""
    from agents.factory import build_model

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    model = build_model("dqn", env, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)), net_arch=(16,), seed=0,
                        learning_starts=30, batch_size=32, buffer_size=500, gamma=0.9, td_loss=td_loss,
                        double_q=double_q, train_freq=10_000)  # fmt: skip
    model.learn(64)  # fills the buffer, no update yet (train_freq)
    th.manual_seed(1)
    np.random.seed(1)
    batch = model.replay_buffer.sample(32)
    model.replay_buffer.sample = lambda *a, **k: batch
    with th.no_grad():
        next_target = model.q_net_target(batch.next_observations)
        if double_q:
            next_q = next_target.gather(1, model.q_net(batch.next_observations).argmax(1, keepdim=True))
        else:
            next_q = next_target.max(1, keepdim=True).values
        target = batch.rewards + (1 - batch.dones) * 0.9 * next_q
        current = model.q_net(batch.observations).gather(1, batch.actions.long())
        fn = th.nn.functional.mse_loss if td_loss == "mse" else th.nn.functional.smooth_l1_loss
        expected = fn(current, target).item()
    recorded = {}
    model.logger.record = lambda key, value, exclude=None: recorded.__setitem__(key, value)
    model.train(gradient_steps=1, batch_size=32)
    assert recorded["train/loss"] == pytest.approx(expected, rel=1e-5)


def test_dueling_tied_head_scores_items_through_the_item_embeddings(split):
    from agents.factory import build_model

    env = gym.make("MovieLensRec-v0", split_data=split, mode="test", max_steps=5)
    model = build_model("dqn", env, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)), net_arch=(16,), seed=0,
                        dueling=True, tied_item_embeddings=True)
    net = model.q_net
    obs, _ = net.obs_to_tensor(env.unwrapped.start_observations(np.arange(4)))
    with th.no_grad():
        for p in net.q_net[-1].parameters():  # the zero-initialised last layer of u(s)
            p.normal_()
        net.item_bias.normal_()
        f = net.extract_features(obs, net.features_extractor)
        adv = net.q_net(f) @ net.features_extractor.item_embedding.weight[1:].T + net.item_bias
        expected = net.value_net(f) + adv - adv.mean(1, keepdim=True)
        th.testing.assert_close(net(obs), expected)
        # Changing one item's embedding changes that item's score relative to the others.
        before = net(obs)
        net.features_extractor.item_embedding.weight[1 + 7] += 1.0
        delta = net(obs) - before
    assert not th.allclose(delta[:, 7], delta[:, 8])
    with pytest.raises(ValueError, match="needs dueling"):
        build_model("dqn", env, tied_item_embeddings=True)


def test_evaluate_cli_finds_and_scores_the_newest_run(tmp_path, capsys):
    from experiments import evaluate

    result = train(tiny(tmp_path, total_timesteps=120, eval_freq=0, checkpoint_freq=0), progress=False)
    assert evaluate.find_latest_run(tmp_path / "runs", "ml-100k") == result.run_dir
    assert evaluate.main(["--runs-dir", str(tmp_path / "runs"), "--dataset", "ml-100k", "--no-greedy"]) == 0
    out = capsys.readouterr().out
    assert "precision@10" in out and "popularity" in out
    saved = json.loads((result.run_dir / "evaluation.json").read_text())
    assert saved["agent"]["precision@10"] == pytest.approx(result.metrics["precision@10"])
    out_path = tmp_path / "eval.json"
    assert evaluate.main([str(result.run_dir), "--no-greedy", "--out", str(out_path)]) == 0  # positional form
    assert json.loads(out_path.read_text())["run_dir"] == str(result.run_dir)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        evaluate.find_latest_run(tmp_path / "runs", "ml-1m")


def test_learning_curve_png_is_written_from_a_curve(tmp_path):
    from experiments.plots import plot_learning_curve, rolling_mean

    np.testing.assert_allclose(rolling_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    curve = {"episodes": [[10, 0.5, 5], [20, 1.5, 5]],
             "validation": [{"step": 20, "precision@10": 0.1, "recall@10": 0.05}],
             "validation_popularity": {"precision@10": 0.07, "recall@10": 0.06}}
    path = plot_learning_curve(curve, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]


# Auxiliary next-item loss ---------------------------------------------------------------------


def test_logged_next_items_are_real_prefixes_and_the_item_rated_next(split):
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    source = LoggedNextItems(env, seed=0)
    assert len(source) == int(env.unwrapped.max_prefixes.sum())
    obs, items = source(64)
    assert obs["history"].shape == (64, 20) and items.shape == (64,)
    picked = np.random.default_rng(0).integers(0, len(source), size=64)  # same draws as the source
    for row, (u, p, item) in enumerate(zip(source.users[picked], source.prefixes[picked], items)):
        seq = split.train_items[split.train_indptr[u]:split.train_indptr[u + 1]]
        assert item == seq[p]  # the item right after the prefix
        reset_obs, _ = env.reset(options={"user": int(u), "prefix": int(p)})
        assert obs.keys() == reset_obs.keys()  # "excluded" included: the prefix's items
        for key in reset_obs:
            np.testing.assert_array_equal(obs[key][row], reset_obs[key])
    with pytest.raises(ValueError, match="mode='train'"):
        LoggedNextItems(gym.make("MovieLensRec-v0", split_data=split, mode="test"))


def test_next_item_loss_is_added_to_the_td_loss_and_trains_the_item_embeddings(split):
    from agents.factory import build_model
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    model = build_model("dqn", env, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)), net_arch=(16,), seed=0,
                        learning_starts=30, batch_size=32, buffer_size=500, train_freq=10_000, dueling=True,
                        tied_item_embeddings=True, next_item_weight=0.5)  # fmt: skip
    with pytest.raises(RuntimeError, match="set_next_item_source"):
        model.learn(64)
        model.train(gradient_steps=1, batch_size=32)
    model.set_next_item_source(LoggedNextItems(env, seed=3))
    obs, items = LoggedNextItems(env, seed=3)(32)  # the batch the update will draw
    with th.no_grad():
        model.q_net.q_net[-1].weight.normal_()  # u(s) starts at 0: make the item rows' gradient non-zero
        logits = model.q_net(model.policy.obs_to_tensor(obs)[0]) * model.q_net.log_logit_scale.exp()
        expected = th.nn.functional.cross_entropy(logits, th.as_tensor(items)).item()
    recorded = {}
    model.logger.record = lambda key, value, exclude=None: recorded.__setitem__(key, value)
    table = model.q_net.features_extractor.item_embedding.weight
    before = table.detach().clone()
    model.train(gradient_steps=1, batch_size=32)
    assert recorded["train/next_item_loss"] == pytest.approx(expected, rel=1e-5)
    moved = (table.detach() - before).abs().sum(dim=1) > 0
    # Every labelled item's embedding row is trained; the source is not saved with the model.
    assert moved[th.as_tensor(items) + 1].all()
    assert "next_item_source" in model._excluded_save_params()


def test_next_item_loss_needs_the_dueling_head(split):
    from agents.factory import build_model

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    with pytest.raises(ValueError, match="needs the dueling head"):
        build_model("dqn", env, next_item_weight=1.0)
    with pytest.raises(ValueError, match="next_item_weight must be"):
        build_model("dqn", env, dueling=True, next_item_weight=-1.0)
    with pytest.raises(ValueError, match="needs dueling=True"):
        make_config("default", next_item_weight=1.0, dueling=False)
    assert make_config("default", algo="ppo", next_item_weight=1.0).algo == "ppo"  # DQN-only: ignored
