"""Hyperparameter search for LSRWRL on the validation slice, with Ray Tune.

Every trial trains LSRWRL through :func:`agents.training.train` with ``tune=True``: it trains
on the train part of the validation slice (:func:`recsim_env.splits.holdout_last`) and is
evaluated on its held-out part, never on the test split. Every ``eval_freq`` environment steps
the trial reports validation precision@10 to Tune (``train(..., on_evaluation=...)``); an ASHA
scheduler stops the trials that trail the others at each rung, and Optuna's TPE (through Tune's
``OptunaSearch``; ``--searcher random`` for Tune's own random search) picks the next
configurations from :data:`SEARCH_SPACE` (LSRWRL's space,
:data:`agents.search_space.LSRWRL_SEARCH_SPACE`). Budgets are environment steps, never seconds.

The chosen configuration (the best validation precision@10 among the trials that trained the
full budget) is written as a preset file ``agents/presets/<name>.json`` that
:mod:`agents.config` loads (``make train ARGS="--preset searched"``), and the search's
record (space, settings, every trial's curve and status) as ``<out>/search_<name>.json`` and
``.md``.

Usage::

    python -m experiments.search --trials 10 --max-steps 200000        # local Ray, 1 CPU per trial
    python -m experiments.search --address auto --trials 64 --cpus-per-trial 2

Interrupted: run the same command again; the Tune experiment (``--storage``) is restored, and
finished trials are kept.

:func:`tune_experiment` (one Tune experiment of TPE samples under ASHA, restored when it
exists), :func:`trial_record` and :func:`choose` are shared with :mod:`experiments.equal_budget`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.config import PRESET_DIR, PRESETS
from agents.search_space import LSRWRL_SEARCH_SPACE, Space, tune_domains
from experiments.ray_cluster import (
    NodeDataError,
    add_ray_arguments,
    check_data_on_nodes,
    require_ray,
    session_from_args,
)

#: The search space: TrainConfig field -> distribution (:mod:`agents.search_space`), LSRWRL's
#: one space. Everything else is the base preset's value.
SEARCH_SPACE: Space = LSRWRL_SEARCH_SPACE
#: Validation metric the search maximises (reported by every evaluation during training).
METRIC = "precision@10"


def tune_space(space: Space = SEARCH_SPACE) -> dict[str, Any]:
    """A space (default :data:`SEARCH_SPACE`) as Ray Tune sampling domains."""
    require_ray()
    return tune_domains(space)


@dataclass
class SearchOptions:
    """Settings of one search.

    :param name: experiment name; names the record files and the Tune experiment
    :param dataset: dataset of every trial (default ``"ml-100k"``)
    :param seed: seed of every trial and of the searcher
    :param base_preset: preset the sampled fields override (default ``"default"``)
    :param trials: number of trials (sampled configurations)
    :param max_steps: environment steps of a trial that is never stopped (ASHA's ``max_t``)
    :param eval_freq: environment steps between validation reports
    :param grace_steps: steps every trial trains before ASHA may stop it
    :param reduction_factor: ASHA keeps the best ``1/reduction_factor`` of the trials at each rung
    :param searcher: ``"optuna"`` (TPE) or ``"random"``
    :param cpus_per_trial: CPUs of a trial (its torch threads are set to match)
    :param data_dir: data root of the trials (default: each worker's ``$MOVIELENS_DATA`` / cache)
    :param expect_official: check the dataset against the official release's figures (``False``
        for an edited copy)
    :param runs_dir: parent folder of the trials' run directories
    :param preset_name: write the chosen configuration as this preset (``None``: do not)
    :param fixed: further TrainConfig fields every trial sets, not searched (their keys leave the
        space)
    """

    name: str = "lsrwrl-ml-100k"
    dataset: str = "ml-100k"
    seed: int = 0
    base_preset: str = "default"
    trials: int = 10
    max_steps: int = 200_000
    eval_freq: int = 25_000
    grace_steps: int = 50_000
    reduction_factor: int = 3
    searcher: str = "optuna"
    cpus_per_trial: int = 1
    data_dir: str | None = None
    expect_official: bool = True
    runs_dir: str = "runs/search"
    preset_name: str | None = "searched"
    fixed: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> SearchOptions:
        problems = []
        clash = sorted(set(self.fixed) & set(self.trial_overrides(fixed=False)))
        if clash:
            problems.append(f"fixed sets {clash}, which the search options set (max_steps -> total_timesteps, "
                            "eval_freq, cpus_per_trial -> torch_threads, ...): use those options")
        for fname in ("trials", "max_steps", "eval_freq", "grace_steps", "cpus_per_trial"):
            if getattr(self, fname) < 1:
                problems.append(f"{fname} must be >= 1, got {getattr(self, fname)}")
        if self.reduction_factor < 2:
            problems.append(f"reduction_factor must be >= 2, got {self.reduction_factor}")
        if self.grace_steps > self.max_steps:
            problems.append(f"grace_steps={self.grace_steps} exceeds max_steps={self.max_steps}")
        if self.eval_freq > self.grace_steps:
            problems.append(f"eval_freq={self.eval_freq} exceeds grace_steps={self.grace_steps}: no report "
                            "before ASHA's first rung")
        if self.searcher not in ("optuna", "random"):
            problems.append(f"searcher={self.searcher!r}: use 'optuna' or 'random'")
        if not self.name or "/" in self.name:
            problems.append(f"name={self.name!r} must be a non-empty file name")
        if problems:
            raise ValueError("invalid search options:\n  - " + "\n  - ".join(problems))
        return self

    def space(self) -> Space:
        """The searched part of :data:`SEARCH_SPACE`: without the ``fixed`` fields."""
        return {k: v for k, v in SEARCH_SPACE.items() if k not in self.fixed}

    def trial_overrides(self, fixed: bool = True) -> dict[str, Any]:
        """The TrainConfig fields every trial sets (on top of the base preset and the sample):
        the budget and run settings, then ``fixed`` (unless ``fixed=False``)."""
        return {**dict(
            dataset=self.dataset, seed=self.seed, tune=True, total_timesteps=self.max_steps,
            eval_freq=self.eval_freq, torch_threads=self.cpus_per_trial, max_train_seconds=None,
            max_episodes=None, checkpoint_freq=self.eval_freq, data_dir=self.data_dir,
            expect_official=self.expect_official, runs_dir=str(Path(self.runs_dir).resolve()), name=f"search-{self.name}",
        ), **(self.fixed if fixed else {})}  # fmt: skip


def trial_config(opts: SearchOptions, sample: dict[str, Any]):
    """The validated :class:`~agents.config.TrainConfig` of one trial."""
    from agents.config import make_config

    return make_config(opts.base_preset, **opts.trial_overrides(), **sample)


def _trial_name(trial) -> str:
    return f"trial-{trial.trial_id}"


def search_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable: train one sampled configuration, reporting each validation evaluation.

    A trial checkpoints at every evaluation (``checkpoint_freq = eval_freq``; checkpoints do not
    change the floats). When Tune restarts an interrupted trial (a restored experiment), it
    continues its run from the last checkpoint (:func:`agents.training.unfinished_run`) instead
    of training again from step 0; its later reports continue the curve, and its time counts
    from the restart.
    """
    from ray import tune

    from agents.training import train, unfinished_run

    opts = SearchOptions(**config["options"])
    sample = {k: config[k] for k in opts.space() if k in config}

    def report(step: int, row: dict[str, float]) -> None:
        tune.report({"step": int(step), **{k: float(v) for k, v in row.items() if k != "step"}})

    run_config = trial_config(opts, sample)
    unfinished = unfinished_run(run_config)
    train(run_config, unfinished, progress=False, resume=unfinished is not None, on_evaluation=report)


# Record -----------------------------------------------------------------------------------------


def trial_record(result: Any, params: Iterable[str], metric: str, budget: int | None = None) -> dict[str, Any]:
    """One finished (or stopped, or failed) Tune trial as a JSON-ready record.

    :param result: the trial's :class:`ray.tune.Result`
    :param params: the searched parameter names (read from the trial's config)
    :param metric: the reported validation metric; its curve is ``[step, value]`` per report
    :param budget: steps of a complete trial (default: the trial's last reported ``"budget"``)
    :return: ``trial``, ``params``, ``status`` (``"completed"``: reached its budget; ``"stopped
        early"``: stopped by the scheduler or interrupted; ``"failed"``), ``last_step``,
        ``last_<metric>`` (the last report's value), ``curve``, ``seconds`` (wall time of the
        trial, as Tune measured it) and ``error``
    """
    config = result.config or {}
    curve = []
    frame = result.metrics_dataframe
    if frame is not None and metric in frame:
        curve = [[int(s), round(float(v), 6)] for s, v in zip(frame["step"], frame[metric])]
    last_step = curve[-1][0] if curve else 0
    metrics = result.metrics or {}
    if budget is None:
        budget = metrics.get("budget")
    status = "failed" if result.error is not None else (
        "completed" if curve and budget is not None and last_step >= budget else "stopped early")
    seconds = metrics.get("time_total_s")
    return {
        "trial": Path(result.path).name,
        "params": {k: config[k] for k in params if k in config},
        "status": status,
        "last_step": last_step,
        f"last_{metric}": curve[-1][1] if curve else None,
        "curve": curve,
        "seconds": None if seconds is None else round(float(seconds), 2),
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:500],
    }


