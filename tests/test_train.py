"""Training entry point: configs, presets, CLI, every algorithm end to end, resume, run files."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from agents.config import ALGO_FIELDS, ALGOS, PRESETS, TrainConfig, make_config, parse_value
from agents.training import SetupError, TrainingInterrupted, atomic_write_json, train
from experiments.train import main

th.set_num_threads(1)


def tiny(tmp_path: Path, algo: str = "dqn", **overrides) -> TrainConfig:
    """A config that trains for a few hundred steps with tiny networks on real ML-100K."""
    values = dict(
        algo=algo, runs_dir=str(tmp_path / "runs"), torch_threads=1, n_envs=2, max_steps=5,
        total_timesteps=240, learning_starts=40, batch_size=16, buffer_size=1_000, gradient_steps=1,
        target_update_interval=50, n_steps=16, n_epochs=1, embed_dim=8, dnn_hidden=(8,), net_arch=(16,),
        n_quantiles=5, eval_freq=120, checkpoint_freq=120, max_train_seconds=None,
        pretrain_steps=0,  # the default's 1,500 steps take seconds even on tiny networks
    )
    # The shared budget names every algorithm's sizes; each algorithm gets the ones it takes.
    values = {k: v for k, v in values.items() if algo in ALGO_FIELDS.get(k, (algo,))}
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
    # An episode of the paper is a pass over every training user; the step budget is only a bound.
    assert paper.episode == "pass" and paper.total_timesteps >= 1000 * 6040 * paper.max_steps
    # The paper's encoder (section 3.2) whatever the default's: one non-causal layer, sinusoidal
    # positions, mean-pooled; PyTorch's init; no pre-training, constant learning rate.
    encoder = ("causal", "readout", "positions", "dropout", "embedding_init_std", "pretrain_steps",
               "final_learning_rate", "interests", "n_layers", "feed_forward")
    assert [getattr(paper, f) for f in encoder] == [False, "mean", "sinusoidal", 0.0, None, 0, None, "both", 1, False]
    # default-v1 is the default before the window loss: the paper's encoder with the SQN-style pair loss.
    v1 = make_config("default-v1")
    assert [getattr(v1, f) for f in encoder] == [False, "mean", "sinusoidal", 0.0, None, 0, None, "both", 1, False]
    assert (v1.next_item_weight, v1.next_item_positions, v1.total_timesteps) == (0.1, "last", 1_800_000)
    short = make_config("paper-1000-sessions")
    assert short.episode == "session" and short.total_timesteps == 1000 * short.max_steps
    assert {f: v for f, v in short.to_dict().items() if paper.to_dict()[f] != v} == dict(
        preset="paper-1000-sessions", name="lsrwrl-paper-1000-sessions", episode="session",
        total_timesteps=50_000)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algo": "sac"}, "algo='sac' is unknown"),
        ({"dataset": "ml-7m"}, "dataset='ml-7m' is unknown"),
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
        ({"device": "cuda:x"}, "device='cuda:x'"),
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


def test_default_preset_takes_its_ml1m_values_on_ml1m_and_explicit_options_win():
    import argparse

    from agents.config import DATASET_PRESETS, add_config_arguments, config_from_args

    ml100k, ml1m = make_config("default"), make_config("default", dataset="ml-1m")
    assert (ml100k.history_len, ml100k.embed_dim) == (20, 32)
    assert (ml1m.history_len, ml1m.embed_dim) == (50, 64)
    # Nothing else differs, and only the default preset has per-dataset values.
    assert {f for f, v in ml1m.to_dict().items() if ml100k.to_dict()[f] != v} == {"dataset", "history_len", "embed_dim"}
    assert set(DATASET_PRESETS) == {"default"}
    assert make_config("default-v1", dataset="ml-1m").history_len == 20
    assert make_config("default", dataset="ml-1m", history_len=20).history_len == 20
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cli = config_from_args(parser.parse_args(["--dataset", "ml-1m", "--embed-dim", "16"]))
    assert (cli.history_len, cli.embed_dim) == (50, 16)


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


def test_train_rewards_apply_to_training_envs_only(split):
    from agents.make import make_env

    config = make_config("default", train_rewards=(0.1, 0.2, 0.3, 0.4, 0.5))
    assert make_env(config, split, "train").unwrapped.reward_map == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}
    # Test environments (greedy return) keep the paper's reward: rating / 5 on a like.
    assert make_env(config, split, "test").unwrapped.reward_map == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.8, 5: 1.0}


# Replay memory ------------------------------------------------------------------------------


def test_replay_bytes_formula_matches_sb3_buffer_and_ml1m_fits_2gib():
    from stable_baselines3.common.buffers import DictReplayBuffer

    from agents.replay import dict_replay_bytes_per_transition, replay_bytes_per_transition

    n_items = 3706  # ML-1M
    space = gym.spaces.Dict({
        "user": gym.spaces.Box(0, np.array([1, 6, 20]), shape=(3,), dtype=np.int32),
        "history": gym.spaces.Box(0, n_items, shape=(20,), dtype=np.int32),
        "liked": gym.spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
        "excluded": gym.spaces.Box(0, 255, shape=((n_items + 7) // 8,), dtype=np.uint8),
    })  # fmt: skip
    action_space = gym.spaces.Discrete(n_items)
    per = dict_replay_bytes_per_transition(space, action_space)
    buf = DictReplayBuffer(64, space, action_space, device="cpu", n_envs=1)
    arrays = [*buf.observations.values(), *buf.next_observations.values(), buf.actions, buf.rewards,
              buf.dones, buf.timeouts]
    assert sum(a.nbytes for a in arrays) == per * 64 == replay_bytes_per_transition(buf) * 64
    assert per == 2 * (12 + 80 + 464 + 464) + 8 + 12
    assert per * make_config("default").buffer_size < 2 * 2**30
    assert make_config("default").buffer_size >= 200_000


# Atomic files -------------------------------------------------------------------------------


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
    if algo in ("dqn", "qrdqn"):  # the compact replay buffer, its measured size recorded
        from agents.replay import CompactDictReplayBuffer, dict_replay_bytes_per_transition

        buffer = result.model.replay_buffer
        assert type(buffer) is CompactDictReplayBuffer
        assert saved["training"]["replay_bytes_per_transition"] == round(buffer.bytes_per_transition, 1)
        assert buffer.bytes_per_transition < dict_replay_bytes_per_transition(buffer.observation_space,
                                                                              buffer.action_space)
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


def test_budget_is_in_steps_so_the_same_seed_gives_the_same_metrics(tmp_path):
    # No preset stops by wall-clock time: a busy machine must not change the result.
    assert all(make_config(name).max_train_seconds is None for name in PRESETS)
    a = train(tiny(tmp_path, seed=3, total_timesteps=80, eval_freq=40), run_dir=tmp_path / "a", progress=False)
    b = train(tiny(tmp_path, seed=3, total_timesteps=80, eval_freq=40), run_dir=tmp_path / "b", progress=False)
    assert a.metrics == b.metrics  # every metric, bit for bit
    assert a.curve["episodes"] == b.curve["episodes"]
    assert [row["precision@10"] for row in a.curve["validation"]] == [row["precision@10"] for row in b.curve["validation"]]
    # The stop is by steps: exactly the budget, and the run says it is complete.
    assert a.model.num_timesteps == a.training["env_steps"] == 80
    assert a.training["complete"] is True and a.training["stop_reason"] == "total_timesteps reached"
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["complete"] is True and saved["training"]["env_steps"] == saved["training"]["total_timesteps"] == 80
    assert json.loads((tmp_path / "a" / "config.json").read_text())["seed"] == 3
    # What the floats depend on besides the seed is recorded: the pinned kernel path by default.
    assert {k: saved["training"][k] for k in ("kernel_path", "cpu_capability", "mkl_cbwr", "torch_threads")} == {
        "kernel_path": "avx2", "cpu_capability": "AVX2", "mkl_cbwr": "AVX2", "torch_threads": tiny(tmp_path).torch_threads}


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
    # The (compact) replay buffer came back with the checkpoint and kept filling.
    assert type(second.model.replay_buffer).__name__ == "CompactDictReplayBuffer"
    assert second.model.replay_buffer.pos == buffer_before + (320 - 160) // config.n_envs
    latest = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert latest["checkpoint"] == "step-320"
    with pytest.raises(SetupError, match="does not exist"):
        train(longer, run_dir=tmp_path / "missing", progress=False, resume=True)


# Command line: clean errors, run directories, budgets, signals ------------------------------


def tiny_args(tmp_path: Path, **overrides) -> list[str]:
    """``tiny()``'s settings as command-line options (a few seconds of training)."""
    values = dict(
        runs_dir=tmp_path / "runs", torch_threads=1, n_envs=2, max_steps=5, total_timesteps=80,
        learning_starts=20, batch_size=16, buffer_size=1_000, target_update_interval=50, embed_dim=8,
        dnn_hidden=8, net_arch=16, eval_freq=0, checkpoint_freq=0, pretrain_steps=0,
    )
    values.update(overrides)
    return [item for key, value in values.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def test_every_config_option_has_a_help_text():
    from experiments.train import build_parser

    helps = {action.dest: action.help for action in build_parser()._actions}
    for name in TrainConfig.__dataclass_fields__:
        if name != "preset":
            assert helps[name].split("(default preset")[0].strip(), f"--{name.replace('_', '-')} has no help"
    assert "rating" in helps["train_rewards"] and "training" in helps["train_rewards"]


def test_help_labels_give_the_per_dataset_and_per_algorithm_values_that_replace_the_default():
    from experiments.train import build_parser

    helps = {action.dest: " ".join(action.help.split()) for action in build_parser()._actions}
    # What `make train DATASET=ml-1m` and `--algo ppo` actually use, next to the default preset's value.
    assert "(default preset: 20; ml-1m: 50)" in helps["history_len"]
    assert "(default preset: 0.1; ppo, maskable_ppo, a2c: 1.0)" in helps["next_item_weight"]
    # Every algorithm that takes n_quantiles replaces the plain value, so it is not shown.
    assert "(default preset: qrdqn: 10; algos: qrdqn)" in helps["n_quantiles"]
    for name in ("gamma", "learning_rate"):
        assert make_config("default", algo="ppo", dataset="ml-1m").__dict__[name] == TrainConfig().__dict__[name]
        assert f"(default preset: {getattr(TrainConfig(), name)})" in helps[name]


def test_errors_are_one_message_without_traceback_usage_or_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    empty_copy = tmp_path / "data"
    (empty_copy / "ml-100k").mkdir(parents=True)
    cases = [
        (["--batch-size", "abc"], "--batch-size: cannot parse"),
        (["--learning-rate", "0"], "learning_rate must be > 0"),
        (["--no-such-option"], "unrecognized arguments"),
        # An explicit --data-dir without the dataset is an error, never a switch to other data.
        (["--data-dir", str(tmp_path / "nowhere")], "nowhere, which does not exist"),
        (["--data-dir", str(empty_copy)], "u.data, u.user, u.item, u.occupation missing"),
    ]
    if not th.cuda.is_available():
        cases.append((["--device", "cuda"], "sees no CUDA GPU"))
    for argv, message in cases:
        try:
            status = main([*argv, "--runs-dir", str(runs), "--no-progress"])
        except SystemExit as exc:  # argparse's own errors exit from parse_args
            status = exc.code
        err = capsys.readouterr().err
        assert status == 2, argv
        assert message in err, (argv, err)
        assert "Traceback" not in err and "usage:" not in err, err
        assert len(err.splitlines()) <= 4, err
    assert not runs.exists()  # nothing was created


def test_wall_clock_cap_stops_the_run_incomplete_and_the_report_says_so(tmp_path, capsys, ml100k_split):
    run = tmp_path / "capped"
    status = main([*tiny_args(tmp_path, max_train_seconds=1e-6, total_timesteps=400), "--run-dir", str(run),
                   "--no-progress"])
    assert status == 0
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["complete"] is False and saved["training"]["complete"] is False
    assert "max_train_seconds" in saved["training"]["stop_reason"]
    assert saved["training"]["env_steps"] < 400 == saved["training"]["total_timesteps"]
    # --no-progress still prints the report; INCOMPLETE opens and closes it.
    report = capsys.readouterr().out.strip().splitlines()
    assert report[0].startswith("INCOMPLETE RUN") and report[-1].startswith("INCOMPLETE RUN")
    assert any(line.startswith("precision@10") for line in report)
    # Each average names its users: ranking over users with a test item, greedy return over
    # users with a liked one (the users a test episode can start from).
    n_test = np.diff(ml100k_split.test_indptr)
    liked = np.add.reduceat(ml100k_split.test_ratings >= 4, ml100k_split.test_indptr[:-1]) * (n_test > 0)
    assert saved["agent"]["n_users"] == int((n_test > 0).sum()) == 943
    assert saved["agent"]["greedy_n_users"] == int((liked > 0).sum()) == 907
    assert "mean over the 943 users with a test item" in "\n".join(report)
    assert "over the 907 users with a liked test item" in "\n".join(report)


def test_an_existing_run_directory_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*tiny_args(tmp_path), "--run-dir", str(run), "--no-progress"]) == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    # A second run into the same folder: refused, nothing touched.
    assert main([*tiny_args(tmp_path, seed=1), "--run-dir", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"--resume {run}" in err and "--overwrite" in err
    # Resuming a finished run: refused too, with what to do instead.
    assert main(["--resume", str(run), "--no-progress"]) == 2
    assert "is finished" in capsys.readouterr().err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # --overwrite replaces the run: none of the old files survive.
    (run / "notes.txt").write_text("old")
    assert main([*tiny_args(tmp_path, seed=1), "--run-dir", str(run), "--overwrite", "--no-progress"]) == 0
    assert not (run / "notes.txt").exists()
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    assert [p.name for p in (run / "checkpoints").iterdir() if p.is_dir()] == ["step-80"]
    # A folder that is not a run directory is never deleted, even with --overwrite.
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    assert main([*tiny_args(tmp_path), "--run-dir", str(other), "--overwrite", "--no-progress"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "keep me" and len(list(other.iterdir())) == 1
    assert not list(tmp_path.glob(".*replaced*"))  # the old run's files were deleted, not left aside


def test_a_run_directory_in_use_by_another_process_is_refused(tmp_path):
    from agents.run_dir import RunDirLock

    run = tmp_path / "busy"
    run.mkdir()
    with RunDirLock(run):  # as another training process would hold it
        with pytest.raises(SetupError, match="in use by another training process"):
            train(tiny(tmp_path), run_dir=run, progress=False)
    assert [p.name for p in run.iterdir()] == [".lock"]  # nothing written, the folder kept


def test_auto_named_run_directories_never_collide(tmp_path, monkeypatch):
    from datetime import datetime

    import agents.run_dir as run_dir_module

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2025, 1, 1, 12, 0, 0)

    monkeypatch.setattr(run_dir_module, "datetime", Frozen)
    made = [run_dir_module.new_run_dir(tmp_path, "lsrwrl") for _ in range(3)]
    assert [p.name for p in made] == ["lsrwrl-20250101-120000", "lsrwrl-20250101-120000-2",
                                      "lsrwrl-20250101-120000-3"]


def _signal_during_training(monkeypatch, signum: int) -> None:
    """Send ``signum`` to this process at the first validation, i.e. inside ``model.learn``."""
    import os
    import threading

    from agents.training import _Runner

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    original = _Runner.validate

    def validate_then_signal(self, model):
        original(self, model)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(_Runner, "validate", validate_then_signal)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_prints_the_resume_command_last(signum, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _signal_during_training(monkeypatch, signum)
    status = main([*tiny_args(tmp_path, total_timesteps=120, eval_freq=20), "--run-dir", str(run), "--no-progress"])
    assert status == 128 + signum  # 143 for SIGTERM, 130 for SIGINT
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1].strip() == f"python -m experiments.train --resume {run}"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    assert 20 <= int(latest.removeprefix("step-")) < 120  # saved where the signal stopped it
    assert not (run / "metrics.json").exists()  # nothing evaluated: the run is not finished
    if signum == signal.SIGTERM:  # the printed command finishes the run
        monkeypatch.undo()
        assert main(["--resume", str(run), "--no-progress"]) == 0
        saved = json.loads((run / "metrics.json").read_text())
        assert saved["complete"] is True and saved["training"]["env_steps"] == 120


def test_a_run_that_dies_before_its_first_periodic_checkpoint_can_be_resumed(tmp_path, monkeypatch):
    from agents.training import _Runner

    def crash(self, model):
        raise RuntimeError("power cut")  # as a SIGKILL or a crash: no handler runs

    monkeypatch.setattr(_Runner, "validate", crash)
    config = tiny(tmp_path, total_timesteps=80, eval_freq=20, checkpoint_freq=100_000)
    with pytest.raises(RuntimeError, match="power cut"):
        train(config, run_dir=tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())["checkpoint"] == "step-0"
    monkeypatch.undo()
    result = train(config, run_dir=tmp_path / "run", progress=False, resume=True)
    assert result.training["complete"] and result.model.num_timesteps == 80


def test_unfinished_run_finds_a_killed_run_of_the_same_config_and_nothing_else(tmp_path, monkeypatch):
    import dataclasses

    from agents.training import _Runner, unfinished_run

    config = tiny(tmp_path, total_timesteps=160, eval_freq=40, checkpoint_freq=40)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # train_rewards a tuple again
    assert unfinished_run(config) is None
    calls = []
    original = _Runner.validate

    def crash_at_the_second_evaluation(self, model):
        calls.append(model.num_timesteps)
        if len(calls) == 2:
            raise RuntimeError("power cut")  # as a SIGKILL: no handler runs
        return original(self, model)

    monkeypatch.setattr(_Runner, "validate", crash_at_the_second_evaluation)
    with pytest.raises(RuntimeError, match="power cut"):
        train(config, progress=False)
    monkeypatch.undo()
    (killed,) = (tmp_path / "runs").iterdir()
    # Found although the run recorded its "auto" catalogue settings as decided ("full").
    assert config.next_item_loss == "auto" and json.loads((killed / "config.json").read_text())["next_item_loss"] == "full"
    assert unfinished_run(config) == killed
    assert unfinished_run(dataclasses.replace(config, seed=config.seed + 1)) is None  # another run's settings
    result = train(config, unfinished_run(config), progress=False, resume=True)
    assert result.training["complete"] and result.model.num_timesteps == 160
    assert unfinished_run(config) is None  # finished: nothing to continue


def test_checkpoints_do_not_change_the_floats(tmp_path):
    """Why a search trial may checkpoint at every evaluation (experiments.search)."""
    runs = [train(tiny(tmp_path / str(freq), total_timesteps=160, eval_freq=40, checkpoint_freq=freq), progress=False)
            for freq in (0, 40)]
    assert runs[0].metrics == runs[1].metrics
    for a, b in zip(runs[0].model.policy.state_dict().values(), runs[1].model.policy.state_dict().values()):
        assert th.equal(a, b)


def test_a_signal_before_training_leaves_no_run_directory(tmp_path, monkeypatch):
    import os
    import threading

    import agents.training as train_module

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    original = train_module.make_train_vec_env

    def signal_then_make(config, split):  # SIGTERM while the environments are being built
        os.kill(os.getpid(), signal.SIGTERM)
        return original(config, split)

    monkeypatch.setattr(train_module, "make_train_vec_env", signal_then_make)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny(tmp_path), progress=False)
    assert info.value.checkpoint is None and info.value.exit_status == 143
    assert not list((tmp_path / "runs").iterdir())  # the half-made run directory was removed


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
    assert "precision@10" in out and "popularity" in out and "users with a test item" in out
    saved = json.loads((result.run_dir / "evaluation.json").read_text())
    assert saved["agent"]["precision@10"] == pytest.approx(result.metrics["precision@10"])
    out_path = tmp_path / "eval.json"
    assert evaluate.main([str(result.run_dir), "--no-greedy", "--out", str(out_path)]) == 0  # positional form
    assert json.loads(out_path.read_text())["run_dir"] == str(result.run_dir)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        evaluate.find_latest_run(tmp_path / "runs", "ml-1m")


def test_learning_curve_png_is_written_from_a_curve(tmp_path):
    from agents.plots import plot_learning_curve, rolling_mean

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
    obs, items = source(64)
    assert obs["history"].shape == (64, 20) and items.shape == (64,)
    picked = np.random.default_rng(0).integers(0, len(source), size=64)  # same draws as the source
    for row, (u, p, item) in enumerate(zip(source.users[picked], source.prefixes[picked], items)):
        seq = split.train_items[split.train_indptr[u]:split.train_indptr[u + 1]]
        assert item == seq[p]  # the item right after the prefix
    # Where the environment can start an episode, the states are exactly its start states.
    base = env.unwrapped
    valid = source.prefixes <= base.max_prefixes[source.users]
    ours = source.observations(source.users[valid], source.prefixes[valid])
    theirs = base.start_observations(source.users[valid], source.prefixes[valid])
    assert set(ours) == set(theirs) == set(base.observation_space.spaces)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype
        np.testing.assert_array_equal(ours[key], theirs[key])
    with pytest.raises(ValueError, match="mode='train'"):
        LoggedNextItems(gym.make("MovieLensRec-v0", split_data=split, mode="test"))


def test_logged_next_items_include_the_pairs_after_the_last_liked_train_item(split):
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    base = env.unwrapped
    source = LoggedNextItems(env, seed=0)
    n_train = np.diff(split.train_indptr)
    # Every prefix that has a next item, not only those an episode can start from.
    assert len(source) == int((n_train - 1).sum()) == 79_057
    tail = source.prefixes > base.max_prefixes[source.users]
    assert int(tail.sum()) == 79_057 - int(base.max_prefixes.sum()) == 1_554
    # Such a state follows the same rules: last 20 items (+1) front-padded, liked set packed.
    u, p = int(source.users[tail][0]), int(source.prefixes[tail][0])
    obs = source.observations(np.array([u]), np.array([p]))
    seq = split.train_items[split.train_indptr[u]:split.train_indptr[u + 1]]
    ratings = split.train_ratings[split.train_indptr[u]:split.train_indptr[u + 1]]
    window = seq[:p][-20:] + 1
    np.testing.assert_array_equal(obs["history"][0], np.concatenate([np.zeros(20 - window.size), window]))
    liked = np.zeros(split.n_items, dtype=bool)
    liked[seq[:p][ratings[:p] >= 4]] = True
    np.testing.assert_array_equal(obs["liked"][0], np.packbits(liked, bitorder="little"))
    np.testing.assert_array_equal(obs["user"][0], split.data.user_features[u])
    seen = np.zeros(split.n_items, dtype=bool)  # nothing recommended yet: excluded = the prefix
    seen[seq[:p]] = True
    np.testing.assert_array_equal(obs["excluded"][0], np.packbits(seen, bitorder="little"))
    # A field the sampler cannot build is an error, not a state missing that field.
    base.observation_space = gym.spaces.Dict({**base.observation_space.spaces,
                                              "extra": gym.spaces.Box(0, 1, (3,), np.uint8)})
    with pytest.raises(ValueError, match="'extra'"):
        LoggedNextItems(env)


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
    with pytest.raises(ValueError, match="need dueling=True"):
        make_config("default", next_item_weight=1.0, dueling=False)
    assert make_config("default", algo="ppo", next_item_weight=1.0).algo == "ppo"  # every algorithm takes it


def test_td_weight_zero_trains_by_the_next_item_loss_alone(split):
    """td_weight=0: the update never samples the replay buffer, its loss is the next-item loss."""
    from agents.factory import build_model
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    model = build_model("dqn", env, extractor_kwargs=dict(embed_dim=8, dnn_hidden=(8,)), net_arch=(16,), seed=0,
                        learning_starts=30, batch_size=16, buffer_size=500, train_freq=10_000, dueling=True,
                        tied_item_embeddings=True, next_item_weight=0.5, td_weight=0.0)  # fmt: skip
    model.set_next_item_source(LoggedNextItems(env, seed=3))
    model.learn(64)

    def no_sampling(*args, **kwargs):
        raise AssertionError("td_weight=0 sampled the replay buffer")

    model.replay_buffer.sample = no_sampling
    recorded = {}
    model.logger.record = lambda key, value, exclude=None: recorded.__setitem__(key, value)
    table = model.q_net.features_extractor.item_embedding.weight
    before = table.detach().clone()
    model.train(gradient_steps=2, batch_size=16)
    assert "train/loss" not in recorded and recorded["train/next_item_loss"] > 0
    assert not th.equal(table.detach(), before)
    with pytest.raises(ValueError, match="no loss to train"):
        build_model("dqn", env, dueling=True, next_item_weight=0.0, td_weight=0.0)
    with pytest.raises(ValueError, match="td_weight must be"):
        build_model("dqn", env, dueling=True, td_weight=-1.0)
    with pytest.raises(ValueError, match="no loss to train"):
        make_config("default", next_item_weight=0.0, td_weight=0.0)
    with pytest.raises(ValueError, match=r"td_weight \(taken by dqn\)"):
        make_config("default", algo="ppo", td_weight=0.5)


# All-positions next-item loss: logged windows, one causal pass, pre-training -------------------


def test_logged_windows_are_histories_with_the_next_item_of_every_slot(split):
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    source = LoggedNextItems(env, seed=0)
    users = np.array([0, 0, 5, 17, 300])
    ends = np.array([1, 7, 20, 60, 33])
    windows, targets = source.window_batch(users, ends)
    assert targets.shape == windows["history"].shape == (5, 20)
    for row, (u, e) in enumerate(zip(users, ends)):
        seq = split.train_items[split.train_indptr[u]:split.train_indptr[u + 1]]
        ratings = split.train_ratings[split.train_indptr[u]:split.train_indptr[u + 1]]
        # The window is the history of the state after e items; slot t's target is the item after it.
        np.testing.assert_array_equal(windows["history"][row], source.observations(users[[row]], ends[[row]])["history"][0])
        first = e - 20  # train index of slot 0 (negative: padding)
        for t in range(20):
            if first + t < 0:
                assert windows["history"][row, t] == 0 and targets[row, t] == -1
            else:
                assert targets[row, t] == seq[first + t + 1]
                assert windows["history_liked"][row, t] == (ratings[first + t] >= 4)
        before = source.observations(users[[row]], np.array([max(first, 0)]))
        np.testing.assert_array_equal(windows["liked_before"][row], before["liked"][0])
        np.testing.assert_array_equal(windows["excluded_before"][row], before["excluded"][0])
    # Over all possible draws, every (prefix, next item) pair is a target exactly 20 times.
    _, every = source.window_batch(source.window_users, source.window_ends)
    pair_id = np.where(every >= 0, source.window_users[:, None] * 10_000 + every, -1)
    counts = np.unique(pair_id[pair_id >= 0], return_counts=True)[1]
    assert counts.size == len(source) and set(counts.tolist()) == {20}


class _FixedWindows:
    """A next-item source that always hands out the same logged windows."""

    def __init__(self, source, users, ends):
        self.batch = source.window_batch(np.asarray(users), np.asarray(ends))

    def windows(self, n):
        return self.batch


def _window_model(env, **kwargs):
    from agents.factory import build_model

    th.manual_seed(0)
    options = dict(embed_dim=8, dnn_hidden=(8,), causal=True, readout="last", positions="relative",
                   feed_forward=True, layer_norm=True)
    model = build_model("dqn", env, extractor_kwargs=options, net_arch=(16,), seed=0, learning_starts=10,
                        batch_size=8, buffer_size=200, dueling=True, tied_item_embeddings=True,
                        next_item_weight=1.0, next_item_positions="all", **kwargs)  # fmt: skip
    with th.no_grad():
        model.q_net.q_net[-1].weight.normal_()  # u(s) starts at 0: give the items a ranking
    return model


@pytest.mark.parametrize("mask_excluded", [True, False])
def test_window_loss_is_the_mean_pairwise_loss_over_every_position(mask_excluded, split):
    """Windows that start at a user's first item: every position's state is exactly a logged state,
    so the one-pass loss equals the pairwise loss of those states (their own excluded items masked)."""
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    model = _window_model(env, mask_excluded=mask_excluded)
    logged = LoggedNextItems(env, seed=0)
    users, ends = np.array([0, 3, 9, 40]), np.array([20, 12, 5, 1])  # ends <= 20: no item before the window
    model.set_next_item_source(_FixedWindows(logged, users, ends))
    model.policy.set_training_mode(False)
    one_pass = model.next_item_loss().item()
    pair_users = np.concatenate([np.full(e, u) for u, e in zip(users, ends)])
    prefixes = np.concatenate([np.arange(1, e + 1) for e in ends])
    obs = model.policy.obs_to_tensor(logged.observations(pair_users, prefixes))[0]
    items = [split.train_items[split.train_indptr[u] + p] for u, p in zip(pair_users, prefixes)]
    with th.no_grad():
        logits = model.q_net(obs) * model.q_net.log_logit_scale.exp()
        if mask_excluded:
            from agents.masking import mask_excluded as mask

            logits = mask(logits, obs)
        expected = th.nn.functional.cross_entropy(logits, th.as_tensor(np.array(items), dtype=th.long)).item()
    assert one_pass == pytest.approx(expected, rel=1e-4)
    # Windows that start later: the last position is still exactly the logged state's.
    late = _FixedWindows(logged, [0, 9], [100, 40])
    feats = model.q_net.features_extractor.sequence_features(
        {k: th.as_tensor(v) for k, v in late.batch[0].items()})[:, -1]
    states = model.policy.obs_to_tensor(logged.observations(np.array([0, 9]), np.array([100, 40])))[0]
    th.testing.assert_close(feats, model.q_net.features_extractor(states), rtol=1e-4, atol=1e-5)


def test_all_positions_pretraining_learns_a_tiny_sequence_pattern():
    """Users who all watch items in one cyclic order: the next item becomes the top Q-value."""
    from agents.factory import build_model
    from agents.next_item import LoggedNextItems
    from recsim_env.dataset import MovieLensData, Split

    n_items, n_users, length = 12, 24, 16
    rng = np.random.default_rng(0)
    seqs = [(int(rng.integers(n_items)) + np.arange(length)) % n_items for _ in range(n_users)]
    seqs = [np.array(list(dict.fromkeys(s.tolist()))) for s in seqs]  # one rating per user and item
    user = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)]).astype(np.int32)
    item = np.concatenate(seqs).astype(np.int32)
    rating = np.full(item.size, 5, np.int8)
    data = MovieLensData(
        name="cycle", user=user, item=item, rating=rating, timestamp=np.arange(item.size, dtype=np.int64),
        user_features=np.zeros((n_users, 3), np.int32), user_raw_ids=np.arange(n_users, dtype=np.int64),
        item_raw_ids=np.arange(n_items, dtype=np.int64), item_titles=np.array(["x"] * n_items, dtype=object),
        item_years=np.full(n_items, 1999, np.int32), item_genres=np.zeros((n_items, 1), bool), genre_names=("Drama",),
    )  # fmt: skip
    lens = np.array([len(s) for s in seqs])
    n_train = lens - 2
    train_idx = np.concatenate([np.arange(a, a + n) for a, n in zip(np.r_[0, np.cumsum(lens)[:-1]], n_train)])
    test_idx = np.setdiff1d(np.arange(item.size), train_idx)
    indptr = lambda n: np.r_[0, np.cumsum(n)].astype(np.int64)  # noqa: E731
    tiny = Split(data, "temporal", 0.8, 0, indptr(n_train), item[train_idx], rating[train_idx],
                 data.timestamp[train_idx], indptr(lens - n_train), item[test_idx], rating[test_idx],
                 data.timestamp[test_idx])  # fmt: skip
    env = gym.make("MovieLensRec-v0", split_data=tiny, max_steps=5, history_len=6)
    th.manual_seed(0)
    model = build_model("dqn", env, extractor_kwargs=dict(embed_dim=16, dnn_hidden=(16,), causal=True, readout="last",
                                                          positions="relative"),
                        net_arch=(32,), seed=0, learning_rate=1e-2, dueling=True, tied_item_embeddings=True,
                        mask_excluded=True, next_item_positions="all", next_item_batch_size=16)  # fmt: skip
    model.set_next_item_source(LoggedNextItems(env, seed=0))
    losses = model.pretrain(150)
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    # Scored from the whole train history (test mode), the first test item is the top item.
    test_env = gym.make("MovieLensRec-v0", split_data=tiny, mode="test", history_len=6)
    from agents.scoring import make_score_fn

    scores = make_score_fn(model, test_env)(np.arange(n_users))
    first_test = item[test_idx][tiny.test_indptr[:-1]]
    assert (scores.argmax(axis=1) == first_test).mean() >= 0.9
    # The target network starts from the pre-trained weights.
    for a, b in zip(model.q_net.parameters(), model.q_net_target.parameters()):
        assert th.equal(a, b)


