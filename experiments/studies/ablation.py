"""Ablation of the LSRWRL agent (issue 10): which interest vector and which loss carry its results.

Every variant is a set of :class:`~agents.config.TrainConfig` field overrides on one base
preset (``--base-preset``, default ``default``), in this order:

==================  =========================================================================
``both``            the base itself: long- and short-term interest, TD + next-item loss. The
                    issue's rows 3 (both interests) and 6 (both losses) are this one row.
``short-only``      ``interests="short"``: the Q-network sees the short-term interest alone.
``long-only``       ``interests="long"``: the long-term interest alone.
``td-only``         ``next_item_weight=0``, ``pretrain_steps=0``: the TD loss alone, no
                    supervised signal at all.
``next-item-only``  ``td_weight=0``: the next-item loss alone (pre-training, if the base has
                    it, stays).
``paper``           the ``paper`` preset's settings with ``max_episodes=None`` and
                    ``total_timesteps`` = the base's, so it is compared at the same step budget.
                    Its own budget (1000 passes over every training user, tens of millions of
                    steps on ML-100K) is out of reach here.
==================  =========================================================================

A variant whose overrides do not change the base (e.g. ``td-only`` on a base without the
next-item loss) is still run and listed; the settings section of the table says so. A variant
that is invalid on the base (``next-item-only`` on a base without the next-item loss leaves no
loss) is an error before anything runs: leave it out with ``--variants``.

Each (dataset, variant, seed) is trained twice through :func:`agents.training.train`, in two
*modes*: ``val`` (``tune=True``: trained on the train part of
:func:`recsim_env.splits.holdout_last`, measured on the held-out last ``val_fraction`` of each
train sequence) and ``test`` (``tune=False``: trained on the whole train part, measured on the
test split). Per run: precision, recall, NDCG and hit-rate @10 of the shared evaluator (averaged
over the users with at least one item in the evaluated part) and the greedy policy's simulated
return in the environment of the run's *own* evaluation split (``greedy_mean_return``,
``greedy_mean_likes``, ``greedy_mean_length``, from :func:`agents.evaluate.evaluate_model`):
``MovieLensRec-v0`` in test mode with the replay user, one episode per user with at least one
*liked* item in the evaluated part (the test items for ``test``, the held-out train items for
``val``; ``greedy_n_users`` counts them), reward rating/5 on a like, ``max_steps`` steps at most.
The test run's figure is the quantity the TD loss optimises, on held-out data.

Usage::

    python -m experiments.studies.ablation                                  # ML-100K, seeds 0 1 2, every variant
    python -m experiments.studies.ablation --variants both td-only --seeds 0
    python -m experiments.studies.ablation --base-preset searched --set torch_threads=1
    python -m experiments.studies.ablation --quick --seeds 0                # smoke test, not a result

Resumable, with :mod:`experiments.table1`'s machinery: every finished run is written at once,
atomically, to ``<out>/ablation_runs/<dataset>/<variant>-<val|test>-seed<seed>-<key>.json``, where
``<key>`` hashes the run's whole TrainConfig minus the fields that do not change a result
(:func:`experiments.table1.run_key`: the same key as Table 1's LSRWRL run with that config). A
rerun reads the finished runs instead of training, a changed preset or option reruns what it
changes, ``--force`` recomputes everything; an interrupted ablation loses at most the run in
progress. A failed run is reported (table, exit status 1) and not written, so the next call
retries it. A code change that alters results without changing any setting is not detected:
rerun with ``--force``.

Outputs per dataset, rewritten after every run and a pure function of the run files and the
options (no date; the command is rebuilt from the options): ``<out>/ablation_<dataset>.md`` (the
table, mean ± std over the seeds with ddof=1, the command, the settings), ``.csv`` (one row per
variant, every metric of both modes, floats unrounded), ``_runs.json`` (every run, its per-user
values left in the run files) and ``_p10.png`` (validation and test precision@10 per variant with
std error bars; written once the last run is done).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import parse_overrides

from experiments.table1 import (
    _UNKEYED_CONFIG,
    LSRWRL,
    METRICS,
    QUICK_LSRWRL,
    SHORT,
    Run,
    RunStore,
    TableOptions,
    _duration,
    _error_text,
    _estimate,
    _hash,
    load_dataset,
    lsrwrl_config,
    render_csv,
    run_key,
    run_lsrwrl,
    run_summary,
)
from recsim_env.dataset import DATASETS, MovieLensData
from recsim_env.files import atomic_write_bytes, atomic_write_text


@dataclass(frozen=True)
class Variant:
    """One row of the ablation.

    :param label: what it changes, in words (the table's second column)
    :param overrides: TrainConfig field overrides on the base
    :param preset: the preset it starts from instead of the base preset (``None``: the base's)
    """

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None


#: The variants, in table order (see the module docstring).
VARIANTS: dict[str, Variant] = {
    "both": Variant("the base: long + short interest, TD + next-item loss (issue rows 3 and 6)"),
    "short-only": Variant("short-term interest only", {"interests": "short"}),
    "long-only": Variant("long-term interest only", {"interests": "long"}),
    "td-only": Variant("TD loss only, no supervised signal", {"next_item_weight": 0.0, "pretrain_steps": 0}),
    "next-item-only": Variant("next-item loss only, no TD loss", {"td_weight": 0.0}),
    "paper": Variant("the `paper` preset at the base's step budget", {"max_episodes": None}, preset="paper"),
}  # fmt: skip
#: Run modes: ``val`` trains on the validation slice's train part (``tune=True``), ``test`` on the
#: whole train part.
MODES: tuple[str, ...] = ("val", "test")
MODE_LABELS = {"val": "validation", "test": "test"}
#: The greedy policy's simulated return in the run's own evaluation environment (kept from
#: ``train``'s metrics; see the module docstring).
GREEDY_METRICS: tuple[str, ...] = ("greedy_mean_return", "greedy_mean_likes", "greedy_mean_length", "greedy_n_users")
#: Folder of the run files under ``--out``.
RUNS_FOLDER = "ablation_runs"
#: TrainConfig fields ``--set`` may not change: the ablation sets them itself (or another option
#: does), or the variants vary them (change the base through ``--base-preset`` instead).
RESERVED_FIELDS: dict[str, str] = {
    **{name: "set by the ablation for each run" for name in ("dataset", "seed", "split_seed", "tune", "preset",
                                                            "name", "runs_dir", "data_dir", "expect_official")},
    "eval_k": "the ablation reports metrics @10",
    **{name: "the variants set it; choose the base through --base-preset (e.g. a preset file in "
             "agents/presets/)" for v in VARIANTS.values() for name in v.overrides if name != "max_episodes"},
}  # fmt: skip
PROG = "python -m experiments.studies.ablation"


@dataclass
class AblationOptions:
    """Settings of one ablation (the CLI maps one to one onto these).

    :param seeds: seeds; each trains every variant in every mode (the split is temporal unless
        ``overrides`` say otherwise, and the same for every seed)
    :param variants: names of :data:`VARIANTS` to run (listed in table order whatever the order here)
    :param base_preset: :data:`agents.config.PRESETS` name the variants are built on
    :param modes: subset of :data:`MODES`
    :param quick: a tiny training budget (Table 1's ``QUICK_LSRWRL``): a smoke test, not a result
    :param overrides: TrainConfig field overrides on the base and every variant (``paper``
        included), applied after the preset and ``quick``; not the fields of :data:`RESERVED_FIELDS`
    :param data_dir: root holding the dataset folders (default: the loader's search order)
    :param download: allow downloading a dataset that is found nowhere
    :param expect_official: check the data against the official release's figures (``False``
        for an edited copy)
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    base_preset: str = "default"
    modes: list[str] = field(default_factory=lambda: list(MODES))
    quick: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    download: bool = True
    expect_official: bool = True

    def check(self, datasets: Sequence[str] = ("ml-100k",)) -> AblationOptions:
        """Check names and build every run's config once, before anything runs or is written.

        :param datasets: the datasets the ablation will run on
        :return: ``self``
        :raises ValueError: one line naming the problem and the valid choices
        """
        from agents.config import PRESETS

        for what, given, valid in (("variant", self.variants, list(VARIANTS)), ("mode", self.modes, list(MODES)),
                                   ("dataset", datasets, list(DATASETS))):  # fmt: skip
            unknown = [name for name in given if name not in valid]
            if unknown or not given:
                raise ValueError(f"unknown {what}(s) {unknown or '(none given)'}; choose from {', '.join(valid)}")
        if self.base_preset not in PRESETS:
            raise ValueError(f"unknown base preset {self.base_preset!r}; choose from {', '.join(PRESETS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds}: give at least one seed, each once")
        for name in self.overrides:
            if name in RESERVED_FIELDS:
                raise ValueError(f"--set {name}: {RESERVED_FIELDS[name]}")
        for dataset in datasets:
            for variant in self.variants:
                for mode in self.modes:
                    try:
                        variant_config(dataset, variant, mode, self.seeds[0], self, Path("results"))
                    except ValueError as exc:
                        problem = " ".join(str(exc).split())
                        raise ValueError(f"variant {variant!r} on base preset {self.base_preset!r}: {problem}; "
                                         "fix the base or leave the variant out (--variants)") from None
        return self


# Configurations ------------------------------------------------------------------------------


def _table_options(opts: AblationOptions, preset: str, overrides: dict[str, Any]) -> TableOptions:
    return TableOptions(
        seeds=list(opts.seeds), models=[LSRWRL], quick=opts.quick, lsrwrl_preset=preset,
        lsrwrl_overrides=overrides, data_dir=opts.data_dir, download=opts.download,
        expect_official=opts.expect_official,
    )  # fmt: skip


def variant_options(dataset: str, variant: str, mode: str, opts: AblationOptions) -> TableOptions:
    """The Table 1 options whose LSRWRL run is this variant in this mode.

    Base: ``opts.base_preset`` + quick budget + ``opts.overrides``; the variant's overrides and
    ``tune`` (mode ``val``) come last. ``paper`` starts from the ``paper`` preset instead and takes
    the base's ``total_timesteps``.

    :param dataset: dataset name
    :param variant: a key of :data:`VARIANTS`
    :param mode: ``"val"`` or ``"test"``
    :param opts: ablation settings
    """
    spec = VARIANTS[variant]
    overrides = {**opts.overrides, **spec.overrides, "tune": mode == "val"}
    if variant == "paper":
        base = lsrwrl_config(dataset, 0, _table_options(opts, opts.base_preset, dict(opts.overrides)), Path("."))
        overrides["total_timesteps"] = base.total_timesteps
    return _table_options(opts, spec.preset or opts.base_preset, overrides)


def run_prefix(variant: str, mode: str) -> str:
    """The name prefix of a run's files: ``<variant>-<mode>``."""
    return f"{variant}-{mode}"


def variant_config(dataset: str, variant: str, mode: str, seed: int, opts: AblationOptions, out: Path):
    """The validated :class:`~agents.config.TrainConfig` of one run of the ablation."""
    name = f"ablation-{run_prefix(variant, mode)}-{dataset}-seed{seed}"
    return lsrwrl_config(dataset, seed, variant_options(dataset, variant, mode, opts), Path(out), name=name)


def keyed_config(config: Any) -> dict[str, Any]:
    """A config as a dict without the fields that do not change a result (as in the run key)."""
    values = config.to_dict()
    for unkeyed in _UNKEYED_CONFIG:
        values.pop(unkeyed, None)
    return values


def config_changes(config: Any, base: Any) -> dict[str, Any]:
    """The keyed fields in which ``config`` differs from ``base`` (``preset`` too when it differs)."""
    mine, theirs = config.to_dict(), base.to_dict()
    names = [n for n in mine if n not in _UNKEYED_CONFIG or n == "preset"]
    return {n: mine[n] for n in names if mine[n] != theirs[n]}


# Running ---------------------------------------------------------------------------------------


@dataclass
class VariantRun:
    """One finished (or failed) run: a variant, a mode, and Table 1's :class:`~experiments.table1.Run`
    (``metrics`` holds ``METRICS``, ``n_users`` and :data:`GREEDY_METRICS`)."""

    variant: str
    mode: str
    run: Run


def ablation_plan(opts: AblationOptions) -> list[tuple[int, str, str]]:
    """The (seed, variant, mode) runs of one dataset, in the order they run: seed by seed, so an
    interrupted ablation has whole seeds of every variant."""
    variants = [v for v in VARIANTS if v in opts.variants]
    modes = [m for m in MODES if m in opts.modes]
    return [(seed, variant, mode) for seed in opts.seeds for variant in variants for mode in modes]


def ablation_key(data: MovieLensData, variant: str, mode: str, seed: int, opts: AblationOptions) -> dict[str, Any]:
    """Everything that decides one run's result (Table 1's LSRWRL key of its config); its hash
    names the run's file."""
    return run_key(LSRWRL, data, seed, variant_options(data.name, variant, mode, opts), Path("."))


def run_one(
    data: MovieLensData, variant: str, mode: str, seed: int, opts: AblationOptions, out: str | Path,
    force: bool = False,
) -> tuple[Run, bool]:  # fmt: skip
    """One run: read from its result file, or trained now and its file written.

    :param data: the dataset
    :param variant: a key of :data:`VARIANTS`
    :param mode: ``"val"`` or ``"test"``
    :param seed: seed of the agent
    :param opts: ablation settings
    :param out: results folder (run directories go to ``<out>/runs/``)
    :param force: train again even if the run's file exists (the file is replaced when it succeeds)
    :return: the run, and whether it was computed now (``False``: read from its file). A failed
        run has ``error`` set and no file.
    """
    out = Path(out)
    store = RunStore(out, data.name, RUNS_FOLDER)
    key = ablation_key(data, variant, mode, seed, opts)
    prefix = run_prefix(variant, mode)
    stored = None if force else store.load_run(prefix, seed, key)
    if stored is not None:
        return stored, False
    run = run_lsrwrl(data.name, seed, variant_options(data.name, variant, mode, opts), out,
                     name=f"ablation-{prefix}-{data.name}-seed{seed}", simulate=False, keep=GREEDY_METRICS)  # fmt: skip
    run.key = _hash(key)
    if run.error is None:
        store.save_run(run, key, name=prefix)
    return run, True


# Summaries and files ---------------------------------------------------------------------------

#: Per-mode figures of a summary row (mean and std over the seeds that succeeded).
ROW_METRICS: tuple[str, ...] = (*METRICS, *GREEDY_METRICS, "n_users")


def summarize(runs: list[VariantRun], dataset: str, opts: AblationOptions) -> list[dict[str, Any]]:
    """One row per variant: for each mode, mean and std (ddof=1; 0 for one seed, NaN for none) of
    every metric over the seeds that succeeded, and how many of the planned seeds did.

    :param runs: the runs of one dataset done so far
    :param dataset: dataset name
    :param opts: ablation settings (variant order, planned seeds and modes)
    :return: rows in :data:`VARIANTS` order
    """
    rows = []
    for variant in (v for v in VARIANTS if v in opts.variants):
        row: dict[str, Any] = {"dataset": dataset, "variant": variant, "changes": VARIANTS[variant].label}
        counts, attempted = {}, 0
        for mode in MODES:
            mine = [r.run for r in runs if r.variant == variant and r.mode == mode]
            ok = [r for r in mine if r.metrics is not None]
            attempted += len(mine)
            planned = len(opts.seeds) if mode in opts.modes else 0
            counts[mode] = (len(ok), planned)
            row[f"{mode}_seeds_ok"] = f"{len(ok)}/{planned}"
            row[f"{mode}_seeds"] = " ".join(str(r.seed) for r in ok)
            for metric in ROW_METRICS:
                values = np.array([r.metrics[metric] for r in ok if metric in r.metrics], dtype=float)
                row[f"{mode}_{metric}_mean"] = float(values.mean()) if len(values) else math.nan
                row[f"{mode}_{metric}_std"] = (float(values.std(ddof=1)) if len(values) > 1
                                               else 0.0 if len(values) else math.nan)  # fmt: skip
            row[f"{mode}_train_seconds_mean"] = float(np.mean([r.fit_seconds for r in ok])) if ok else math.nan
        done = sum(k for k, _ in counts.values())
        planned = sum(n for _, n in counts.values())
        failed = [r.run for r in runs if r.variant == variant and r.run.error]
        row["status"] = ("ok" if done == planned else "partial" if done
                         else "failed" if failed else "pending")  # fmt: skip
        shown = {f"{k}/{n}" for k, n in (counts[m] for m in opts.modes)}
        row["seeds_ok"] = (shown.pop() if len(shown) == 1
                           else ", ".join(f"{m} {counts[m][0]}/{counts[m][1]}" for m in MODES if m in opts.modes))
        row["error"] = failed[0].error if failed else ""
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], mode: str, metric: str, digits: int = 4) -> str:
    mean, std = row[f"{mode}_{metric}_mean"], row[f"{mode}_{metric}_std"]
    if math.isnan(mean):
        return "–"
    one = row[f"{mode}_seeds_ok"].startswith("1/")
    return f"{mean:.{digits}f}" if one else f"{mean:.{digits}f} ± {std:.{digits}f}"


def reproduce_command(dataset: str, opts: AblationOptions) -> str:
    """The ``experiments.studies.ablation`` command line that computes (or re-reads) this table's runs."""
    variants = [v for v in VARIANTS if v in opts.variants]
    parts = [PROG, "--datasets", dataset, "--seeds", *map(str, opts.seeds)]
    if variants != list(VARIANTS):
        parts += ["--variants", *variants]
    if opts.base_preset != "default":
        parts += ["--base-preset", opts.base_preset]
    modes = [m for m in MODES if m in opts.modes]
    if modes != list(MODES):
        parts += ["--modes", *modes]
    parts += [f"--set {k}={_cli_value(v)}" for k, v in sorted(opts.overrides.items())]
    if opts.quick:
        parts.append("--quick")
    return " ".join(parts)


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def render_markdown(rows: list[dict[str, Any]], data: MovieLensData, opts: AblationOptions) -> str:
    """The ``ablation_<dataset>.md`` text: protocol, table, each variant's settings, failures.

    A pure function of the rows, the dataset and the options (no date), so the same run files
    always render the same bytes.
    """
    seed = opts.seeds[0]
    base = variant_config(data.name, "both", "test", seed, opts, Path("."))
    first_test = next((r for r in rows if not math.isnan(r["test_greedy_n_users_mean"])), None)
    users = ("" if first_test is None else
             f" ({first_test['test_greedy_n_users_mean']:.0f} users here; the ranking metrics average over the "
             f"{first_test['test_n_users_mean']:.0f} users with a test item)")  # fmt: skip
    full_budget = 1000 * data.n_users * base.max_steps
    # The ML-1M ratings.dat these runs use is a reconstruction (../shared/data/SOURCES.md); an edited copy is neither.
    reconstructed = " (measured on the reconstructed ML-1M)" if data.name == "ml-1m" and opts.expect_official else ""
    lines = [
        f"# LSRWRL ablation on {data.name}" + (" (quick smoke-test budget: not a result)" if opts.quick else ""),
        "",
        f"- Base: preset `{opts.base_preset}`"
        + (f" with `{json.dumps(opts.overrides, sort_keys=True)}`" if opts.overrides else "")
        + (" and the quick budget" if opts.quick else "")
        + f" ({base.total_timesteps:,} environment steps); every variant is the base plus the fields listed "
        "under *Settings*. The issue's rows 3 (both interests) and 6 (both losses) are one row, `both`.",
        f"- Data: {data.name}{reconstructed}, {data.n_users} users, {data.n_items} items, {data.n_ratings} ratings; "
        f"**{base.split}** split per user, {base.train_ratio:.0%} train; seeds {' '.join(map(str, opts.seeds))} "
        "(mean ± std, ddof=1).",
        f"- *Validation* columns: trained on the train part of `holdout_last(train, {base.val_fraction})` "
        "(`tune=True`), measured on the held-out last "
        f"{base.val_fraction:.0%} of each train sequence. *Test* columns: trained on the whole train part, "
        "measured on the test split. Both by `recsim_env.evaluation.evaluate_ranking` (full ranking, "
        "train items excluded, relevant = all held-out items).",
        "- *Greedy return (test)*: mean return of the masked greedy policy in `MovieLensRec-v0`'s test "
        "environment (replay user, reward rating/5 on a like, at most "
        f"{base.max_steps} steps), one episode per user with a liked test item{users}: the quantity the TD "
        "loss optimises. The validation runs' greedy return (their validation environment) is in the `.csv`.",
        f"- `paper`: the `paper` preset's settings at the base's {base.total_timesteps:,} steps; its own budget, "
        f"1000 passes over every training user (up to {full_budget:,} steps here), is out of reach on this "
        "machine.",
        f"- Command: `{reproduce_command(data.name, opts)}` (re-reads finished runs from "
        f"`{RUNS_FOLDER}/{data.name}/`).",
        "",
        "| Variant | What it changes | val P@10 | val R@10 | val NDCG@10 | test P@10 | test R@10 | test NDCG@10 "
        "| test HR@10 | greedy return (test) | seeds ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [*(_cell(r, "val", m) for m in ("precision@10", "recall@10", "ndcg@10")),
                 *(_cell(r, "test", m) for m in METRICS), _cell(r, "test", "greedy_mean_return", 3)]  # fmt: skip
        lines.append(f"| {r['variant']} | {r['changes']} | " + " | ".join(cells) + f" | {r['seeds_ok']} |")
    lines += ["", "## Settings", "",
              "Fields in which each variant's configuration differs from the base's (test mode; the validation "
              "runs add `tune=true`):", ""]  # fmt: skip
    for variant in (r["variant"] for r in rows):
        changes = config_changes(variant_config(data.name, variant, "test", seed, opts, Path(".")), base)
        text = f"`{json.dumps(changes, sort_keys=True)}`" if changes else "none"
        note = " (the same configuration as the base)" if not changes and variant != "both" else ""
        lines.append(f"- {variant}: {text}{note}")
    fields = sorted(keyed_config(base).items())
    lines += ["", f"Base configuration (`both`, test mode; preset `{base.preset}`):", "", "```json", "{",
              ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in fields), "}", "```"]  # fmt: skip
    failures = [r for r in rows if r["error"]]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {r['variant']} ({r['seeds_ok']} seeds ok): {r['error']}" for r in failures]
    return "\n".join(lines) + "\n"