def choose(trials: list[dict[str, Any]], metric: str = METRIC) -> dict[str, Any]:
    """The best trial: highest final validation ``metric`` among those that trained the full budget.

    :raises RuntimeError: no trial completed its budget
    """
    complete = [t for t in trials if t["status"] == "completed" and t[f"last_{metric}"] is not None]
    if not complete:
        raise RuntimeError("no trial trained the full budget; nothing to choose (see the record)")
    return max(complete, key=lambda t: t[f"last_{metric}"])


def render_markdown(record: dict[str, Any]) -> str:
    """The ``search_<name>.md`` summary: settings, then every trial by its final metric."""
    o = record["options"]
    lines = [
        f"# LSRWRL hyperparameter search `{o['name']}` on {o['dataset']} (validation slice)",
        "",
        f"- {len(record['trials'])} trials, {record['searcher']}, ASHA on validation {METRIC} every "
        f"{o['eval_freq']:,} steps (grace {o['grace_steps']:,}, max {o['max_steps']:,}, reduction factor "
        f"{o['reduction_factor']}), base preset `{o['base_preset']}`, seed {o['seed']}, "
        f"{o['cpus_per_trial']} CPU(s) per trial.",
        "- Every trial: `tune=True` (trained on the validation slice's train part, evaluated on its "
        "held-out part; the test split is never read).",
        f"- Wall time {record['seconds'] / 60:.1f} min{record.get('machine_note', '')}.",
        f"- Chosen: `{record['best']['trial']}`, written as preset `{record['preset']}`."
        if record.get("preset") else f"- Best: `{record['best']['trial']}`.",
        "",
        f"| trial | status | steps | {METRIC} | " + " | ".join(SEARCH_SPACE) + " |",
        "|---|---|---|---|" + "---|" * len(SEARCH_SPACE),
    ]
    order = sorted(record["trials"], key=lambda t: (-(t[f"last_{METRIC}"] or -1.0), t["trial"]))
    for t in order:
        value = t[f"last_{METRIC}"]
        cells = [t["trial"], t["status"], f"{t['last_step']:,}", "-" if value is None else f"{value:.4f}"]
        cells += [_fmt(t["params"].get(k)) for k in SEARCH_SPACE]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def write_preset(path: Path, name: str, params: dict[str, Any], record_path: Path, opts: SearchOptions) -> Path:
    """Write the chosen configuration as a preset file (see :mod:`agents.config`)."""
    from recsim_env.files import atomic_write_text

    payload = {
        "description": f"chosen by experiments.search `{opts.name}` (validation {METRIC}, "
                       f"{opts.max_steps:,}-step trials) on top of preset `{opts.base_preset}`",
        "record": str(record_path),
        "base_preset": opts.base_preset,
        "overrides": {k: params[k] for k in sorted(params)},
    }  # fmt: skip
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


