"""``experiments.search``: the LSRWRL validation search, its presets, and ``train``'s evaluation hook."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from agents import config as config_module
from agents.config import PRESETS, add_config_arguments, config_from_args, load_preset_file, make_config
from experiments.search import METRIC, SEARCH_SPACE, SearchOptions, choose, trial_config
from test_table1 import write_tiny_ml1m


def test_every_point_of_the_search_space_is_a_valid_validation_slice_config() -> None:
    opts = SearchOptions()
    for name, (kind, *args) in SEARCH_SPACE.items():
        values = list(args[0]) if kind == "choice" else [args[0], args[1]]  # the corners of each range
        for value in values:
            config = trial_config(opts, {name: value})
            assert getattr(config, name) == value
            assert config.tune and config.max_train_seconds is None  # validation slice, budget in steps
            assert config.total_timesteps == opts.max_steps and config.torch_threads == opts.cpus_per_trial


def test_search_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="grace_steps=500000 exceeds max_steps=200000"):
        SearchOptions(grace_steps=500_000).validate()
    with pytest.raises(ValueError, match="no report before ASHA's first rung"):
        SearchOptions(eval_freq=100_000, grace_steps=50_000).validate()
    with pytest.raises(ValueError, match=r"fixed sets \['total_timesteps'\], which the search options set"):
        SearchOptions(fixed={"total_timesteps": 5_000}).validate()
    fixed = SearchOptions(fixed={"pretrain_steps": 0, "dropout": 0.1})
    assert "pretrain_steps" not in fixed.space() and set(fixed.space()) == set(SEARCH_SPACE) - {"pretrain_steps", "dropout"}
    config = trial_config(fixed, {"learning_rate": 1e-3})
    assert (config.pretrain_steps, config.dropout, config.learning_rate) == (0, 0.1, 1e-3)


def test_choose_takes_the_best_trial_that_trained_the_full_budget() -> None:
    trials = [
        {"trial": "a", "status": "stopped early", f"last_{METRIC}": 0.5},  # high early, but not comparable
        {"trial": "b", "status": "completed", f"last_{METRIC}": 0.2},
        {"trial": "c", "status": "completed", f"last_{METRIC}": 0.3},
        {"trial": "d", "status": "failed", f"last_{METRIC}": None},
    ]
    assert choose(trials)["trial"] == "c"
    with pytest.raises(RuntimeError, match="no trial trained the full budget"):
        choose(trials[:1])


def test_preset_file_loads_on_top_of_its_base_and_bad_files_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"base_preset": "paper", "overrides": {"gamma": 0.5, "embed_dim": 16}}))
    values = load_preset_file(path)
    assert values["gamma"] == 0.5 and values["loss"] == "mse" and values["preset"] == "mine"  # paper's loss kept
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"overrides": {"gama": 0.5}}))
    with pytest.raises(ValueError, match=r"bad.json.*unknown fields \['gama'\]"):
        load_preset_file(bad)
    shadowing = tmp_path / "shadow"
    shadowing.mkdir()
    (shadowing / "paper.json").write_text(json.dumps({"overrides": {}}))
    with pytest.raises(ValueError, match="'paper' is a built-in preset name"):
        config_module._add_preset_files(shadowing)


def test_the_searched_preset_is_usable_by_make_train() -> None:
    """``make train ARGS="--preset searched"``: the committed search result loads and validates."""
    import argparse

    assert (config_module.PRESET_DIR / "searched.json").is_file()
    record = json.loads((config_module.PRESET_DIR / "searched.json").read_text())
    assert Path(config_module.PRESET_DIR.parents[1] / record["record"]).is_file()  # the search's record
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--preset", "searched"]))
    assert config.preset == "searched"
    for name, value in record["overrides"].items():
        assert getattr(config, name) == (tuple(value) if isinstance(value, list) else value)
    assert set(record["overrides"]) <= set(SEARCH_SPACE)
    assert "searched" in PRESETS and make_config("searched").tune is False  # trains on the full train part


def test_train_reports_every_validation_evaluation(tmp_path: Path) -> None:
    from agents.training import train

    root = write_tiny_ml1m(tmp_path / "data")
    seen: list[tuple[int, dict]] = []
    config = make_config(
        "default", dataset="ml-1m", data_dir=str(root), expect_official=False, runs_dir=str(tmp_path / "runs"),
        torch_threads=1,
        n_envs=2, max_steps=5, total_timesteps=120, learning_starts=20, batch_size=8, buffer_size=500,
        embed_dim=8, dnn_hidden=(8,), net_arch=(16,), eval_freq=40, checkpoint_freq=0, max_train_seconds=None,
        tune=True, pretrain_steps=0,  # pre-training would add an evaluation at step 0
    )  # fmt: skip
    result = train(config, progress=False, on_evaluation=lambda step, row: seen.append((step, row)))
    assert [s for s, _ in seen] == [row["step"] for row in result.curve["validation"]]
    assert [s for s, _ in seen][:3] == [40, 80, 120] and len(seen) == 4  # every eval_freq, and at the end
    assert all(0.0 <= row[METRIC] <= 1.0 for _, row in seen)


@pytest.mark.slow
def test_tiny_search_runs_on_local_ray_and_writes_record_and_preset(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    from experiments.search import run_search
    from experiments.ray_cluster import _ray_processes, ray_session

    root = write_tiny_ml1m(tmp_path / "data")
    opts = SearchOptions(name="tiny", dataset="ml-1m", trials=3, max_steps=384, eval_freq=128, grace_steps=128,
                         reduction_factor=2, data_dir=str(root), expect_official=False,
                         runs_dir=str(tmp_path / "runs"),
                         base_preset="default-v1",
                         fixed={"pretrain_steps": 0})  # no pre-training: the first report is at eval_freq  # fmt: skip
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    with ray_session(num_cpus=2, object_store_mb=100, temp_dir=temp_dir):
        record = run_search(opts, tmp_path / "out", storage=tmp_path / "tune", presets_dir=tmp_path / "presets")
    assert _ray_processes(temp_dir) == [], "Ray processes left after the search"

    assert len(record["trials"]) == 3 and record["scheduler"]["type"] == "ASHA"
    for trial in record["trials"]:
        assert trial["status"] in ("completed", "stopped early"), trial
        steps = [s for s, _ in trial["curve"]]
        assert steps[0] == 128 and steps == sorted(steps)  # validation reports reached the scheduler
        assert set(trial["params"]) == set(SEARCH_SPACE) - {"pretrain_steps"}  # fixed: not searched
    best = record["best"]
    assert best["status"] == "completed" and best["last_step"] >= opts.max_steps
    # every trial trained on the validation slice only
    configs = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/config.json")]
    assert len(configs) == 3 and all(c["tune"] and c["total_timesteps"] == 384 for c in configs)
    assert (tmp_path / "out" / "search_tiny.md").read_text().count("| trial-") == 3

    preset = load_preset_file(tmp_path / "presets" / "searched.json")
    assert all(preset[k] == v for k, v in best["params"].items()) and preset["preset"] == "searched"
    make_config("default", **{k: v for k, v in preset.items() if k != "preset"})
    # a second search does not overwrite the preset unless asked
    with pytest.raises(FileExistsError, match="--overwrite-preset"):
        run_search(opts, tmp_path / "out", storage=tmp_path / "tune", presets_dir=tmp_path / "presets")


def test_a_restarted_trial_continues_its_run_from_the_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """What Tune's restore of an interrupted search does to a trial: it calls the trainable again."""
    ray_tune = pytest.importorskip("ray.tune")
    from dataclasses import asdict

    from agents.training import _Runner
    from experiments.search import search_trial

    root = write_tiny_ml1m(tmp_path / "data")
    opts = SearchOptions(name="tiny", dataset="ml-1m", trials=1, max_steps=120, eval_freq=40, grace_steps=40,
                         data_dir=str(root), expect_official=False, runs_dir=str(tmp_path / "runs"),
                         fixed=dict(pretrain_steps=0, n_envs=2, max_steps=5, learning_starts=20, batch_size=8,
                                    buffer_size=500, embed_dim=8, dnn_hidden=(8,), net_arch=(16,)))  # fmt: skip
    assert trial_config(opts, {}).checkpoint_freq == opts.eval_freq
    reports: list[int] = []
    monkeypatch.setattr(ray_tune, "report", lambda metrics: reports.append(metrics["step"]))
    original = _Runner.validate

    def crash_at_step_80(self, model):
        if model.num_timesteps >= 80:
            raise RuntimeError("session ended")  # as a SIGKILL: no handler runs
        return original(self, model)

    with monkeypatch.context() as m:
        m.setattr(_Runner, "validate", crash_at_step_80)
        with pytest.raises(RuntimeError, match="session ended"):
            search_trial({"options": asdict(opts)})
    assert reports == [40]
    search_trial({"options": asdict(opts)})  # the restart
    (run_dir,) = (tmp_path / "runs").iterdir()  # the same run, not a new one from step 0
    assert (run_dir / "metrics.json").exists()
    assert 40 < reports[1] <= 80 and reports[-1] == 120
