"""``experiments.equal_budget``: the same validation budget for every model, then seeded test runs
with per-user metrics, on a tiny dataset in the ML-1M format."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from experiments import equal_budget
from experiments.equal_budget import (
    StudyOptions,
    final_run,
    model_settings,
    record_path,
    run_key,
    run_store,
    stored_record,
    tune_model,
)
from experiments.table1 import PER_USER_METRICS, run_per_user
from recsim_env.movielens import load_movielens
from test_table1 import write_tiny_ml1m


@pytest.fixture
def tiny(tmp_path: Path):
    root = write_tiny_ml1m(tmp_path / "data")
    data = load_movielens("ml-1m", root, download=False, expect_official=False)
    opts = StudyOptions(dataset="ml-1m", models=["itemcf", "sasrec"], trials=2, seeds=[0, 1], quick=True,
                        data_dir=str(root), download=False, expect_official=False,
                        runs_dir=str(tmp_path / "runs"))  # fmt: skip
    return opts, data


def test_options_name_every_problem_before_anything_runs() -> None:
    assert StudyOptions(dataset="ml-100k").n_trials == 16 and StudyOptions(dataset="ml-1m").n_trials == 6
    bad = StudyOptions(dataset="ml-10m", models=["popularity", "sasrec", "ease"],
                       fixed={"sasrec": {"epochs": 3, "max_lenn": 20}, "gru4rec": {"dim": 8}}, reports=0)  # fmt: skip
    with pytest.raises(ValueError) as err:
        bad.validate()
    message = str(err.value)
    for text in ("no default trial count for 'ml-10m': give trials", "reports must be >= 1",
                 "no search space for 'popularity'", "fixed sasrec:max_lenn is not a parameter of sasrec",
                 "drop epochs from fixed", "fixed names models that are not studied: ['gru4rec']"):  # fmt: skip
        assert text in message
    assert equal_budget._parse_fix(["sasrec:max_len=20", "lsrwrl:embedding_init_std=null", "stamp:lr_schedule=cosine"]) \
        == {"sasrec": {"max_len": 20}, "lsrwrl": {"embedding_init_std": None}, "stamp": {"lr_schedule": "cosine"}}
    with pytest.raises(ValueError, match="expected MODEL:KEY=VALUE"):
        equal_budget._parse_fix(["max_len=20"])


def test_every_model_gets_the_same_trials_and_the_same_asha_rule(tiny) -> None:
    opts, data = tiny
    opts = StudyOptions(**{**asdict(opts), "quick": False, "models": ["ease", "sasrec", "stamp", "lsrwrl"]})
    settings = {m: model_settings(opts, m, data) for m in opts.models}
    assert {s["trials"] for s in settings.values()} == {2} and {s["metric"] for s in settings.values()} == {"ndcg@10"}
    assert settings["sasrec"]["budget"] == 8_000 and settings["sasrec"]["report_every"] == 1_000  # 8 reports
    assert settings["lsrwrl"]["budget"] == 600_000 and settings["lsrwrl"]["report_every"] == 75_000
    assert settings["ease"]["budget"] == 1 and settings["ease"]["report_every"] is None  # one fit, one report
    # the torch models on LSRWRL's kernel path, as in Table 1
    assert settings["sasrec"]["kernel_path"] == settings["lsrwrl"]["kernel_path"] == "avx2"
    assert "kernel_path" not in settings["ease"]
    native = StudyOptions(**{**asdict(opts), "fixed": {"lsrwrl": {"kernel_path": "native"}}})
    assert model_settings(native, "stamp", data)["kernel_path"] == "native"
    for s in settings.values():  # ASHA's first rung at a quarter of each model's largest budget
        assert s["asha"]["grace_period"] == max(1, -(-s["budget"] // 4)) and s["asha"]["reduction_factor"] == 3
    fixed = StudyOptions(**{**asdict(opts), "fixed": {"sasrec": {"max_len": 50, "train_steps": 400}}})
    space = model_settings(fixed, "sasrec", data)["space"]
    assert "max_len" not in space and "train_steps" not in space and "lr" in space  # fixed keys are not searched
    assert model_settings(fixed, "sasrec", data)["budget"] == 400


def assert_per_user_means_are_the_metrics(run) -> None:
    """Precision@10 is stored exactly, NDCG@10 as float32 (Table 1's run-file format)."""
    per_user = run_per_user(run)
    assert np.mean(per_user["precision@10"]) == pytest.approx(run.metrics["precision@10"], abs=1e-12)
    assert np.mean(per_user["ndcg@10"]) == pytest.approx(run.metrics["ndcg@10"], abs=1e-7)
    assert len(per_user["user"]) == run.metrics["n_users"]


def test_test_runs_keep_per_user_values_whose_means_are_the_metrics(tiny, tmp_path: Path) -> None:
    opts, data = tiny
    from recsim_env.splits import split_ratings

    split = split_ratings(data, "temporal", 0.8)
    with_test = np.flatnonzero(np.diff(split.test_indptr) > 0)
    store = run_store(tmp_path / "out", "ml-1m")
    for model, params in (("itemcf", {"k": 10, "shrinkage": 5.0}), ("sasrec", {"lr": 1e-2, "max_len": 20})):
        record = {"model": model, "seconds": 1.0, "settings": model_settings(opts, model, data),
                  "chosen": {"params": params, "fixed": opts.model_fixed(model)}}  # fmt: skip
        run = final_run(record, 0, asdict(opts))
        assert run.error is None, run.error
        path = store.save_run(run, run_key(record, 0))
        assert path.parent == tmp_path / "out" / "equal_budget_runs" / "ml-1m" and path.name.startswith(f"{model}-seed0-")
        stored = store.load_run(model, 0, run_key(record, 0))
        assert stored.tuned == params and set(stored.per_user) == {"user", *PER_USER_METRICS}
        np.testing.assert_array_equal(stored.per_user["user"], with_test)  # every user with test items, ascending
        assert_per_user_means_are_the_metrics(stored)
        if model == "sasrec":  # the seed, the quick budget and the chosen values reach the model
            assert {k: stored.params[k] for k in ("seed", "train_steps", "lr")} == \
                {"seed": 0, "train_steps": 12, "lr": 1e-2}
    assert run_key(record, 0) != run_key(record, 1)


def test_a_finished_model_is_read_not_searched_and_other_settings_are_refused(tiny, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opts, data = tiny
    out = tmp_path / "out"
    settings = model_settings(opts, "itemcf", data)
    record = {"model": "itemcf", "settings": settings, "trials": [], "chosen": {"params": {"k": 10}, "fixed": {}}}
    path = record_path(out, "ml-1m", "itemcf")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))

    def no_search(*args, **kwargs):
        raise AssertionError("a finished model was searched again")

    import experiments.search

    monkeypatch.setattr(experiments.search, "tune_experiment", no_search)
    assert tune_model(opts, "itemcf", data, out, tmp_path / "tune") == (record, False)
    more = StudyOptions(**{**asdict(opts), "trials": 3})
    with pytest.raises(ValueError, match=r"itemcf.json was searched with other settings \(differ: trials\)"):
        stored_record(more, "itemcf", data, out)