# Driver -----------------------------------------------------------------------------------------


def searcher_name(searcher: str) -> str:
    """How a record names the searcher (``"optuna"`` or ``"random"``), with the library version."""
    if searcher == "optuna":
        import optuna

        return f"Optuna TPE via ray.tune.search.optuna.OptunaSearch (optuna {optuna.__version__})"
    return "Tune random search (BasicVariantGenerator)"


def tune_experiment(
    trainable: Callable[[dict[str, Any]], None],
    space: Space,
    config: dict[str, Any],
    *,
    name: str,
    storage: str | os.PathLike,
    metric: str,
    trials: int,
    seed: int = 0,
    searcher: str = "optuna",
    asha: dict[str, int] | None = None,
    cpus_per_trial: int = 1,
    log: Callable[[str], None] = print,
) -> tuple[Any, str]:
    """Run one Tune experiment on the current Ray session, or restore it when it exists.

    Every trial calls ``trainable`` with a sample of ``space`` plus ``config`` and reports
    ``step`` and ``metric`` (maximised); trial names are ``trial-<id>``.

    :param trainable: the Ray Tune function trainable
    :param space: the searched distributions (:mod:`agents.search_space`)
    :param config: fixed entries of every trial's config (not searched)
    :param name: experiment name (its folder under ``storage``)
    :param storage: folder (or URI) of the Tune experiments, the resume state
    :param metric: the reported metric to maximise
    :param trials: number of trials (samples)
    :param seed: seed of the searcher
    :param searcher: ``"optuna"`` (TPE through ``OptunaSearch``) or ``"random"``
    :param asha: ``{"max_t", "grace_period", "reduction_factor"}`` of an ASHA scheduler on
        ``step`` (default None: every trial runs its full budget)
    :param cpus_per_trial: CPUs each trial asks for
    :param log: progress printer
    :return: ``(ResultGrid, experiment path)``
    """
    require_ray()
    from ray import tune

    storage_path = str(storage) if "://" in str(storage) else str(Path(storage).resolve())
    path = f"{storage_path}/{name}"
    trainable = tune.with_resources(trainable, {"cpu": cpus_per_trial})
    if tune.Tuner.can_restore(path):
        log(f"resuming Tune experiment {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if searcher == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(seed=seed)
        elif searcher == "random":
            from ray.tune.search import BasicVariantGenerator

            search_alg = BasicVariantGenerator(random_state=seed)
        else:
            raise ValueError(f"searcher={searcher!r}: use 'optuna' or 'random'")
        scheduler = None
        if asha is not None:
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="step", **asha)
        tuner = tune.Tuner(
            trainable,
            param_space={**tune_domains(space), **config},
            tune_config=tune.TuneConfig(metric=metric, mode="max", search_alg=search_alg, scheduler=scheduler,
                                        num_samples=trials, trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),  # fmt: skip
            run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=1,
                                      log_to_file=True, failure_config=tune.FailureConfig(max_failures=0)),
        )
    return tuner.fit(), path


