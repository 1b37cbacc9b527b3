"""Table 1 at equal tuning budget: the study's committed files rendered as a table with per-user
significance.

Reads, never computes: the search records ``<out>/tuning/<dataset>/<model>.json`` and the test
runs ``<out>/equal_budget_runs/<dataset>/`` of :mod:`experiments.equal_budget` (a run counts when
its configuration is the record's chosen one, :func:`experiments.equal_budget.run_key`, for one of
``seeds``), and Popularity's runs of the paper-settings Table 1 (the runs
``<out>/table1_<dataset>_runs.json`` lists; Popularity has nothing to tune, so its row is marked
*untuned*). Writes, atomically, ``<out>/table1_equal_<dataset>.md`` and ``.csv``
(:func:`write_equal_table`).

Significance: LSRWRL against every other model with per-user values, user by user
(:func:`recsim_env.significance.compare_to_reference`): each model's per-user precision@10 and
NDCG@10 are first averaged over its seeds (:func:`~recsim_env.significance.mean_over_seeds`),
then a paired two-sided Wilcoxon signed-rank test (zero differences split), Holm-adjusted over the
models of the table (one family per metric), and a percentile bootstrap 95% interval (10,000
resamples of users, seed 0) of the mean difference **LSRWRL minus the model** (positive: LSRWRL
ahead). The CSV's ``p_value`` and ``ndcg_p_value`` are the Holm-adjusted p-values (what a claim
should quote); ``*_raw`` the unadjusted ones. Without LSRWRL runs the table has no significance
columns and says so; a model whose runs carry no per-user values (run files written before them)
has empty cells there.

Equal budget is the point: the trial count of a model is the number of trials its record holds;
a model with fewer than the most is marked (``fewer_trials``, a dagger in the Markdown).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.equal_budget import (
    DEFAULT_MODELS, DEFAULT_TRIALS, LSRWRL, QUICK_LSRWRL, QUICK_NEURAL, run_key, run_store,
)  # fmt: skip
from experiments.table1 import (
    LABELS, SHORT, SIM_METRICS, Run, RunStore, _cell, metric_summary, render_csv, run_per_user,
)  # fmt: skip
from recsim_env.files import atomic_write_text
from recsim_env.significance import compare_to_reference, mean_over_seeds

#: The model of the table taken from the paper-settings Table 1 (nothing to tune).
UNTUNED = "popularity"
#: Significance level of the generated verdicts (on the Holm-adjusted p-value).
ALPHA = 0.05
#: Bootstrap resamples of the confidence intervals.
N_RESAMPLES = 10_000
#: CSV columns of the significance, for P@10 (``precision``) and NDCG@10 (``ndcg``).
SIGNIFICANCE_COLUMNS: tuple[str, ...] = (
    "precision_diff", "precision_diff_ci_low", "precision_diff_ci_high", "p_value", "p_value_raw",
    "ndcg_diff", "ndcg_diff_ci_low", "ndcg_diff_ci_high", "ndcg_p_value", "ndcg_p_value_raw",
)  # fmt: skip
_PREFIX = {"precision@10": ("precision_", ""), "ndcg@10": ("ndcg_", "ndcg_")}


def equal_table_stem(out: str | os.PathLike, dataset: str) -> Path:
    """``<out>/table1_equal_<dataset>`` (add ``.md`` or ``.csv``)."""
    return Path(out) / f"table1_equal_{dataset}"


def load_records(out: str | os.PathLike, dataset: str) -> dict[str, dict[str, Any]]:
    """Every search record of a dataset, by model, in table order (``LABELS``, then by name).

    :raises RuntimeError: a record is unreadable or lacks its chosen configuration
    """
    records = {}
    for path in sorted((Path(out) / "tuning" / dataset).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            record["chosen"]["params"], record["settings"]["trials"]  # noqa: B018 (the fields used)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RuntimeError(f"{path}: not a search record of experiments.equal_budget ({type(exc).__name__}: "
                               f"{exc}); delete it or search that model again") from exc
        records[record["model"]] = record
    order = list(LABELS)
    return dict(sorted(records.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def load_equal_runs(out: str | os.PathLike, dataset: str, records: Mapping[str, dict[str, Any]],
                    seeds: Sequence[int]) -> dict[str, list[Run]]:
    """Each record's test runs on ``seeds`` (those with a file for the chosen configuration)."""
    store = run_store(out, dataset)
    runs: dict[str, list[Run]] = {}
    for model, record in records.items():
        found = [store.load_run(model, seed, run_key(record, seed)) for seed in seeds]
        runs[model] = [run for run in found if run is not None]
    return runs


