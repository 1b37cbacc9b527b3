"""Hyperparameter search for LSRWRL on the validation slice, with Ray Tune.

Every trial trains LSRWRL through :func:`agents.training.train` with ``tune=True``: it trains
on the train part of the validation slice (:func:`recsim_env.splits.holdout_last`) and is
evaluated on its held-out part, never on the test split. Every ``eval_freq`` environment steps
the trial reports validation precision@10 to Tune (``train(..., on_evaluation=...)``); an ASHA
scheduler stops the trials that trail the others at each rung, and Optuna's TPE (through Tune's
``OptunaSearch``; ``--searcher random`` for Tune's own random search) picks the next
configurations from :data:`SEARCH_SPACE`. Budgets are environment steps, never seconds.

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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.config import PRESET_DIR, PRESETS
from experiments.ray_cluster import (
    NodeDataError,
    add_ray_arguments,
    check_data_on_nodes,
    require_ray,
    session_from_args,
)

#: The search space: TrainConfig field -> ``("loguniform" | "uniform", low, high)`` or
#: ``("choice", [values])``. Everything else is the base preset's value.
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "learning_rate": ("loguniform", 2e-4, 3e-3),  # Adam step size
    "embed_dim": ("choice", [16, 32, 64]),  # item/user embedding and interest-vector size
    "n_layers": ("choice", [1, 2]),  # stacked self-attention layers (short-term interest)
    "next_item_weight": ("loguniform", 0.03, 1.0),  # auxiliary next-item loss weight
    "target_update_interval": ("choice", [2_000, 5_000, 10_000, 20_000]),  # env steps between target copies
    "exploration_fraction": ("uniform", 0.01, 0.1),  # share of the budget over which epsilon decays
    "gamma": ("uniform", 0.5, 0.95),  # reward discount
    "batch_size": ("choice", [64, 128, 256]),  # replay mini-batch
}
#: Validation metric the search maximises (reported by every evaluation during training).
METRIC = "precision@10"


def tune_space(space: dict[str, tuple[Any, ...]] = SEARCH_SPACE) -> dict[str, Any]:
    """:data:`SEARCH_SPACE` as Ray Tune sampling domains."""
    require_ray()
    from ray import tune

    domains: dict[str, Any] = {}
    for name, (kind, *args) in space.items():
        if kind == "loguniform":
            domains[name] = tune.loguniform(*args)
        elif kind == "uniform":
            domains[name] = tune.uniform(*args)
        elif kind == "choice":
            domains[name] = tune.choice(list(args[0]))
        else:
            raise ValueError(f"SEARCH_SPACE[{name!r}]: unknown kind {kind!r}; use loguniform, uniform or choice")
    return domains


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

    def validate(self) -> SearchOptions:
        problems = []
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

    def trial_overrides(self) -> dict[str, Any]:
        """The TrainConfig fields every trial sets (on top of the base preset and the sample)."""
        return dict(
            dataset=self.dataset, seed=self.seed, tune=True, total_timesteps=self.max_steps,
            eval_freq=self.eval_freq, torch_threads=self.cpus_per_trial, max_train_seconds=None,
            max_episodes=None, checkpoint_freq=0, data_dir=self.data_dir,
            expect_official=self.expect_official, runs_dir=str(Path(self.runs_dir).resolve()), name=f"search-{self.name}",
        )  # fmt: skip


def trial_config(opts: SearchOptions, sample: dict[str, Any]):
    """The validated :class:`~agents.config.TrainConfig` of one trial."""
    from agents.config import make_config

    return make_config(opts.base_preset, **opts.trial_overrides(), **sample)


def _trial_name(trial) -> str:
    return f"trial-{trial.trial_id}"


def search_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable: train one sampled configuration, reporting each validation evaluation."""
    from ray import tune

    from agents.training import train

    opts = SearchOptions(**config["options"])
    sample = {k: config[k] for k in SEARCH_SPACE if k in config}

    def report(step: int, row: dict[str, float]) -> None:
        tune.report({"step": int(step), **{k: float(v) for k, v in row.items() if k != "step"}})

    train(trial_config(opts, sample), progress=False, on_evaluation=report)


# Record -----------------------------------------------------------------------------------------


def _trial_record(result, opts: SearchOptions) -> dict[str, Any]:
    config = result.config or {}
    curve = []
    frame = result.metrics_dataframe
    if frame is not None and METRIC in frame:
        curve = [[int(s), round(float(v), 6)] for s, v in zip(frame["step"], frame[METRIC])]
    last_step = curve[-1][0] if curve else 0
    status = "failed" if result.error is not None else (
        "completed" if last_step >= opts.max_steps else "stopped early")
    return {
        "trial": Path(result.path).name,
        "params": {k: config[k] for k in SEARCH_SPACE if k in config},
        "status": status,
        "last_step": last_step,
        f"last_{METRIC}": curve[-1][1] if curve else None,
        "curve": curve,
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:500],
    }


def choose(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The best trial: highest final validation metric among those that trained the full budget.

    :raises RuntimeError: no trial completed its budget
    """
    complete = [t for t in trials if t["status"] == "completed" and t[f"last_{METRIC}"] is not None]
    if not complete:
        raise RuntimeError("no trial trained the full budget; nothing to choose (see the record)")
    return max(complete, key=lambda t: t[f"last_{METRIC}"])


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
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

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
    storage_path = str(storage) if "://" in str(storage) else str(Path(storage).resolve())
    path = f"{storage_path}/search-{opts.name}"
    trainable = tune.with_resources(search_trial, {"cpu": opts.cpus_per_trial})
    start = time.perf_counter()
    if tune.Tuner.can_restore(path):
        print(f"resuming Tune experiment {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if opts.searcher == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(seed=opts.seed)
        else:
            from ray.tune.search import BasicVariantGenerator

            search_alg = BasicVariantGenerator(random_state=opts.seed)
        scheduler = ASHAScheduler(time_attr="step", max_t=opts.max_steps, grace_period=opts.grace_steps,
                                  reduction_factor=opts.reduction_factor)  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space={**tune_space(), "options": asdict(opts)},
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=search_alg, scheduler=scheduler,
                                        num_samples=opts.trials, trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),  # fmt: skip
            run_config=tune.RunConfig(name=f"search-{opts.name}", storage_path=storage_path, verbose=1,
                                      log_to_file=True, failure_config=tune.FailureConfig(max_failures=0)),
        )
    grid = tuner.fit()
    seconds = time.perf_counter() - start
    trials = sorted((_trial_record(r, opts) for r in grid), key=lambda t: t["trial"])
    searcher = "Optuna TPE via ray.tune.search.optuna.OptunaSearch" if opts.searcher == "optuna" else \
        "Tune random search (BasicVariantGenerator)"
    if opts.searcher == "optuna":
        import optuna

        searcher += f" (optuna {optuna.__version__})"
    import ray

    record: dict[str, Any] = {
        "options": asdict(opts),
        "search_space": {k: list(v) for k, v in SEARCH_SPACE.items()},
        "metric": f"validation {METRIC} (max)",
        "searcher": searcher,
        "scheduler": {"type": "ASHA", "time_attr": "step", "max_t": opts.max_steps,
                      "grace_period": opts.grace_steps, "reduction_factor": opts.reduction_factor},
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
