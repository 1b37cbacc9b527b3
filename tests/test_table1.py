"""``experiments.table1`` end to end on a tiny ML-1M-format dataset, with a failing model."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from agents.baselines import Recommender, base
from experiments import table1
from recsim_env.dataset import Split
from recsim_env.movielens import DatasetMismatchError


def write_tiny_ml1m(root: Path, n_users: int = 30, n_items: int = 25, per_user: int = 12) -> Path:
    """A small dataset in the exact ML-1M file format (``::``-separated, latin-1)."""
    folder = root / "ml-1m"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    users = [f"{u}::{'FM'[u % 2]}::{(1, 18, 25, 35)[u % 4]}::{u % 21}::0000{u}" for u in range(1, n_users + 1)]
    movies = [f"{i}::Movie {i} ({1990 + i % 10})::Drama|Comedy" for i in range(1, n_items + 1)]
    ratings = []
    for u in range(1, n_users + 1):
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False) + 1):
            ratings.append(f"{u}::{i}::{rng.integers(1, 6)}::{978300000 + 100 * t}")
    for name, lines in (("users.dat", users), ("movies.dat", movies), ("ratings.dat", ratings)):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    return root


class BrokenRecommender(Recommender):
    """Fails in fit, like a model with a bug."""

    name = "broken"

    def fit(self, split: Split) -> BrokenRecommender:
        raise RuntimeError("deliberate failure for the test")

    def score(self, users: np.ndarray) -> np.ndarray:  # pragma: no cover - never reached
        raise AssertionError


def test_table_end_to_end_reports_a_failing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setitem(base._REGISTRY, "broken", f"{__name__}:BrokenRecommender")
    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    status = table1.main([
        "--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--edited-copy", "--seeds", "0",
        "--models", "popularity", "itemcf", "broken", "gru4rec", "--quick", "--out", str(out),
    ])  # fmt: skip
    assert status == 1  # a model failed on every seed

    with open(out / "table1_ml-1m.csv", newline="", encoding="utf-8") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["Popularity", "ItemCF", "broken", "GRU4Rec"]
    assert rows["broken"]["status"] == "failed"
    assert "RuntimeError: deliberate failure for the test" in rows["broken"]["error"]
    for name in ("Popularity", "ItemCF", "GRU4Rec"):
        assert rows[name]["status"] == "ok"
        assert 0.0 <= float(rows[name]["precision@10_mean"]) <= 1.0
        assert float(rows[name]["precision@10_std"]) == 0.0  # one seed
    assert float(rows["ItemCF"]["paper_precision@10"]) == pytest.approx(0.176)
    for name in ("Popularity", "ItemCF", "GRU4Rec"):  # every model also acts as a policy
        for key in table1.SIM_METRICS:
            assert float(rows[name][f"{key}_mean"]) >= 0.0, (name, key)
    assert float(rows["ItemCF"]["sim_return_ease_mean"]) > 0.0
    assert "k" in json.loads(rows["ItemCF"]["tuned"])
    assert "epochs" in json.loads(rows["GRU4Rec"]["tuned"])

    md = (out / "table1_ml-1m.md").read_text(encoding="utf-8")
    assert "Split: **temporal**" in md and "| broken | **failed**" in md
    assert "deliberate failure for the test" in md
    assert (out / "table1_ml-1m_p10_r10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((out / "table1_ml-1m_runs.json").read_text(encoding="utf-8"))["runs"]
    assert [r["model"] for r in runs] == ["popularity", "itemcf", "broken", "gru4rec"]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_summary_mean_std_and_partial_failures() -> None:
    runs = [
        table1.Run("itemcf", 0, metrics={m: 0.1 for m in table1.METRICS}),
        table1.Run("itemcf", 1, metrics={m: 0.3 for m in table1.METRICS}),
        table1.Run("ease", 0, metrics={m: 0.2 for m in table1.METRICS}),
        table1.Run("ease", 1, error="ValueError: boom"),
    ]
    opts = table1.TableOptions(seeds=[0, 1], models=["itemcf", "ease"])
    itemcf, ease = table1.summarize(runs, "ml-100k", opts)
    assert itemcf["precision@10_mean"] == pytest.approx(0.2)
    assert itemcf["precision@10_std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert itemcf["paper_recall@10"] == 0.072 and itemcf["status"] == "ok"
    assert ease["status"] == "partial" and ease["seeds_ok"] == "1/2" and ease["error"] == "ValueError: boom"
    assert ease["recall@10_mean"] == pytest.approx(0.2) and math.isnan(ease["paper_precision@10"])


def test_lsrwrl_row_trains_through_the_agent_api_on_the_same_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.training

    seen = {}

    def fake_train(config, run_dir=None, progress=True):
        seen["config"] = config
        metrics = {"precision@10": 0.2, "recall@10": 0.1, "ndcg@10": 0.25, "hit_rate@10": 0.7, "n_users": 2}
        per_user = {"user": np.array([3, 7]), "precision@10": np.array([0.1, 0.3]),
                    "recall@10": np.array([0.05, 0.15]), "ndcg@10": np.array([0.2, 0.3])}
        return SimpleNamespace(metrics=metrics, training={"env_steps": 123}, run_dir=tmp_path / "run",
                               model="trained model", per_user=per_user)

    def fake_returns(model, config):  # the greedy simulations of the trained model
        seen["simulated"] = model
        return {"sim_return_replay": 2.5, "sim_return_ease": 1.25}

    monkeypatch.setattr(agents.training, "train", fake_train)
    monkeypatch.setattr(table1, "_lsrwrl_returns", fake_returns)
    opts = table1.TableOptions(split="random", train_ratio=0.7, lsrwrl_preset="paper",
                               lsrwrl_overrides={"max_train_seconds": 30.0})  # fmt: skip
    run = table1.run_lsrwrl("ml-100k", 2, opts, tmp_path)
    assert run.error is None and run.metrics["ndcg@10"] == 0.25
    config = seen["config"]
    assert (config.dataset, config.seed, config.split, config.split_seed) == ("ml-100k", 2, "random", 2)
    assert config.train_ratio == 0.7 and config.preset == "paper" and config.max_train_seconds == 30.0
    assert run.params["env_steps"] == 123 and run.tuned["preset"] == "paper"
    assert seen["simulated"] == "trained model" and run.metrics["sim_return_ease"] == 1.25
    # the run keeps the training's per-user values (precision@10 and NDCG@10 only)
    assert run.per_user == {"user": [3, 7], "precision@10": [0.1, 0.3], "ndcg@10": [0.2, 0.3]}


def _table_files(out: Path, dataset: str = "ml-1m") -> dict[str, bytes]:
    names = (f"table1_{dataset}.md", f"table1_{dataset}.csv", f"table1_{dataset}_runs.json")
    return {name: (out / name).read_bytes() for name in names}


def test_rerun_reads_finished_runs_and_renders_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    argv = ["--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--seeds", "0", "1",
            "--models", "popularity", "itemcf", "--quick", "--edited-copy", "--out", str(out)]  # fmt: skip
    assert table1.main(argv) == 0
    first = _table_files(out)
    run_files = sorted(p.name for p in (out / "table1_runs" / "ml-1m").glob("*.json"))
    # 2 models x 2 seeds, plus one tuning file per model (temporal split: shared by the seeds)
    assert len([n for n in run_files if not n.startswith("tuning-")]) == 4
    assert len([n for n in run_files if n.startswith("tuning-")]) == 2

    def must_not_fit(self, split):
        raise AssertionError("a finished run was recomputed")

    for name in ("popularity", "itemcf"):
        monkeypatch.setattr(base.get_recommender_class(name), "fit", must_not_fit)
    assert table1.main(argv) == 0
    assert _table_files(out) == first  # byte for byte: no date, command rebuilt from the options

    # --force recomputes (and the fit that raises is reported as a failure, files kept)
    assert table1.main([*argv, "--force"]) == 1
    assert sorted(p.name for p in (out / "table1_runs" / "ml-1m").glob("*.json")) == run_files


def test_settings_line_does_not_depend_on_the_order_a_run_recorded_them() -> None:
    """A run read back from its file and the same run fresh from training render alike."""
    metrics = {"precision@10": 0.2, "recall@10": 0.1, "ndcg@10": 0.3, "hit_rate@10": 0.5}
    fresh = table1.Run("lsrwrl", 0, metrics, params={"train_seconds": 9.0, "env_steps": 600},
                       tuned={"preset": "default", "torch_threads": 1})  # fmt: skip
    read = table1.Run("lsrwrl", 0, metrics, params={"env_steps": 600, "train_seconds": 9.0},
                      tuned={"torch_threads": 1, "preset": "default"})  # fmt: skip
    opts = table1.TableOptions(seeds=[0], models=["lsrwrl"])
    [a], [b] = table1.summarize([fresh], "ml-1m", opts), table1.summarize([read], "ml-1m", opts)
    assert (a["params"], a["tuned"]) == (b["params"], b["tuned"])


def test_interrupted_table_loses_only_the_run_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ItemCF = base.get_recommender_class("itemcf")
    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    argv = ["--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--seeds", "0",
            "--models", "popularity", "itemcf", "ease", "--quick", "--edited-copy", "--out", str(out)]  # fmt: skip
    real_fit = ItemCF.fit

    def interrupted(self, split, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ItemCF, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        table1.main(argv)
    done = [p.name for p in (out / "table1_runs" / "ml-1m").glob("*-seed0-*.json")]
    assert [n.split("-")[0] for n in done] == ["popularity"]

    def must_not_fit(self, split, *args, **kwargs):
        raise AssertionError("the finished popularity run was recomputed")

    monkeypatch.setattr(ItemCF, "fit", real_fit)
    monkeypatch.setattr(base.get_recommender_class("popularity"), "fit", must_not_fit)
    assert table1.main(argv) == 0  # a recomputed popularity would fail its row
    rows = {r["model"]: r for r in csv.DictReader(open(out / "table1_ml-1m.csv", encoding="utf-8"))}
    assert [rows[m]["status"] for m in ("Popularity", "ItemCF", "EASE")] == ["ok", "ok", "ok"]


def test_render_only_writes_a_partly_filled_table_without_computing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_ml1m(tmp_path / "data")
    out = tmp_path / "results"
    common = ["--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--quick", "--edited-copy",
              "--out", str(out)]  # fmt: skip
    assert table1.main([*common, "--seeds", "0", "--models", "popularity", "itemcf"]) == 0

    def must_not_fit(self, split, *args, **kwargs):
        raise AssertionError("--render-only computed a run")

    for name in ("popularity", "itemcf", "ease"):
        monkeypatch.setattr(base.get_recommender_class(name), "fit", must_not_fit)
    argv = [*common, "--seeds", "0", "1", "--models", "popularity", "itemcf", "ease", "--render-only"]
    assert table1.main(argv) == 0
    rows = {r["model"]: r for r in csv.DictReader(open(out / "table1_ml-1m.csv", encoding="utf-8"))}
    assert [(rows[m]["status"], rows[m]["seeds_ok"]) for m in ("Popularity", "ItemCF", "EASE")] == [
        ("partial", "1/2"), ("partial", "1/2"), ("pending", "0/2")]
    assert math.isnan(float(rows["EASE"]["precision@10_mean"]))
    assert not any((out / "table1_runs" / "ml-1m").glob("ease-*.json"))
    text = (out / "table1_ml-1m.md").read_text(encoding="utf-8")
    assert "--seeds 0 1" in text and "| 1/2 |" in text


def test_changed_setting_reruns_only_what_it_changes(tmp_path: Path) -> None:
    data_root = write_tiny_ml1m(tmp_path / "data")
    from recsim_env.movielens import load_movielens
    from recsim_env.splits import split_ratings

    data = load_movielens("ml-1m", data_root, download=False, expect_official=False)
    split = split_ratings(data, "temporal", 0.8)
    out = tmp_path / "results"
    opts = table1.TableOptions(seeds=[0], models=["itemcf"], quick=True)
    run, computed = table1.run_one(data, split, "itemcf", 0, opts, out)
    assert computed and run.error is None and len(run.key) == 16
    again, computed = table1.run_one(data, split, "itemcf", 0, opts, out)
    assert not computed and again == run
    other = table1.TableOptions(seeds=[0], models=["itemcf"], quick=True, val_fraction=0.3)
    _, computed = table1.run_one(data, split, "itemcf", 0, other, out)
    assert computed  # a different validation slice is a different run
    # LSRWRL's key is its whole TrainConfig: another preset value is another run
    key = table1.run_key("lsrwrl", data, 0, opts, out)
    changed = table1.TableOptions(seeds=[0], quick=True, lsrwrl_overrides={"gamma": 0.5})
    assert key != table1.run_key("lsrwrl", data, 0, changed, out)
    assert key["config"]["seed"] == 0 and "runs_dir" not in key["config"]


def test_stored_run_without_simulated_returns_gets_them_added(tmp_path: Path) -> None:
    """A run file written before the simulated-return columns is completed, not recomputed."""
    data_root = write_tiny_ml1m(tmp_path / "data")
    from recsim_env.movielens import load_movielens
    from recsim_env.splits import split_ratings

    data = load_movielens("ml-1m", data_root, download=False, expect_official=False)
    split = split_ratings(data, "temporal", 0.8)
    out = tmp_path / "results"
    opts = table1.TableOptions(seeds=[0], models=["ease"], quick=True)
    run, _ = table1.run_one(data, split, "ease", 0, opts, out)
    assert set(table1.SIM_METRICS) <= set(run.metrics)
    store = table1.RunStore(out, "ml-1m")
    key = table1.run_key("ease", data, 0, opts, out)
    old = dataclasses.replace(run, metrics={k: v for k, v in run.metrics.items() if not k.startswith("sim_")})
    store.save_run(old, key)
    again, computed = table1.run_one(data, split, "ease", 0, opts, out)
    assert computed and again.metrics == run.metrics  # the same figures, the same file name
    assert store.load_run("ease", 0, key).metrics == run.metrics


def test_recompute_sim_replaces_stale_simulated_returns_and_keeps_the_rest(tmp_path: Path) -> None:
    """--recompute-sim: a stored run's simulated returns from an older simulator are computed
    again (ranking metrics untouched); without it they are read as stored; unknown names fail."""
    data_root = write_tiny_ml1m(tmp_path / "data")
    from recsim_env.movielens import load_movielens

    data = load_movielens("ml-1m", data_root, download=False, expect_official=False)
    out = tmp_path / "results"
    opts = table1.TableOptions(seeds=[0], models=["popularity", "ease"], quick=True)
    fresh = {r.model: r for r in table1.run_table(data, opts, out, log=lambda _: None).runs}
    store = table1.RunStore(out, "ml-1m")
    for model in ("popularity", "ease"):  # both stored with figures an older simulator gave
        stale = {**fresh[model].metrics, **{k: -1.0 for k in fresh[model].metrics if k.startswith("sim_")}}
        store.save_run(dataclasses.replace(fresh[model], metrics=stale), table1.run_key(model, data, 0, opts, out))
    again = {r.model: r for r in table1.run_table(data, opts, out, log=lambda _: None, recompute_sim=("ease",)).runs}
    assert again["ease"].metrics == fresh["ease"].metrics  # recomputed: the current figures
    assert again["popularity"].metrics["sim_return_ease"] == -1.0  # not named: read as stored
    assert again["popularity"].metrics["precision@10"] == fresh["popularity"].metrics["precision@10"]
    with pytest.raises(ValueError, match=r"--recompute-sim names \['sasrec'\], which are not models"):
        table1.run_table(data, opts, out, log=lambda _: None, recompute_sim=("sasrec",))


def test_edited_copy_must_be_declared(tmp_path: Path) -> None:
    """Hand-made files in a folder named ml-1m are not the official release: an error that lists
    the differing figures, unless --edited-copy says so (as the end-to-end test above does)."""
    root = write_tiny_ml1m(tmp_path / "data")
    with pytest.raises(DatasetMismatchError, match=r"ratings \(rows\): expected 1,000,209, found 360"):
        table1.main([
            "--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--seeds", "0",
            "--models", "popularity", "--quick", "--out", str(tmp_path / "results"),
        ])  # fmt: skip
    assert not (tmp_path / "results").exists()


def test_run_files_keep_per_user_values_for_significance_tests(tmp_path: Path) -> None:
    """A fresh run stores its users' precision@10 and NDCG@10 (float32, compact), read back
    exactly as written; a file from before they were kept still reads, without them."""
    data_root = write_tiny_ml1m(tmp_path / "data")
    from recsim_env.movielens import load_movielens
    from recsim_env.significance import compare_to_reference
    from recsim_env.splits import split_ratings

    data = load_movielens("ml-1m", data_root, download=False, expect_official=False)
    split = split_ratings(data, "temporal", 0.8)
    out = tmp_path / "results"
    opts = table1.TableOptions(seeds=[0], models=["popularity", "itemcf"], quick=True)
    runs = {name: table1.run_one(data, split, name, 0, opts, out)[0] for name in opts.models}
    per_user = {name: table1.run_per_user(run) for name, run in runs.items()}
    with_test_items = np.flatnonzero(np.diff(split.test_indptr) > 0)
    for name, values in per_user.items():
        assert set(values) == {"user", *table1.PER_USER_METRICS}
        np.testing.assert_array_equal(values["user"], with_test_items)
        assert values["user"].size == runs[name].metrics["n_users"]
        for metric in table1.PER_USER_METRICS:  # float32 storage: the mean to float32 rounding
            assert values[metric].mean() == pytest.approx(runs[name].metrics[metric], rel=1e-6, abs=1e-9)
        hits = values["precision@10"] * 10  # precision@10 is stored exactly (hits / 10)
        np.testing.assert_array_equal(hits, np.round(hits))

    # read back from its file: the same run, the per-user lists each on one line
    key = table1.run_key("itemcf", data, 0, opts, out)
    store = table1.RunStore(out, "ml-1m")
    assert store.load_run("itemcf", 0, key) == runs["itemcf"]
    lines = store.run_path("itemcf", 0, key).read_text(encoding="utf-8").splitlines()
    [line] = [line for line in lines if '"ndcg@10": [' in line]
    assert line.rstrip(",").count(",") == with_test_items.size - 1

    # the summary file leaves them out
    table1.write_outputs(list(runs.values()), data, opts, out, plot=False)
    summary = json.loads((out / "table1_ml-1m_runs.json").read_text(encoding="utf-8"))["runs"]
    assert all("per_user" not in r for r in summary) and summary[0]["metrics"] == runs["popularity"].metrics

    # the stored values are what a paired test needs
    [row] = compare_to_reference(per_user["itemcf"], {"popularity": per_user["popularity"]},
                                 metrics=["ndcg@10"], n_resamples=200)  # fmt: skip
    assert row["model_mean"] == pytest.approx(runs["popularity"].metrics["ndcg@10"], rel=1e-6)

    # a run file written before per-user values were kept
    old = dataclasses.replace(runs["itemcf"], per_user=None)
    record = {"key": json.loads(json.dumps(key)), "run": {k: v for k, v in dataclasses.asdict(old).items()
                                                         if k != "per_user"}}  # fmt: skip
    store.run_path("itemcf", 0, key).write_text(json.dumps(record), encoding="utf-8")
    again, computed = table1.run_one(data, split, "itemcf", 0, opts, out)
    assert not computed and again == old and table1.run_per_user(again) is None


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dataset", ["ml-100k", "ml-1m"])
def test_committed_table_runs_keep_their_keys_under_the_current_config(dataset: str) -> None:
    """Every committed LSRWRL run of Table 1 is found again by the options it was rendered with.

    A TrainConfig field added later must leave these keys alone at its old-behaviour value
    (``table1._KEYED_UNLESS``); otherwise every table command retrains LSRWRL (hours, and the
    runs' models are gone).
    """
    summary = json.loads((REPO / "results" / f"table1_{dataset}_runs.json").read_text())
    opts = table1.TableOptions(**summary["options"])
    data = table1.load_dataset(dataset, opts)
    store = table1.RunStore(REPO / "results", dataset)
    for run in summary["runs"]:
        if run["model"] != table1.LSRWRL:
            continue
        key = table1.run_key(run["model"], data, run["seed"], opts, REPO / "results")
        assert store.run_path(run["model"], run["seed"], key).name == f"lsrwrl-seed{run['seed']}-{run['key']}.json"
        assert store.load_run(run["model"], run["seed"], key) is not None
    # A setting that changes the result (the default kernel path) is keyed.
    other = dataclasses.replace(opts, lsrwrl_overrides={**opts.lsrwrl_overrides, "kernel_path": "avx2"})
    assert table1.run_key(table1.LSRWRL, data, 0, other, REPO / "results") != table1.run_key(
        table1.LSRWRL, data, 0, opts, REPO / "results")