def load_untuned_runs(out: str | os.PathLike, dataset: str) -> tuple[list[Run], list[int]]:
    """Popularity's runs of the paper-settings Table 1, and that table's seeds.

    :return: ``([], [])`` when ``<out>/table1_<dataset>_runs.json`` does not exist
    """
    path = Path(out) / f"table1_{dataset}_runs.json"
    if not path.is_file():
        return [], []
    summary = json.loads(path.read_text(encoding="utf-8"))
    store = RunStore(out, dataset)
    runs = [store.load_hashed(r["model"], r["seed"], r["key"]) for r in summary["runs"]
            if r["model"] == UNTUNED and r.get("error") is None]  # fmt: skip
    return runs, list(summary["options"]["seeds"])


def _compact(params: Mapping[str, Any]) -> str:
    """The chosen values as compact JSON, floats to 4 significant digits."""
    rounded = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in sorted(params.items())}
    return json.dumps(rounded, separators=(",", ":"))


def _per_user(runs: Sequence[Run]) -> dict[str, np.ndarray] | None:
    """Per-user values averaged over seeds; ``None`` unless every run has them."""
    values = [run_per_user(r) for r in runs]
    if not values or any(v is None for v in values):
        return None
    return mean_over_seeds(values)


def summarize_equal(
    records: Mapping[str, dict[str, Any]],
    runs: Mapping[str, list[Run]],
    seeds: Sequence[int],
    dataset: str,
    untuned: Sequence[Run] = (),
    untuned_seeds: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """One row per model with test runs: Popularity (untuned) first, then the records' order.

    :param records: model -> its search record
    :param runs: model -> its successful test runs (:func:`load_equal_runs`)
    :param seeds: the seeds the study tests on (``seeds_ok`` counts against them)
    :param dataset: dataset name
    :param untuned: Popularity's paper-settings Table 1 runs
    :param untuned_seeds: that table's seeds
    :return: the CSV rows (see the module docstring); with LSRWRL runs and at least one other
        model, each row also has :data:`SIGNIFICANCE_COLUMNS` (NaN on LSRWRL's row and where a
        model has no per-user values)
    """
    trials = {m: len(r.get("trials", [])) for m, r in records.items() if runs.get(m)}
    most = max(trials.values(), default=0)
    entries = [(UNTUNED, list(untuned), None, untuned_seeds)] if untuned else []
    entries += [(m, runs[m], records[m], seeds) for m in records if runs.get(m) and m != UNTUNED]
    rows = []
    for model, ok, record, expected in entries:
        row: dict[str, Any] = {
            "dataset": dataset, "model": LABELS.get(model, model),
            "source": "equal budget" if record else "Table 1 (untuned)",
            "trials": trials[model] if record else 0,
            "fewer_trials": bool(record) and trials[model] < most,
            "seeds_ok": f"{len(ok)}/{len(expected)}", "seeds": " ".join(str(r.seed) for r in ok),
            **metric_summary(ok),
            "validation_ndcg@10": float(record["chosen"]["value"]) if record else math.nan,
            "chosen": _compact(record["chosen"]["params"]) if record else "",
            "fixed": _compact(record["chosen"].get("fixed") or {}) if record else "",
        }  # fmt: skip
        rows.append(row)
    reference = _per_user(runs.get(LSRWRL, []))
    others = {LABELS.get(m, m): _per_user(ok) for m, ok, _, _ in entries if m != LSRWRL}
    others = {name: values for name, values in others.items() if values is not None}
    if reference is None or not others:
        return rows
    compared = compare_to_reference(reference, others, metrics=tuple(_PREFIX), n_resamples=N_RESAMPLES, seed=0)
    for row in rows:
        row.update(dict.fromkeys(SIGNIFICANCE_COLUMNS, math.nan))
    by_model = {row["model"]: row for row in rows}
    for c in compared:  # compare_to_reference's difference is model - reference: flip it
        diff, p = _PREFIX[c["metric"]]
        row = by_model[c["model"]]
        row[f"{diff}diff"], row[f"{diff}diff_ci_low"], row[f"{diff}diff_ci_high"] = \
            0.0 - c["mean_difference"], 0.0 - c["ci_high"], 0.0 - c["ci_low"]  # 0.0 - x: never -0.0
        row[f"{p}p_value"], row[f"{p}p_value_raw"] = c["p_holm"], c["p_value"]
    return rows


def has_significance(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the rows carry the significance columns (LSRWRL and another model were compared)."""
    return bool(rows) and "p_value" in rows[0]


def format_p(p: Any) -> str:
    """A p-value for text: ``"< 0.0001"``, else 2 significant digits (``"0.031"``); ``"–"`` if NaN."""
    p = float(p)
    if math.isnan(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence: is LSRWRL ahead of the best tuned baseline on P@10, and is it significant?

    The best tuned baseline is the equal-budget model other than LSRWRL with the highest mean
    P@10; "ahead" needs a positive mean difference, "significantly" a Holm-adjusted Wilcoxon
    p-value below :data:`ALPHA`. Works on :func:`summarize_equal` rows and on the CSV's rows
    (strings) alike.

    :return: the sentence, without a final period
    """
    lsrwrl = next((r for r in rows if r["model"] == LABELS[LSRWRL]), None)
    tuned = [r for r in rows if r["source"] == "equal budget" and r["model"] != LABELS[LSRWRL]]
    if lsrwrl is None:
        return "LSRWRL has no test runs yet, so there is no verdict"
    if not tuned:
        return "LSRWRL is the only tuned model with test runs, so there is no comparison yet"
    best = max(tuned, key=lambda r: float(r["precision@10_mean"]))
    ours, theirs = float(lsrwrl["precision@10_mean"]), float(best["precision@10_mean"])
    figures = f"P@10 {ours:.4f} against {theirs:.4f}"
    p = float(best.get("p_value") if best.get("p_value") not in (None, "") else math.nan)
    if math.isnan(p):
        where = "is ahead of" if ours > theirs else "is not ahead of"
        return f"LSRWRL {where} the best tuned baseline, {best['model']} ({figures}; no per-user test)"
    test = f"Holm-adjusted Wilcoxon p = {format_p(p)}" if p >= 1e-4 else f"Holm-adjusted Wilcoxon p {format_p(p)}"
    if ours > theirs:
        how = "significantly ahead of" if p < ALPHA else "ahead of, but not significantly,"
    else:
        how = "significantly behind" if p < ALPHA else "not ahead of"
    return f"LSRWRL is {how} the best tuned baseline, {best['model']} ({figures}, {test})"


def _command(dataset: str, records: Mapping[str, dict[str, Any]], seeds: Sequence[int]) -> tuple[str, bool]:
    """The ``experiments.equal_budget`` command of the records' settings, and whether it is a
    ``--quick`` smoke test."""
    parts = ["python -m experiments.equal_budget", "--dataset", dataset]
    first = next(iter(records.values()))["settings"]
    if set(records) != set(DEFAULT_MODELS):
        parts += ["--models", *records]
    if first["trials"] != DEFAULT_TRIALS.get(dataset):
        parts += ["--trials", str(first["trials"])]
    if list(seeds) != [0, 1, 2]:
        parts += ["--seeds", *map(str, seeds)]
    if first["searcher"] != "optuna":
        parts += ["--searcher", first["searcher"]]
    if first["split"] != "temporal":
        parts += ["--split", first["split"]]
    if first["asha"] is None:
        parts.append("--no-asha")
    quick = False
    for model, record in records.items():
        fixed = dict(record["settings"].get("fixed") or {})
        budget = QUICK_LSRWRL if model == LSRWRL else QUICK_NEURAL
        if "train_steps" in fixed or model == LSRWRL:
            if budget.items() <= fixed.items():
                quick = True
                fixed = {k: v for k, v in fixed.items() if k not in budget}
        parts += [f"--fix {model}:{k}={json.dumps(v)}" for k, v in sorted(fixed.items())]
    if quick:
        parts.append("--quick")
    return " ".join(parts), quick


def _trials_cell(row: Mapping[str, Any]) -> str:
    if row["source"] != "equal budget":
        return "untuned"
    return f"{row['trials']}" + (" †" if row["fewer_trials"] else "")


def _diff_cell(row: Mapping[str, Any], prefix: str) -> str:
    diff = row[f"{prefix}diff"]
    if math.isnan(diff):
        return "–"
    return f"{diff:+.4f} [{row[f'{prefix}diff_ci_low']:+.4f}, {row[f'{prefix}diff_ci_high']:+.4f}]"


def render_markdown(rows: Sequence[Mapping[str, Any]], records: Mapping[str, dict[str, Any]], seeds: Sequence[int],
                    dataset: str) -> str:
    """The ``table1_equal_<dataset>.md`` text: the table, the trial counts, the command, the notes.

    A pure function of its inputs (no date), so the same files render the same bytes.
    """
    command, quick = _command(dataset, records, seeds)
    significance = has_significance(rows)
    returns = [m for m in SIM_METRICS if any(not math.isnan(r[f"{m}_mean"]) for r in rows)]
    val = {r["settings"]["val_fraction"] for r in records.values()}
    lines = [
        f"# Table 1 at equal tuning budget on {dataset}"
        + (" (quick smoke-test budget: not a result)" if quick else ""),
        "",
        f"- Every tuned model is given the same number of validation trials († in the table: fewer were run, "
        f"see Trial counts); choices on holdout_last(train) only "
        f"(`holdout_last(train, {', '.join(map(str, sorted(val)))})`, validation NDCG@10 of the final model), "
        "never on the test split; the chosen configuration then trained with each seed and tested.",
        "- Popularity has nothing to tune: its row is Table 1's (paper settings, `results/table1_runs/`), "
        "marked *untuned*.",
        "- Metrics: test split, `recsim_env.evaluation.evaluate_ranking`; mean ± std (ddof=1) over seeds.",
        f"- Command: `{command}` (`--render-only` re-renders this page from the committed files).",
    ]
    if significance:
        lines.append(
            "- Significance, LSRWRL against each model: per-user P@10 and NDCG@10 averaged over the seeds first, "
            "paired two-sided Wilcoxon signed-rank test, Holm-adjusted over the models (p); difference = "
            f"LSRWRL − model, with a paired bootstrap 95% interval over users ({N_RESAMPLES:,} resamples).")
    elif LABELS[LSRWRL] not in {r["model"] for r in rows}:
        lines.append("- **LSRWRL has no test runs yet: no significance columns** (rendered without them).")
    else:
        lines.append("- No significance columns: no model to compare LSRWRL with has per-user values.")
    header = ["Model", "trials", "P@10", "R@10", "NDCG@10", "HR@10",
              *(f"return, {SIM_METRICS[m]}" for m in returns), "seeds ok"]  # fmt: skip
    if significance:
        header += ["Δ P@10 [95% CI]", "p (P@10)", "Δ NDCG@10 [95% CI]", "p (NDCG@10)"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["model"], _trials_cell(r), *(_cell(r, m) for m in SHORT), *(_cell(r, m, 3) for m in returns),
                 r["seeds_ok"]]  # fmt: skip
        if significance:
            cells += [_diff_cell(r, "precision_"), format_p(r["p_value"]), _diff_cell(r, "ndcg_"),
                      format_p(r["ndcg_p_value"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Verdict on P@10: {verdict(rows)}."]
    if significance and any(math.isnan(r["p_value"]) for r in rows if r["model"] != LABELS[LSRWRL]):
        lines.append("Models with – in the p columns have no per-user values in their run files (written before "
                     "they were kept): rerun them to test them.")
    tuned = [r for r in rows if r["source"] == "equal budget"]
    lines += ["", "## Trial counts", ""]
    for model, record in records.items():
        statuses = [t.get("status") for t in record.get("trials", [])]
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
        mark = " † fewer trials than the others: not an equal budget" if any(
            r["model"] == LABELS.get(model, model) and r["fewer_trials"] for r in tuned) else ""
        lines.append(f"- {LABELS.get(model, model)}: {len(statuses)} trials of {record['settings']['trials']} "
                     f"asked ({counts or 'none'}){mark}")
    pending = [LABELS.get(m, m) for m in records if not any(r["model"] == LABELS.get(m, m) for r in rows)]
    if pending:
        lines.append(f"- Searched, no test run yet: {', '.join(pending)}.")
    lines += ["", "## Chosen configurations", ""]
    for r in tuned:
        fixed = f"; fixed `{r['fixed']}`" if r["fixed"] != "{}" else ""
        lines.append(f"- {r['model']}: `{r['chosen']}` (validation NDCG@10 {r['validation_ndcg@10']:.4f}){fixed}")
    return "\n".join(lines) + "\n"


def write_equal_table(
    out: str | os.PathLike, dataset: str, seeds: Sequence[int] = (0, 1, 2)
) -> dict[str, Path]:
    """Render ``<out>/table1_equal_<dataset>.md`` and ``.csv`` from the committed files, atomically.

    :param out: results folder (the study's ``--out``)
    :param dataset: dataset name
    :param seeds: the study's test seeds
    :return: ``{"md": path, "csv": path}``; the CSV's ``quick`` column is true on the rows of a
        ``--quick`` smoke test (not a result)
    :raises FileNotFoundError: the dataset has no search record, or no model has a test run
    """
    records = load_records(out, dataset)
    if not records:
        raise FileNotFoundError(f"no search record under {Path(out) / 'tuning' / dataset}: run "
                                f"`python -m experiments.equal_budget --dataset {dataset}` first")
    runs = load_equal_runs(out, dataset, records, seeds)
    if not any(runs.values()):
        raise FileNotFoundError(f"no test run of the chosen configurations under {run_store(out, dataset).folder} "
                                f"(seeds {' '.join(map(str, seeds))}): the study has not tested any model yet")
    untuned, untuned_seeds = load_untuned_runs(out, dataset)
    rows = summarize_equal(records, runs, seeds, dataset, untuned, untuned_seeds)
    quick = _command(dataset, records, seeds)[1]
    for row in rows:
        row["quick"] = quick and row["source"] == "equal budget"
    stem = equal_table_stem(out, dataset)
    return {
        "md": atomic_write_text(stem.with_suffix(".md"), render_markdown(rows, records, seeds, dataset)),
        "csv": atomic_write_text(stem.with_suffix(".csv"), render_csv(rows)),
    }