def test_window_model_round_trips_through_save_and_load(tmp_path, split):
    from agents.factory import LSRDQN
    from agents.next_item import LoggedNextItems

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    model = _window_model(env, mask_excluded=True, next_item_batch_size=4)
    model.set_next_item_source(LoggedNextItems(env, seed=0))
    model.pretrain(3)
    obs = LoggedNextItems(env, seed=1)(16)[0]
    model.save(tmp_path / "model.zip")
    loaded = LSRDQN.load(tmp_path / "model.zip", env=env)
    assert (loaded.next_item_positions, loaded.next_item_batch_size) == ("all", 4)
    encoder = loaded.q_net.features_extractor.short_term
    assert (encoder.causal, encoder.readout, encoder.positions) == (True, "last", "relative")
    with th.no_grad():
        before = model.q_net(model.policy.obs_to_tensor(obs)[0])
        after = loaded.q_net(loaded.policy.obs_to_tensor(obs)[0])
    th.testing.assert_close(after, before)
    loaded.set_next_item_source(LoggedNextItems(env, seed=0))  # the loss runs again after load
    assert np.isfinite(loaded.next_item_loss().item())


def test_all_positions_needs_a_causal_encoder(split):
    from agents.factory import build_model

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=5)
    with pytest.raises(ValueError, match="needs a causal short-term encoder"):
        build_model("dqn", env, dueling=True, next_item_weight=1.0, next_item_positions="all")
    with pytest.raises(ValueError, match="next_item_positions='every' is unknown"):
        build_model("dqn", env, dueling=True, next_item_positions="every")
    with pytest.raises(ValueError, match="needs causal=True"):
        make_config("default", next_item_positions="all", causal=False)
    with pytest.raises(ValueError, match="pretrain_steps > 0 need dueling=True for dqn"):
        make_config("default", dueling=False, next_item_weight=0.0, pretrain_steps=10)
    # The default preset stays valid for every algorithm, pre-training included.
    assert make_config("default", algo="ppo").pretrain_steps > 0
    with pytest.raises(ValueError, match="positions='rotary' is unknown"):
        make_config("default", positions="rotary")
    with pytest.raises(ValueError, match="pretrain_batch must be a positive integer"):
        make_config("default", pretrain_batch=0)