def plot_png(rows: list[dict[str, Any]], title: str, modes: Sequence[str] = MODES) -> bytes:
    """Grouped bars of validation and test precision@10 per variant (std error bars over seeds).

    :param rows: summary rows (:func:`summarize`); a variant without a successful run in a mode
        has no bar there
    :param title: the chart's title
    :param modes: the modes to draw (default both)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.0))
    drawn = [m for m in MODES if m in modes]
    width = 0.8 / len(drawn)
    for i, mode in enumerate(drawn):
        ax.bar(x + (i - (len(drawn) - 1) / 2) * width, [r[f"{mode}_precision@10_mean"] for r in rows], width=width,
               yerr=[r[f"{mode}_precision@10_std"] for r in rows], capsize=3,
               color={"val": "tab:green", "test": "tab:blue"}[mode],
               label=f"{MODE_LABELS[mode]} {SHORT['precision@10']}")  # fmt: skip
    ax.set_xticks(x, [r["variant"] for r in rows])
    ax.set_ylabel("precision@10 (mean over seeds)")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    from agents.plots import figure_png

    return figure_png(fig, dpi=120)


@dataclass
class AblationResult:
    """What :func:`run_ablation` produced for one dataset.

    :param runs: every run
    :param rows: the summary rows (see :func:`summarize`)
    :param paths: files written, by kind (``md``, ``csv``, ``runs``, ``png``)
    """

    runs: list[VariantRun]
    rows: list[dict[str, Any]]
    paths: dict[str, Path]


def write_outputs(
    runs: list[VariantRun], data: MovieLensData, opts: AblationOptions, out: str | Path, plot: bool = True
) -> AblationResult:
    """Write the ablation files of one dataset, each atomically (the bar chart only if ``plot``)."""
    out = Path(out)
    rows = summarize(runs, data.name, opts)
    stem = out / f"ablation_{data.name}"
    records = [{"variant": r.variant, "mode": r.mode, **run_summary(r.run)} for r in runs]
    paths = {
        "md": atomic_write_text(stem.with_suffix(".md"), render_markdown(rows, data, opts)),
        "csv": atomic_write_text(stem.with_suffix(".csv"), render_csv(rows)),
        "runs": atomic_write_text(
            out / f"ablation_{data.name}_runs.json",
            json.dumps({"options": asdict(opts), "runs": records}, indent=2, default=str, sort_keys=True) + "\n",
        ),
    }
    if plot:
        try:
            title = f"LSRWRL ablation, {data.name}, seeds {' '.join(map(str, opts.seeds))}"
            paths["png"] = atomic_write_bytes(out / f"ablation_{data.name}_p10.png", plot_png(rows, title, opts.modes))
        except Exception as exc:  # a plotting problem must not lose the table
            print(f"warning: bar chart not written: {_error_text(exc)}", file=sys.stderr)
    return AblationResult(runs, rows, paths)


def run_ablation(
    data: MovieLensData,
    opts: AblationOptions,
    out: str | Path,
    log: Callable[[str], None] = print,
    force: bool = False,
    render_only: bool = False,
) -> AblationResult:
    """Train (or read) every run of one dataset's ablation and write its files after each run.

    :param data: the dataset
    :param opts: ablation settings (checked with :meth:`AblationOptions.check` first)
    :param out: results folder (created if needed)
    :param log: progress printer (``print`` by default): which run, elapsed time, an estimate
    :param force: retrain every run, replacing its file when it succeeds
    :param render_only: train nothing: write the files from the run files already there (runs
        without a file are left out; the seeds columns say how many are missing)
    :return: the :class:`AblationResult`
    """
    opts.check([data.name])
    runs: list[VariantRun] = []
    plan = ablation_plan(opts)
    durations: dict[str, list[float]] = {}
    start = time.perf_counter()
    result: AblationResult | None = None
    for index, (seed, variant, mode) in enumerate(plan, 1):
        remaining = [(s, run_prefix(v, m)) for s, v, m in plan[index - 1:]]
        log(f"[{index}/{len(plan)} {data.name} seed {seed}] {variant}, {MODE_LABELS[mode]} ... "
            f"(elapsed {_duration(time.perf_counter() - start)}{_estimate(remaining, durations)})")  # fmt: skip
        t0 = time.perf_counter()
        if render_only:
            key = ablation_key(data, variant, mode, seed, opts)
            stored = RunStore(out, data.name, RUNS_FOLDER).load_run(run_prefix(variant, mode), seed, key)
            if stored is None:
                log("    no run file: pending")
                continue
            run, computed = stored, False
        else:
            run, computed = run_one(data, variant, mode, seed, opts, out, force=force)
        if computed:
            durations.setdefault(run_prefix(variant, mode), []).append(time.perf_counter() - t0)
        runs.append(VariantRun(variant, mode, run))
        if run.error:
            log(f"    FAILED: {run.error}")
        else:
            m = run.metrics
            how = "computed" if computed else f"done earlier, read from {RUNS_FOLDER}/{data.name}/"
            log(f"    P@10 {m['precision@10']:.4f}  R@10 {m['recall@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  "
                f"HR@10 {m['hit_rate@10']:.4f}  greedy return {m['greedy_mean_return']:.3f} "
                f"({m['greedy_mean_likes']:.2f} likes)  train {run.fit_seconds:.1f}s  ({how})")  # fmt: skip
        if not render_only:
            result = write_outputs(runs, data, opts, out, plot=index == len(plan))
    if render_only:
        result = write_outputs(runs, data, opts, out, plot=True)
    assert result is not None, "an ablation has at least one run"
    return result


# CLI -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ablation's command-line options."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n", 1)[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"], metavar="NAME",
                        help=f"datasets, of {', '.join(DATASETS)} (default: ml-100k)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="VARIANT",
                        help=f"subset of the variants, listed in table order (default: all of {', '.join(VARIANTS)})")
    parser.add_argument("--base-preset", default="default",
                        help="agents.config preset the variants are built on (default: %(default)s)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), metavar="MODE",
                        help="val: train on the validation slice's train part, metrics on the slice; test: "
                             "train on the whole train part, metrics on the test split (default: val test)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                        help="TrainConfig override on the base and every variant, repeatable (e.g. "
                             "total_timesteps=500000, torch_threads=1); changes the runs' keys")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke-test budget ({QUICK_LSRWRL['total_timesteps']:,} steps per run): not a result")
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument("--data-dir", default=None,
                        help="root holding ml-100k/ and ml-1m/ (default: $MOVIELENS_DATA, then the cache)")
    parser.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    parser.add_argument("--edited-copy", action="store_true",
                        help="the data are an edited copy: skip the check against the official figures")
    parser.add_argument("--force", action="store_true",
                        help="retrain every run even if its result file exists (default: reuse finished runs)")
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing: write the ablation files from the finished runs' files (a partly "
                             "filled table, e.g. while two processes share the runs)")
    return parser


def options_from_args(args: argparse.Namespace) -> AblationOptions:
    """The checked :class:`AblationOptions` of parsed options.

    :raises ValueError: a bad name, seed list or override (one line)
    """
    return AblationOptions(
        seeds=list(args.seeds), variants=list(dict.fromkeys(args.variants)), base_preset=args.base_preset,
        modes=list(dict.fromkeys(args.modes)), quick=args.quick, overrides=parse_overrides(args.overrides),
        data_dir=args.data_dir, download=not args.no_download, expect_official=not args.edited_copy,
    ).check(args.datasets)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 done, 1 a run failed, 2 bad options or data
    (nothing written)."""
    args = build_parser().parse_args(argv)
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    datasets = []
    for name in dict.fromkeys(args.datasets):
        table_opts = TableOptions(data_dir=opts.data_dir, download=opts.download, expect_official=opts.expect_official)
        try:
            datasets.append(load_dataset(name, table_opts))
        except (OSError, ValueError) as exc:
            print(f"{PROG}: error: cannot load {name}: {exc}", file=sys.stderr)
            return 2
    failed = False
    for data in datasets:
        t0 = time.perf_counter()
        result = run_ablation(data, opts, args.out, force=args.force, render_only=args.render_only)
        print(f"{data.name}: {time.perf_counter() - t0:.0f} s; wrote " + ", ".join(map(str, result.paths.values())))
        failed |= any(r.run.error for r in result.runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
