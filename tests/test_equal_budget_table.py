"""``python -m experiments.equal_budget --render-only``: the equal-budget Table 1 with per-user
significance, rendered from search records and run files written here, and its documentation
blocks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import docs_results
from experiments.equal_budget import QUICK_NEURAL, main, run_key, run_store
from experiments.table1 import Run, RunStore, _hash, per_user_record

DATASET = "ml-100k"
N_USERS = 40
USERS = np.arange(3, 3 + N_USERS)


def _record(model: str, trials: int, params: dict, fixed: dict | None = None) -> dict:
    settings = {"version": 1, "dataset": DATASET, "n_ratings": 100_000, "model": model, "trials": 2, "seed": 0,
                "searcher": "optuna", "metric": "ndcg@10", "split": "temporal", "train_ratio": 0.8,
                "val_fraction": 0.2, "fixed": fixed or {}, "asha": {"max_t": 1}}  # fmt: skip
    return {"model": model, "settings": settings, "trials": [{"trial": f"t{i}", "status": "completed"}
                                                            for i in range(trials)],
            "chosen": {"trial": "t0", "params": params, "fixed": {}, "value": 0.2}}  # fmt: skip


def _run(model: str, seed: int, p10: np.ndarray, ndcg: np.ndarray) -> Run:
    metrics = {"precision@10": float(p10.mean()), "recall@10": float(p10.mean()) / 2,
               "ndcg@10": float(ndcg.mean()), "hit_rate@10": 0.5, "n_users": len(p10)}  # fmt: skip
    per_user = per_user_record({"user": USERS, "precision@10": p10, "ndcg@10": ndcg})
    return Run(model=model, seed=seed, metrics=metrics, per_user=per_user)


def write_study(out: Path, per_seed: dict[str, list[tuple[np.ndarray, np.ndarray]]], trials: dict[str, int],
                fixed: dict[str, dict] | None = None) -> None:
    """Search records and run files as ``experiments.equal_budget`` writes them."""
    store = run_store(out, DATASET)
    for model, seeds in per_seed.items():
        params = {"k": 20} if model in ("itemcf", "usercf") else {"lr": 0.00123456}
        record = _record(model, trials[model], params, (fixed or {}).get(model))
        path = out / "tuning" / DATASET / f"{model}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        for seed, (p10, ndcg) in enumerate(seeds):
            store.save_run(_run(model, seed, p10, ndcg), run_key(record, seed))


def write_table1_popularity(out: Path, p10: np.ndarray, ndcg: np.ndarray) -> None:
    """Popularity's runs in Table 1's files (``table1_runs/`` and ``table1_<dataset>_runs.json``)."""
    runs = []
    for seed in (0, 1, 2):
        key = {"model": "popularity", "seed": seed}
        run = _run("popularity", seed, p10, ndcg)
        run.key = _hash(key)
        run.metrics.update(sim_return_replay=2.5, sim_return_ease=0.9)
        RunStore(out, DATASET).save_run(run, key)
        runs.append({"model": "popularity", "seed": seed, "key": run.key, "error": None})
    summary = {"options": {"seeds": [0, 1, 2]}, "runs": runs}
    (out / f"table1_{DATASET}_runs.json").write_text(json.dumps(summary))


def render(out: Path) -> tuple[list[dict[str, str]], str]:
    assert main(["--dataset", DATASET, "--out", str(out), "--render-only"]) == 0
    with open(out / f"table1_equal_{DATASET}.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows, (out / f"table1_equal_{DATASET}.md").read_text(encoding="utf-8")


@pytest.fixture
def values():
    rng = np.random.default_rng(0)
    sasrec = [(rng.integers(0, 4, N_USERS) / 10, rng.uniform(0.0, 0.4, N_USERS)) for _ in range(3)]
    # LSRWRL above SASRec on every user and every seed; ItemCF identical to LSRWRL
    lsrwrl = [(p + 0.1 * (2 + USERS % 3 + (i == 1)), n + 0.3) for i, (p, n) in enumerate(sasrec)]
    return {"sasrec": sasrec, "lsrwrl": lsrwrl, "itemcf": list(lsrwrl)}


def test_lsrwrl_better_on_every_user_is_significant_and_identical_gives_p_one(tmp_path: Path, values) -> None:
    write_study(tmp_path, values, {"sasrec": 2, "lsrwrl": 2, "itemcf": 2})
    write_table1_popularity(tmp_path, values["sasrec"][0][0] * 0, values["sasrec"][0][1] * 0)
    rows, md = render(tmp_path)
    by = {r["model"]: r for r in rows}
    assert list(by) == ["Popularity", "ItemCF", "SASRec", "LSRWRL"]
    for column in ("model", "trials", "precision@10_mean", "precision@10_std", "recall@10_mean", "ndcg@10_mean",
                   "p_value", "ndcg_p_value", "precision_diff_ci_low", "precision_diff_ci_high",
                   "sim_return_replay_mean", "chosen"):  # fmt: skip
        assert column in rows[0], column
    sasrec = by["SASRec"]
    # the seeds are averaged per user first: the difference is the difference of the seed means
    diff = np.mean([p.mean() for p, _ in values["lsrwrl"]]) - np.mean([p.mean() for p, _ in values["sasrec"]])
    assert float(sasrec["precision_diff"]) == pytest.approx(diff, abs=1e-9) and diff > 0.2
    assert float(sasrec["p_value"]) < 1e-4 and float(sasrec["ndcg_p_value"]) < 1e-4
    assert 0 < float(sasrec["precision_diff_ci_low"]) < diff < float(sasrec["precision_diff_ci_high"])
    assert float(sasrec["p_value"]) >= float(sasrec["p_value_raw"])  # Holm never lowers a p-value
    itemcf = by["ItemCF"]  # the same per-user values as LSRWRL
    assert float(itemcf["p_value"]) == 1.0 and float(itemcf["ndcg_p_value"]) == 1.0
    assert float(itemcf["precision_diff_ci_low"]) == pytest.approx(0, abs=1e-7) == float(itemcf["precision_diff"])
    popularity = by["Popularity"]
    assert popularity["source"] == "Table 1 (untuned)" and popularity["trials"] == "0"
    assert float(popularity["sim_return_replay_mean"]) == 2.5
    assert math.isnan(float(by["SASRec"]["sim_return_replay_mean"]))  # the study's runs carry no returns
    assert float(popularity["precision_diff"]) > 0 and float(popularity["p_value"]) < 1e-4
    assert math.isnan(float(by["LSRWRL"]["p_value"]))  # the reference has no test against itself
    assert by["SASRec"]["chosen"] == '{"lr":0.001235}' and by["SASRec"]["seeds_ok"] == "3/3"
    assert "choices on holdout_last(train) only" in md and "| Popularity | untuned |" in md
    assert "python -m experiments.equal_budget --dataset ml-100k --models itemcf sasrec lsrwrl --trials 2" in md
    assert "Verdict on P@10: LSRWRL is significantly ahead of the best tuned baseline, ItemCF" not in md
    assert "LSRWRL is significantly ahead of the best tuned baseline, SASRec" not in md  # ItemCF is the best
    assert "LSRWRL is not ahead of the best tuned baseline, ItemCF" in md  # identical: equal means, p = 1
    before = {p.name: p.read_bytes() for p in tmp_path.glob("table1_equal_*")}
    render(tmp_path)  # a pure function of the files
    assert {p.name: p.read_bytes() for p in tmp_path.glob("table1_equal_*")} == before


def test_without_lsrwrl_runs_no_significance_columns_and_the_page_says_so(tmp_path: Path, values) -> None:
    write_study(tmp_path, {"sasrec": values["sasrec"], "itemcf": values["itemcf"][:1]}, {"sasrec": 2, "itemcf": 2},
                fixed={"sasrec": {**QUICK_NEURAL, "max_len": 20}})
    rows, md = render(tmp_path)
    # --quick's budgets in the records: a smoke test, said so, and the other fixed values kept
    assert md.startswith("# Table 1 at equal tuning budget on ml-100k (quick smoke-test budget: not a result)")
    assert "--trials 2 --fix sasrec:max_len=20 --quick`" in md and {r["quick"] for r in rows} == {"True"}
    assert [r["model"] for r in rows] == ["ItemCF", "SASRec"] and rows[0]["seeds_ok"] == "1/3"
    assert not {"p_value", "ndcg_p_value", "precision_diff_ci_low"} & set(rows[0])
    assert "LSRWRL has no test runs yet: no significance columns" in md
    assert "Verdict on P@10: LSRWRL has no test runs yet" in md


def test_a_model_with_fewer_trials_is_marked_and_a_stale_run_file_is_not_read(tmp_path: Path, values) -> None:
    write_study(tmp_path, values, {"sasrec": 2, "lsrwrl": 2, "itemcf": 1})
    stale = _record("sasrec", 2, {"lr": 0.5})  # an earlier choice: its files must not count
    run_store(tmp_path, DATASET).save_run(_run("sasrec", 0, values["sasrec"][0][0] + 0.9, values["sasrec"][0][1]),
                                          run_key(stale, 0))
    rows, md = render(tmp_path)
    by = {r["model"]: r for r in rows}
    assert by["ItemCF"]["fewer_trials"] == "True" and by["SASRec"]["fewer_trials"] == "False"
    assert "| ItemCF | 1 † |" in md and "ItemCF: 1 trials of 2 asked (1 completed) † fewer trials" in md
    assert float(by["SASRec"]["precision@10_mean"]) == pytest.approx(np.mean([p.mean() for p, _ in values["sasrec"]]))


def test_render_only_without_records_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no search record under .*: run `python -m experiments.equal_budget"):
        main(["--dataset", DATASET, "--out", str(tmp_path), "--render-only"])


def test_the_docs_blocks_render_from_the_csvs_and_the_readme_stays_short(tmp_path: Path, values,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # empty results: both datasets "not run yet", and the verdict paragraph still reads true
    monkeypatch.setattr(docs_results, "RESULTS", tmp_path)
    block = docs_results.BLOCKS["table1-equal"]()
    assert "ML-100K: not run yet: make equal-budget DATASET=ml-100k; ML-1M: not run yet" in block
    assert "has not finished on any dataset" in block
    assert docs_results.BLOCKS["table1-equal-ml-1m"]() == "ML-1M: not run yet: make equal-budget DATASET=ml-1m.\n"
    # searching: the records so far, before any test run
    (tmp_path / "tuning" / "ml-1m").mkdir(parents=True)
    (tmp_path / "tuning" / "ml-1m" / "ease.json").write_text(json.dumps(
        {"model": "ease", "settings": {"trials": 6}, "chosen": {"params": {"l2": 500.0}}, "trials": [{}] * 6}))
    assert docs_results.BLOCKS["table1-equal-ml-1m"]() == (
        "ML-1M: searching (`make equal-budget DATASET=ml-1m` resumes); search records so far: ease (6 trials); "
        "no test runs yet.\n")
    (tmp_path / "tuning" / "ml-1m" / "ease.json").unlink()
    # ML-100K done (LSRWRL significantly ahead of SASRec, the only tuned baseline), ML-1M not
    write_study(tmp_path, {"sasrec": values["sasrec"], "lsrwrl": values["lsrwrl"]}, {"sasrec": 2, "lsrwrl": 2})
    render(tmp_path)
    (tmp_path / f"table1_{DATASET}.csv").write_text("model,precision@10_mean\nSASRec,0.2045\nLSRWRL,0.2315\n")
    block = docs_results.BLOCKS["table1-equal"]()
    assert "| SASRec | 0.2045 |" in block and "| LSRWRL | 0.2315 |" in block and "| ref. |" in block
    assert "On ML-100K, LSRWRL" not in block and "At equal budget on ML-100K, LSRWRL is significantly ahead" in block
    assert "ML-1M: not run yet: make equal-budget DATASET=ml-1m." in block and "the claim holds" in block
    page = docs_results.BLOCKS["table1-equal-ml-100k"]()
    assert page.startswith("## Table 1 at equal tuning budget on ml-100k") and "### Trial counts" in page
    # both datasets with every model: the README, with this block in place, keeps to 200 lines
    for dataset in ("ml-100k", "ml-1m"):
        lines = ["dataset,model,source,trials,fewer_trials,precision@10_mean,p_value"]
        lines += [f"{dataset},{m},equal budget,16,False,0.2,0.01" for m in
                  ("ItemCF", "UserCF", "EASE", "SASRec", "STAMP", "GRU4Rec", "LSRWRL")]  # fmt: skip
        lines.insert(1, f"{dataset},Popularity,Table 1 (untuned),0,False,0.1,0.001")
        (tmp_path / f"table1_equal_{dataset}.csv").write_text("\n".join(lines) + "\n")
    full = docs_results.BLOCKS["table1-equal"]()
    readme = (docs_results.ROOT / "README.md").read_text(encoding="utf-8")
    current = readme.split("<!-- results:table1-equal start -->")[1].split("<!-- results:table1-equal end -->")[0]
    assert len(readme.splitlines()) - current.count("\n") + full.count("\n") + 2 <= 200