def test_pretraining_runs_before_training_and_is_recorded(tmp_path):
    config = tiny(tmp_path, causal=True, readout="last", positions="relative", next_item_positions="all",
                  next_item_batch=4, pretrain_steps=5, pretrain_batch=3, total_timesteps=80, eval_freq=80)
    from agents.factory import LSRDQN

    drawn = []
    original = LSRDQN.next_item_loss
    LSRDQN.next_item_loss = lambda self, n=None: (drawn.append(n or self.next_item_batch_size), original(self, n))[1]
    try:
        result = train(config, progress=False)
    finally:
        LSRDQN.next_item_loss = original
    assert drawn[:5] == [3] * 5 and set(drawn[5:]) == {4}  # pre-training batches, then the DQN's
    rows = result.curve["validation"]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 80  # the pre-trained network is validated first
    assert len(result.curve["pretrain_loss"]) == 1 and result.training["pretrain_steps"] == 5
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["training"]["pretrain_steps"] == 5 and saved["training"]["pretrain_seconds"] > 0


# The paper's episode: one pass over every training user ------------------------------------------


def test_user_passes_visit_every_user_once_per_pass_in_a_new_order(split):
    from agents.make import UserPasses

    env = gym.make("MovieLensRec-v0", split_data=split, max_steps=2)
    users = env.unwrapped.users
    passes = UserPasses(env, users, seed=0)
    seen = [passes.reset()[1]["user"] for _ in range(2 * len(users))]
    first, second = seen[: len(users)], seen[len(users):]
    assert sorted(first) == sorted(second) == sorted(users.tolist())
    assert first != second  # reshuffled
    assert passes.reset(options={"user": int(users[3])})[1]["user"] == users[3]  # an explicit user wins
    same = UserPasses(gym.make("MovieLensRec-v0", split_data=split, max_steps=2), users, seed=0)
    assert [same.reset()[1]["user"] for _ in range(len(users))] == first  # seeded


