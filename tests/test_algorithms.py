"""``experiments.algorithms``: the algorithm table's runs, resume and rendering (tiny budgets)."""

from __future__ import annotations

import csv
import json

import torch as th

from experiments import algorithms

th.set_num_threads(1)

TINY = dict(n_envs=2, max_steps=5, total_timesteps=48, n_steps=8, batch_size=8, n_epochs=1, embed_dim=8,
            dnn_hidden=(8,), net_arch=(16,), eval_freq=24, checkpoint_freq=0, torch_threads=1, pretrain_steps=2,
            next_item_batch=4)


def test_tuning_picks_the_best_validation_rate_for_every_row_and_the_table_is_rendered(tmp_path, monkeypatch):
    monkeypatch.setitem(algorithms.LR_GRID, "ppo", (1e-4, 1e-2))
    out = tmp_path / "results"
    said = []
    args = dict(algos=["ppo"], policies=["extractor", "extractor+next-item"], seeds=[0], dataset="ml-100k", out=out,
                overrides=TINY, runs_dir=str(tmp_path / "runs"), say=said.append)
    algorithms.run_study(**args)
    started = [line for line in said if not line.startswith("  ")]
    # The tuned row first (its tuning, then its test), then the other row, at the same rate, untuned.
    assert [line.split()[:3] for line in started] == [["tuning", "ppo", "extractor+next-item"]] * 2 + [
        ["testing", "ppo", "extractor+next-item"], ["testing", "ppo", "extractor"]]
    runs = algorithms.load_runs(out / "algorithms_runs" / "ml-100k")
    val = {lr: runs[algorithms.run_name("ppo", "extractor+next-item", "val", 0, lr)] for lr in (1e-4, 1e-2)}
    assert all(r["evaluated_on"] == "validation" and r["config"]["tune"] for r in val.values())
    best = max(val, key=lambda lr: val[lr]["metrics"]["precision@10"])
    assert algorithms.chosen_lr(runs, "ppo") == best
    test = runs[algorithms.run_name("ppo", "extractor+next-item", "test", 0, best)]
    assert test["evaluated_on"] == "test" and test["config"]["learning_rate"] == best
    assert test["training"]["pretrain_steps"] == 2 and test["validation_curve"][-1][0] == 48
    plain = runs[algorithms.run_name("ppo", "extractor", "test", 0, best)]
    assert plain["config"]["learning_rate"] == best and plain["training"]["pretrain_steps"] == 0
    assert plain["config"]["next_item_weight"] == 0.0
    assert not any(stem.startswith("ppo-extractor-val") for stem in runs)

    # Resume: finished runs are skipped (no training at all now).
    monkeypatch.setattr(algorithms, "run_one", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    algorithms.run_study(**args)

    rows = algorithms.render("ml-100k", out, seeds=[0])
    with (out / "algorithms_ml-100k.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert {"algo", "policy", "seeds", "precision@10_mean", "precision@10_std", "greedy_mean_return_mean"} <= set(table[0])
    ppo = {r["policy"]: r for r in table if r["algo"] == "ppo"}
    assert set(ppo) == {"extractor", "extractor+next-item"}
    assert float(ppo["extractor+next-item"]["precision@10_mean"]) == test["metrics"]["precision@10"]
    assert float(ppo["extractor"]["precision@10_mean"]) == plain["metrics"]["precision@10"]
    assert ppo["extractor"]["seeds"] == "0" and float(ppo["extractor"]["learning_rate"]) == best
    assert rows[0]["policy"] == "extractor"  # table order: algorithms.POLICIES
    page = (out / "algorithms_ml-100k.md").read_text()
    assert "Still to run" in page and "- dqn: 0 of 3 tuning runs" in page
    assert f"ppo / default-policy: test seeds 0 of 1 (lr {best:g})" in page
    assert (out / "algorithms_ml-100k_curves.png").stat().st_size > 0
    assert json.loads(json.dumps(rows[0]))  # rows are plain data


def test_rows_that_repeat_another_row_run_last(tmp_path, monkeypatch):
    for algo in ("ppo", "maskable_ppo"):
        monkeypatch.setitem(algorithms.LR_GRID, algo, (1e-4,))

    def fake_run(config, path):  # records what ran, in order, without training
        record = {"metrics": {algorithms.SELECT_METRIC: 0.1, "greedy_mean_return": 3.0}, "wall_seconds": 0.0}
        path.write_text(json.dumps(record))
        return record

    monkeypatch.setattr(algorithms, "run_one", fake_run)
    said = []
    algorithms.run_study(algos=["maskable_ppo", "ppo"], policies=list(algorithms.POLICIES), seeds=[0, 1],
                         dataset="ml-100k", out=tmp_path, overrides={}, runs_dir=str(tmp_path / "runs"),
                         say=said.append)
    tests = [tuple(line.split()[1:3]) + (line.split()[-1],) for line in said if line.startswith("testing")]
    repeats = [t for t in tests if t[:2] in algorithms.REPEATS]
    assert len(tests) == 2 * 3 * 2 and len(repeats) == 4
    assert tests[-4:] == repeats  # after every other run, whatever the algos' order
    assert tests[0] == ("ppo", "extractor+next-item", "0")  # then the recommended rows of the others


def _record(seed: int, p10: float) -> dict:
    return {"config": {"seed": seed}, "metrics": dict.fromkeys(algorithms.METRICS, p10),
            "training": {"train_seconds": 1.0, "env_steps_per_second": 1.0}, "validation_curve": []}


def test_a_repeating_row_shows_the_repeated_rows_runs_until_it_has_its_own(tmp_path, monkeypatch):
    monkeypatch.setitem(algorithms.LR_GRID, "ppo", (1e-4,))
    monkeypatch.setitem(algorithms.LR_GRID, "maskable_ppo", (1e-4,))
    policy = "extractor+next-item"
    runs = {algorithms.run_name(a, policy, "val", 0, 1e-4): _record(0, 0.2) for a in ("ppo", "maskable_ppo")}
    runs.update({algorithms.run_name("ppo", policy, "test", s, 1e-4): _record(s, p) for s, p in ((0, 0.22), (1, 0.24))})
    (row,) = [r for r in algorithms.table_rows(runs, "ml-100k", tmp_path) if r["algo"] == "maskable_ppo"]
    assert row["runs_of"] == "ppo" and row["seeds"] == "0 1"
    assert abs(row["precision@10_mean"] - 0.23) < 1e-12 and abs(row["precision@10_std"] - 0.0141421) < 1e-6  # ddof=1
    runs[algorithms.run_name("maskable_ppo", policy, "test", 0, 1e-4)] = _record(0, 0.21)
    (row,) = [r for r in algorithms.table_rows(runs, "ml-100k", tmp_path) if r["algo"] == "maskable_ppo"]
    assert row["runs_of"] == "maskable_ppo" and row["precision@10_mean"] == 0.21


def test_the_page_measures_rows_against_the_targets_and_says_by_how_much_a_row_misses():
    def row(algo, policy, p10, ret, seeds="0 1 2", runs_of=None):
        return {"algo": algo, "policy": policy, "runs_of": runs_of or algo, "seeds": seeds,
                "precision@10_mean": p10, "greedy_mean_return_mean": ret}

    rows = [row("dqn", "extractor+next-item", 0.2200, 3.5), row("qrdqn", "extractor+next-item", 0.2100, 2.9, "0 1"),
            row("ppo", "extractor+next-item", 0.2150, 3.2), row("ppo", "default-policy", 0.11, 2.0),
            row("a2c", "default-policy", 0.12, 2.5), row("ppo", "extractor", 0.05, 0.1),
            row("Popularity", "reference (Table 1)", 0.1069, 2.33, runs_of="Table 1"),
            row("SASRec", "reference (Table 1)", 0.2045, 3.08, runs_of="Table 1")]
    lines = {line.split(":")[0]: line for line in algorithms.target_lines(rows, 3) if line.startswith("- ")}
    assert set(lines) == {"- dqn / extractor+next-item, seeds 0 1 2", "- qrdqn / extractor+next-item, seeds 0 1 (2 of 3",
                          "- ppo / extractor+next-item, seeds 0 1 2", "- ppo / default-policy, seeds 0 1 2",
                          "- a2c / default-policy, seeds 0 1 2"}  # no line for the extractor row or references
    qrdqn = lines["- qrdqn / extractor+next-item, seeds 0 1 (2 of 3"]
    assert "not final" in qrdqn and "SASRec's 0.2045: met" in qrdqn
    assert "greedy return 2.90 against 3.0: missed by 0.10 (3%)" in qrdqn
    assert "missed, 4.5% below it" in qrdqn  # 1 - 0.21 / 0.22
    assert "stretch" not in lines["- dqn / extractor+next-item, seeds 0 1 2"]  # DQN is the stretch's reference
    assert "within 3% of DQN's 0.2200: met" in lines["- ppo / extractor+next-item, seeds 0 1 2"]  # 2.3% below
    assert "Popularity's 2.33: missed by 0.33 (14%)" in lines["- ppo / default-policy, seeds 0 1 2"]
    assert "Popularity's 2.33: met" in lines["- a2c / default-policy, seeds 0 1 2"]


def _popularity_table(out, greedy_return: float) -> None:
    """A Table 1 CSV with the Popularity row alone (what the budget probes compare with)."""
    keys = ["precision@10", "recall@10", "ndcg@10", "hit_rate@10", "sim_return_replay"]
    header = ["model", "status", "seeds", *[f"{k}_{s}" for k in keys for s in ("mean", "std")]]
    values = ["Popularity", "ok", "0 1 2", *["0.1", "0.0"] * 4, str(greedy_return), "0.0"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1_ml-100k.csv").write_text(",".join(header) + "\n" + ",".join(values) + "\n")


def test_a_default_policy_row_below_popularity_trains_again_at_larger_budgets_until_it_reaches_it(tmp_path, monkeypatch):
    for algo in ("ppo", "dqn"):
        monkeypatch.setitem(algorithms.LR_GRID, algo, (1e-4,))
    # ppo's generic agent reaches Popularity's 2.33 only at the largest budget; dqn's at the common one.
    returns = {("ppo", algorithms.BUDGET): 2.0, ("ppo", 1_200_000): 2.2, ("ppo", 2_400_000): 2.5,
               ("dqn", algorithms.BUDGET): 2.4}
    trained = []

    def fake_run(config, path):
        trained.append((config.algo, config.policy, config.seed, config.total_timesteps))
        value = returns.get((config.algo, config.total_timesteps), 3.0) if config.policy == "multi_hot" else 3.0
        record = {"config": config.to_dict(), "metrics": {**dict.fromkeys(algorithms.METRICS, 0.1),
                                                          "greedy_mean_return": value},
                  "training": {"train_seconds": 1.0, "env_steps_per_second": 1.0}, "validation_curve": [],
                  "wall_seconds": 0.0}
        path.write_text(json.dumps(record))
        return record

    monkeypatch.setattr(algorithms, "run_one", fake_run)
    _popularity_table(tmp_path, 2.33)
    args = dict(algos=["ppo", "dqn"], policies=["default-policy", "extractor+next-item"], seeds=[0, 1],
                dataset="ml-100k", out=tmp_path, overrides={}, runs_dir=str(tmp_path / "runs"), say=lambda line: None)
    algorithms.run_study(**args)
    probes = [t for t in trained if t[3] != algorithms.BUDGET]
    assert probes == [("ppo", "multi_hot", 0, 1_200_000), ("ppo", "multi_hot", 0, 2_400_000)]
    assert trained.index(probes[0]) > max(i for i, t in enumerate(trained) if t[3] == algorithms.BUDGET)
    page = algorithms.markdown(algorithms.table_rows(algorithms.load_runs(tmp_path / "algorithms_runs" / "ml-100k"),
                                                     "ml-100k", tmp_path),
                               algorithms.load_runs(tmp_path / "algorithms_runs" / "ml-100k"), "ml-100k", [0, 1])
    (ppo,) = [line for line in page.splitlines() if line.startswith("- ppo / default-policy")]
    assert "seed 0 at 1,200,000 steps: greedy return 2.20 (precision@10 0.1000), missed by 0.13" in ppo
    assert "seed 0 at 2,400,000 steps: greedy return 2.50 (precision@10 0.1000), met" in ppo
    assert "at 2,400,000 steps (its return" not in page  # no probe left to run
    # The probe runs are not test seeds of the row: its mean is the common budget's.
    assert "| ppo | default-policy | 0.0001 | 0 1 | 0.1000 ± 0.0000 | 0.1000 ± 0.0000 | 0.1000 ± 0.0000 | 2.00 ± 0.00" in page

    # Resumed with a lower bar, nothing runs again; a missing probe is listed while it is needed.
    trained.clear()
    algorithms.run_study(**args)
    assert trained == []
    (tmp_path / "algorithms_runs" / "ml-100k" / f"{algorithms.run_name('ppo', 'default-policy', 'budget2400000', 0, 1e-4)}.json").unlink()
    runs = algorithms.load_runs(tmp_path / "algorithms_runs" / "ml-100k")
    page = algorithms.markdown(algorithms.table_rows(runs, "ml-100k", tmp_path), runs, "ml-100k", [0, 1])
    assert "- ppo / default-policy: seed 0 at 2,400,000 steps" in page
