"""make train on an interaction log: the committed example log, trained through the CLI with a
tiny budget, evaluated, resumed; the run records the log's path, columns and contents."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch as th

from agents.config import TrainConfig, make_config
from experiments import evaluate
from experiments.train import main

th.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "example_log.csv"
LOG_ARGS = ["--user-col", "user", "--item-col", "item", "--timestamp-col", "time", "--user-feature-cols", "plan"]


def tiny_args(runs: Path, **overrides: object) -> list[str]:
    """A few seconds of training with tiny networks."""
    values = dict(
        runs_dir=runs, torch_threads=1, n_envs=2, max_steps=5, total_timesteps=80, learning_starts=20,
        batch_size=16, buffer_size=1_000, target_update_interval=50, embed_dim=8, dnn_hidden=8, net_arch=16,
        eval_freq=40, checkpoint_freq=40, pretrain_steps=2, next_item_batch=4,
    )
    values.update(overrides)
    return [item for key, value in values.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def test_the_example_log_is_what_its_script_writes(tmp_path: Path) -> None:
    out = tmp_path / "log.csv"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_example_log.py"), "--out", str(out)],
                   check=True, capture_output=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert out.read_bytes() == EXAMPLE.read_bytes()
    lines = EXAMPLE.read_text().splitlines()
    assert lines[0] == "user,item,time,plan" and 300 <= len(lines) - 1 <= 600
    assert lines[1].split(",")[0].startswith("user-") and "movie" not in EXAMPLE.read_text().lower()


def test_cli_trains_on_a_log_evaluates_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "clicks.csv"
    shutil.copy(EXAMPLE, log)
    run = tmp_path / "run"
    assert main(["--data", str(log), *LOG_ARGS, *tiny_args(tmp_path / "runs"), "--run-dir", str(run),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"on {log}" in out and "precision@10" in out

    config = TrainConfig.load(str(run / "config.json"))
    assert (config.data, config.dataset, config.user_col, config.item_col) == (str(log), None, "user", "item")
    assert (config.timestamp_col, config.user_feature_cols, config.rating_col, config.train_rewards) == (
        "time", ("plan",), None, None)
    record = json.loads((run / "data.json").read_text())
    assert record["data"] == str(log) and len(record["sha256"]) == 64
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["agent"]["n_users"] > 0

    assert evaluate.main([str(run), "--no-greedy"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["dataset"] == str(log)
    assert result["agent"]["precision@10"] == pytest.approx(metrics["agent"]["precision@10"])

    # --resume reloads the same log from the recorded path (any working directory) ...
    assert main(["--resume", str(run), "--total-timesteps", "120", "--no-progress"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"] == "step-120"
    # ... or the same contents moved elsewhere (--data), recorded in config.json ...
    moved = tmp_path / "moved" / "clicks.csv"
    moved.parent.mkdir()
    log.rename(moved)
    assert main(["--resume", str(run), "--total-timesteps", "160", "--data", str(moved), "--no-progress"]) == 0
    assert TrainConfig.load(str(run / "config.json")).data == str(moved)
    # ... and refuses a log whose contents changed since.
    moved.write_text(moved.read_text().replace("user-001,", "user-999,", 1))
    capsys.readouterr()
    assert main(["--resume", str(run), "--total-timesteps", "200", "--no-progress"]) == 2
    assert "changed since the run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main([str(run), "--no-greedy"])
    assert "changed since the run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "ml-1m", "--data", "x.csv", "--user-col", "u", "--item-col", "i"], "both name the data"),
        (["--data", "x.csv", "--user-col", "u"], "needs user_col and item_col"),
        (["--user-col", "u"], "describe an interaction log: give data"),
        (["--data", "x.csv", "--user-col", "u", "--item-col", "i", "--data-dir", "/tmp"], "apply to MovieLens"),
        (["--data", str(EXAMPLE), "--user-col", "customer", "--item-col", "item"], "no column 'customer'"),
    ],
)
def test_log_options_are_checked_before_anything_runs(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    assert main([*argv, "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_log_config_records_an_absolute_path_and_the_environments_default_rewards(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = make_config("default", data="log.csv", user_col="u", item_col="i")
    assert config.data == str(tmp_path / "log.csv") and config.dataset is None and config.train_rewards is None
    assert make_config("default", data="log.csv", user_col="u", item_col="i",
                       train_rewards=(1.0,)).train_rewards == (1.0,)


def test_make_agent_on_a_split_of_a_log() -> None:
    """The library path: load_interactions -> split_ratings -> make_agent -> learn."""
    from agents import make_agent
    from recsim_env import load_interactions, split_ratings

    data = load_interactions(EXAMPLE, user="user", item="item", timestamp="time")
    model = make_agent(split_ratings(data), seed=0, n_envs=2, embed_dim=8, dnn_hidden=(8,), net_arch=(16,),
                       learning_starts=16, batch_size=8, buffer_size=500, pretrain_steps=2, next_item_batch=4)
    assert model.agent_config.train_rewards is None  # the preset's 1..5-star rewards do not fit (1,)
    assert "user" not in model.observation_space.spaces  # no feature columns given: no field
    model.learn(48)
    assert model.num_timesteps == 48