def test_an_episode_budget_in_passes_stops_after_every_user_had_a_session(tmp_path):
    config = tiny(tmp_path, episode="pass", max_episodes=1, max_steps=1, total_timesteps=10_000, n_envs=4,
                  train_freq=50, eval_freq=0, checkpoint_freq=0)
    result = train(config, progress=False)
    n_users = result.training["users_per_pass"]
    assert n_users > 900 and result.training["passes"] == 1 and result.training["complete"]
    # Four environments share the users; the run stops in the vector step that completes the pass.
    assert n_users <= result.training["episodes"] < n_users + 4
    assert result.training["stop_reason"] == "max_episodes=1 reached"


def test_pretrain_curve_rows_match_a_pretrained_training_run(tmp_path, capsys):
    from experiments.studies.pretrain_curve import main as curve_main

    options = ["--torch-threads", "1", "--n-envs", "2", "--embed-dim", "8", "--dnn-hidden", "8", "--net-arch", "16",
               "--causal", "true", "--readout", "last", "--positions", "relative", "--next-item-positions", "all",
               "--next-item-batch", "4", "--embedding-init-std", "0.05"]
    out = tmp_path / "curve.jsonl"
    assert curve_main(["--eval-at", "3,6", "--out", str(out), *options]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["steps"] for r in rows] == [3, 6] and capsys.readouterr().out.count("precision@10") == 2
    # The same network as a training run that pre-trains 6 steps and makes no TD update.
    config = make_config("default", tune=True, pretrain_steps=6, total_timesteps=2, learning_starts=10,
                         eval_freq=0, checkpoint_freq=0, runs_dir=str(tmp_path / "runs"), n_envs=2,
                         torch_threads=1, embed_dim=8, dnn_hidden=(8,), net_arch=(16,), causal=True, readout="last",
                         positions="relative", next_item_positions="all", next_item_batch=4,
                         embedding_init_std=0.05)  # fmt: skip
    result = train(config, progress=False)
    assert result.metrics["precision@10"] == pytest.approx(rows[-1]["precision@10"], abs=1e-4)
    assert curve_main(["--eval-at", "6,3", *options]) == 2