def run_search(opts: SearchOptions, out: str | os.PathLike, storage: str | os.PathLike = "runs/ray_tune",
               presets_dir: str | os.PathLike = PRESET_DIR, overwrite_preset: bool = False,
               machine_note: str = "") -> dict[str, Any]:
    """Run (or resume) the search on the current Ray session; write its record and preset.

    :param opts: search settings
    :param out: folder of the record files ``search_<name>.json`` / ``.md``
    :param storage: folder of the Tune experiment (resume state)
    :param presets_dir: where the preset file goes (default ``agents/presets``)
    :param overwrite_preset: replace an existing preset file of that name (default: refuse
        before the search starts)
    :param machine_note: text added to the record's wall-time line (e.g. the machine's load)
    :return: the record
    :raises NodeDataError: a node of the Ray session cannot find the dataset (before any trial)
    """
    require_ray()
    opts.validate()
    preset_path = Path(presets_dir) / f"{opts.preset_name}.json" if opts.preset_name else None
    if preset_path is not None and preset_path.exists() and not overwrite_preset:
        raise FileExistsError(f"{preset_path} exists; choose another --preset-name or pass --overwrite-preset")
    built_in = [name for name in PRESETS if not (PRESET_DIR / f"{name}.json").is_file()]
    if opts.preset_name in built_in:
        raise ValueError(f"--preset-name {opts.preset_name!r} is a built-in preset; choose another name")
    trial_config(opts, {})  # every fixed setting is valid before anything starts
    check_data_on_nodes([opts.dataset], opts.data_dir)  # a trial may download, as train() does
    out = Path(out)
    asha = dict(max_t=opts.max_steps, grace_period=opts.grace_steps, reduction_factor=opts.reduction_factor)
    start = time.perf_counter()
    grid, path = tune_experiment(search_trial, opts.space(), {"options": asdict(opts)}, name=f"search-{opts.name}",
                                 storage=storage, metric=METRIC, trials=opts.trials, seed=opts.seed,
                                 searcher=opts.searcher, asha=asha, cpus_per_trial=opts.cpus_per_trial)  # fmt: skip
    seconds = time.perf_counter() - start
    trials = sorted((trial_record(r, opts.space(), METRIC, opts.max_steps) for r in grid), key=lambda t: t["trial"])
    import ray

    record: dict[str, Any] = {
        "options": asdict(opts),
        "search_space": {k: list(v) for k, v in opts.space().items()},
        "metric": f"validation {METRIC} (max)",
        "searcher": searcher_name(opts.searcher),
        "scheduler": {"type": "ASHA", "time_attr": "step", **asha},
        "ray": ray.__version__,
        "seconds": round(seconds, 1),
        "machine_note": machine_note,
        "tune_experiment": path,
        "trials": trials,
    }  # fmt: skip
    best = choose(trials)
    record["best"] = best
    record["preset"] = opts.preset_name
    base = out / f"search_{opts.name}"
    from recsim_env.files import atomic_write_text

    atomic_write_text(base.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    atomic_write_text(base.with_suffix(".md"), render_markdown(record))
    if preset_path is not None:
        write_preset(preset_path, opts.preset_name, best["params"], base.with_suffix(".json"), opts)
    return record


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = SearchOptions()
    parser = argparse.ArgumentParser(
        prog="python -m experiments.search",
        description="Search LSRWRL hyperparameters on the validation slice with Ray Tune (TPE + ASHA); "
                    "write the record and the chosen preset.",
    )  # fmt: skip
    parser.add_argument("--name", default=None, help="experiment name (default: lsrwrl-<dataset>)")
    parser.add_argument("--dataset", default=d.dataset, help="dataset (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the trials and the searcher (default: 0)")
    parser.add_argument("--base-preset", default=d.base_preset, help="preset the samples override (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=d.trials, help="number of trials (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=d.max_steps,
                        help="environment steps of a trial ASHA never stops (default: %(default)s)")
    parser.add_argument("--eval-freq", type=int, default=d.eval_freq,
                        help="environment steps between validation reports (default: %(default)s)")
    parser.add_argument("--grace-steps", type=int, default=d.grace_steps,
                        help="steps before ASHA may stop a trial (default: %(default)s)")
    parser.add_argument("--reduction-factor", type=int, default=d.reduction_factor,
                        help="ASHA reduction factor (default: %(default)s)")
    parser.add_argument("--searcher", choices=("optuna", "random"), default=d.searcher,
                        help="Optuna TPE or Tune's random search (default: %(default)s)")
    parser.add_argument("--cpus-per-trial", type=int, default=d.cpus_per_trial,
                        help="CPUs of a trial; its torch threads match (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="data root of the trials (default: $MOVIELENS_DATA, cache)")
    parser.add_argument("--runs-dir", default=d.runs_dir, help="run directories of the trials (default: %(default)s)")
    parser.add_argument("--out", default="results/sweeps", help="folder of the record files (default: %(default)s)")
    parser.add_argument("--preset-name", default=d.preset_name,
                        help="write the chosen configuration as this preset ('none': do not; default: %(default)s)")
    parser.add_argument("--presets-dir", default=str(PRESET_DIR),
                        help="folder of the preset file (default: agents/presets, read by agents.config)")
    parser.add_argument("--overwrite-preset", action="store_true", help="replace an existing preset file")
    parser.add_argument("--machine-note", default="", help="text recorded beside the wall time (e.g. the load)")
    add_ray_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_ray()
    opts = SearchOptions(
        name=args.name or f"lsrwrl-{args.dataset}", dataset=args.dataset, seed=args.seed,
        base_preset=args.base_preset, trials=args.trials, max_steps=args.max_steps, eval_freq=args.eval_freq,
        grace_steps=args.grace_steps, reduction_factor=args.reduction_factor, searcher=args.searcher,
        cpus_per_trial=args.cpus_per_trial,
        data_dir=str(Path(args.data_dir).expanduser().resolve()) if args.data_dir else None,
        runs_dir=args.runs_dir,
        preset_name=None if str(args.preset_name).lower() == "none" else args.preset_name,
    )  # fmt: skip
    try:
        opts.validate()
        trial_config(opts, {})
    except ValueError as err:
        raise SystemExit(str(err)) from None
    try:
        with session_from_args(args):
            record = run_search(opts, args.out, storage=args.storage, presets_dir=args.presets_dir,
                                overwrite_preset=args.overwrite_preset, machine_note=args.machine_note)  # fmt: skip
    except (ConnectionError, NodeDataError) as err:
        raise SystemExit(f"{type(err).__name__}: {err}") from None
    best = record["best"]
    print(f"best: {best['trial']} validation {METRIC} {best[f'last_{METRIC}']:.4f} with {best['params']}")
    print(f"record: {Path(args.out) / f'search_{opts.name}.json'}"
          + (f"; preset: {record['preset']} (make train ARGS=\"--preset {record['preset']}\")" if record["preset"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