@pytest.mark.slow
def test_the_study_on_local_ray_writes_records_and_runs_and_resumes(tiny, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    from experiments.equal_budget import run_study
    from experiments.ray_cluster import _ray_processes, ray_session

    opts, data = tiny
    opts = StudyOptions(**{**asdict(opts), "models": ["itemcf", "stamp", "lsrwrl"]})
    out, storage = tmp_path / "out", tmp_path / "tune"
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    with ray_session(num_cpus=2, object_store_mb=100, temp_dir=temp_dir):
        first = run_study(opts, out, storage=storage, data=data, log=lambda line: None)
        files = {p: p.stat().st_mtime_ns for p in (out / "equal_budget_runs" / "ml-1m").glob("*.json")}
        again = run_study(opts, out, storage=storage, data=data, log=lambda line: None)
    assert _ray_processes(temp_dir) == [], "Ray processes left after the study"

    assert first.failed == {} and first.searched == opts.models and again.searched == []
    for model in opts.models:
        record = json.loads(record_path(out, "ml-1m", model).read_text())
        assert len(record["trials"]) == 2  # the same budget for every model
        assert record["settings"]["metric"] == "ndcg@10" and record["settings"]["split"] == "temporal"
        for trial in record["trials"]:
            assert trial["status"] in ("completed", "stopped early") and trial["seconds"] > 0
            assert set(trial["params"]) == set(record["settings"]["space"]) and trial["curve"]
        chosen = record["chosen"]
        best = max((t for t in record["trials"] if t["status"] == "completed"), key=lambda t: t["last_ndcg@10"])
        assert chosen["params"] == best["params"] and chosen["value"] == best["last_ndcg@10"]
    stamp = json.loads(record_path(out, "ml-1m", "stamp").read_text())["trials"]
    assert max(t["last_step"] for t in stamp) == 12  # --quick's train_steps (ASHA may stop the other earlier)
    assert len(files) == 6 and {p: p.stat().st_mtime_ns for p in files} == files  # 3 models x 2 seeds, not redone
    for (model, seed), run in again.runs.items():
        assert run.error is None and run.tuned == again.records[model]["chosen"]["params"]
        assert_per_user_means_are_the_metrics(run)
