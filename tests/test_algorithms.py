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


def test_tuning_picks_the_best_validation_rate_and_the_table_is_rendered(tmp_path, monkeypatch):
    monkeypatch.setitem(algorithms.LR_GRID, "ppo", (1e-4, 1e-2))
    out = tmp_path / "results"
    args = dict(algos=["ppo"], policies=["extractor+next-item"], seeds=[0], dataset="ml-100k", out=out,
                overrides=TINY, runs_dir=str(tmp_path / "runs"), say=lambda *a: None)
    algorithms.run_study(**args)
    runs = algorithms.load_runs(out / "algorithms_runs" / "ml-100k")
    val = {lr: runs[algorithms.run_name("ppo", "extractor+next-item", "val", 0, lr)] for lr in (1e-4, 1e-2)}
    assert all(r["evaluated_on"] == "validation" and r["config"]["tune"] for r in val.values())
    best = max(val, key=lambda lr: val[lr]["metrics"]["precision@10"])
    assert algorithms.chosen_lr(runs, "ppo", "extractor+next-item") == best
    test = runs[algorithms.run_name("ppo", "extractor+next-item", "test", 0, best)]
    assert test["evaluated_on"] == "test" and test["config"]["learning_rate"] == best
    assert test["training"]["pretrain_steps"] == 2 and test["validation_curve"][-1][0] == 48

    # Resume: finished runs are skipped (no training at all now).
    monkeypatch.setattr(algorithms, "run_one", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    algorithms.run_study(**args)

    rows = algorithms.render("ml-100k", out, seeds=[0])
    with (out / "algorithms_ml-100k.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert {"algo", "policy", "seeds", "precision@10_mean", "precision@10_std", "greedy_mean_return_mean"} <= set(table[0])
    (ppo,) = [r for r in table if r["algo"] == "ppo"]
    assert float(ppo["precision@10_mean"]) == test["metrics"]["precision@10"] and ppo["seeds"] == "0"
    assert rows[0]["policy"] == "extractor+next-item"
    page = (out / "algorithms_ml-100k.md").read_text()
    assert "Still to run" in page and "dqn / default-policy: 0 of 3 tuning runs" in page
    assert (out / "algorithms_ml-100k_curves.png").stat().st_size > 0
    assert json.loads(json.dumps(rows[0]))  # rows are plain data
