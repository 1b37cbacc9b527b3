"""The equal-budget study: every model of Table 1 gets the same validation tuning budget.

For one dataset and a list of models, each model's search space
(:func:`agents.search_space.search_space`) is sampled ``--trials`` times (default 16 on
ML-100K, 6 on ML-1M) by Optuna's TPE through Ray Tune (:func:`experiments.search.tune_experiment`).
Every trial trains one configuration on the train part of ``holdout_last(train, 0.2)`` of the
Table 1 split and is scored on its held-out part, never on the test split:

* the validation value is **NDCG@10** for every model (the Table 1 baselines' tuning metric:
  smoother than precision@10 on a few hundred users), of the trial's **final** model: the
  training length is one of the searched values (``train_steps`` of the neural baselines), or
  the preset's (LSRWRL's ``total_timesteps``), never chosen by early stopping;
* ASHA is the same for every model (``--no-asha`` turns it off for all): each trial reports
  ``--reports`` times over the model's largest budget (optimizer steps of the neural
  baselines, environment steps of LSRWRL; the kNN models and EASE are fitted in one go and
  report once, so there is nothing to stop), the first rung is at ``--grace-fraction`` of it,
  and ``--reduction-factor`` applies alike. ASHA compares trials at equal steps, so with a
  decaying learning rate a long trial is judged before its decay ends: ``--no-asha`` gives
  every trial its full length;
* the chosen configuration is the completed trial with the best final value.

Each model's record goes to ``<out>/tuning/<dataset>/<model>.json`` (atomically): settings,
space, every trial's parameters, validation value (``last_ndcg@10``), status and wall time, and
the chosen configuration. Then the chosen configuration is trained on the whole train part
with each of ``--seeds`` (default 0 1 2) and evaluated on the test split; each (model, seed)
run is written at once to ``<out>/equal_budget_runs/<dataset>/<model>-seed<seed>-<key>.json``
in Table 1's run-file format (:class:`experiments.table1.RunStore`): its metrics and the per-user
precision@10 and NDCG@10 of every test user (:func:`experiments.table1.run_per_user` reads them),
for a paired significance test (:mod:`recsim_env.significance`).

Every torch model (the neural baselines and LSRWRL) runs on LSRWRL's kernel path (``avx2`` by
default, :mod:`agents.kernel_path`), as in Table 1, so a seed gives one result on any x86-64.

Resumable: a model whose record exists with the same settings is not searched again (other
settings: an error that names the file); an interrupted Tune experiment (``--storage``) is
restored; a finished run file is not recomputed.

The table: at the end of a run, and alone with ``--render-only`` (computes nothing, needs no
Ray), :func:`experiments.equal_budget_table.write_equal_table` renders
``<out>/table1_equal_<dataset>.md`` and ``.csv`` from the records and run files: every model
with test runs (Popularity's row from the paper-settings Table 1, untuned), the trial counts,
and LSRWRL against each model with a per-user paired test.

Usage::

    python -m experiments.equal_budget --dataset ml-100k                     # every model, 16 trials
    python -m experiments.equal_budget --dataset ml-1m --models sasrec lsrwrl --cpus-per-trial 2
    python -m experiments.equal_budget --trials 2 --quick                    # smoke test
    python -m experiments.equal_budget --dataset ml-1m --render-only         # the table from the files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.search_space import LSRWRL, Space, model_parameters, search_space
from recsim_env.dataset import MovieLensData, Split

#: The models of the study by default: Table 1's, less Popularity (nothing to tune).
DEFAULT_MODELS: tuple[str, ...] = ("itemcf", "usercf", "ease", "sasrec", "stamp", "gru4rec", LSRWRL)
#: Trials per model by default, per dataset (another dataset needs ``--trials``).
DEFAULT_TRIALS: dict[str, int] = {"ml-100k": 16, "ml-1m": 6}
#: The validation metric of every trial (maximised).
METRIC = "ndcg@10"
#: Bumped when a record or run would change for the same settings.
STUDY_VERSION = 1
#: ``--quick``: smoke-test budgets (not a result), fixed per kind of model.
QUICK_NEURAL: dict[str, Any] = dict(train_steps=12, dim=32)
QUICK_LSRWRL: dict[str, Any] = dict(total_timesteps=1_024, learning_starts=256, pretrain_steps=10)


@dataclass
class StudyOptions:
    """Settings of one study (the CLI maps one to one onto these).

    :param dataset: dataset name
    :param models: models in order (baseline registry names and ``"lsrwrl"``)
    :param trials: validation trials per model (default :data:`DEFAULT_TRIALS` of the dataset)
    :param seeds: seeds of the final test runs
    :param seed: seed of the searcher and of every trial
    :param split: ``"temporal"`` (Table 1's) or ``"random"``
    :param train_ratio: train fraction per user (default 0.8)
    :param val_fraction: held-out fraction of each train sequence for validation (default 0.2)
    :param searcher: ``"optuna"`` (TPE) or ``"random"``
    :param asha: stop trials with ASHA (the same settings for every model)
    :param reports: validation reports of a trial over the model's largest budget
    :param grace_fraction: ASHA's first rung, as a fraction of the model's largest budget
    :param reduction_factor: ASHA keeps the best ``1/reduction_factor`` at each rung
    :param cpus_per_trial: CPUs (and torch threads) of a trial and of a final run
    :param lsrwrl_preset: the preset LSRWRL's samples override
    :param fixed: model -> parameters set for every trial and final run, not searched (their
        keys leave the model's space)
    :param quick: smoke-test budgets (:data:`QUICK_NEURAL`, :data:`QUICK_LSRWRL`; not a result)
    :param data_dir: root holding the dataset folders (default: the loader's search order)
    :param download: allow downloading a dataset that is found nowhere
    :param expect_official: check the data against the official release's figures
    :param runs_dir: parent folder of LSRWRL's run directories
    """

    dataset: str = "ml-100k"
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    trials: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    seed: int = 0
    split: str = "temporal"
    train_ratio: float = 0.8
    val_fraction: float = 0.2
    searcher: str = "optuna"
    asha: bool = True
    reports: int = 8
    grace_fraction: float = 0.25
    reduction_factor: int = 3
    cpus_per_trial: int = 1
    lsrwrl_preset: str = "default"
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    quick: bool = False
    data_dir: str | None = None
    download: bool = True
    expect_official: bool = True
    runs_dir: str = "runs/equal_budget"

    @property
    def n_trials(self) -> int:
        """Trials per model."""
        if self.trials is not None:
            return self.trials
        if self.dataset not in DEFAULT_TRIALS:
            raise ValueError(f"no default trial count for {self.dataset!r}: give trials (--trials)")
        return DEFAULT_TRIALS[self.dataset]

    def validate(self) -> StudyOptions:
        """Check every value; raise one ``ValueError`` listing all problems."""
        problems = []
        try:
            if self.n_trials < 1:
                problems.append(f"trials must be >= 1, got {self.n_trials}")
        except ValueError as err:
            problems.append(str(err))
        for fname in ("reports", "cpus_per_trial"):
            if getattr(self, fname) < 1:
                problems.append(f"{fname} must be >= 1, got {getattr(self, fname)}")
        if self.reduction_factor < 2:
            problems.append(f"reduction_factor must be >= 2, got {self.reduction_factor}")
        if not 0 < self.grace_fraction <= 1:
            problems.append(f"grace_fraction must be in (0, 1], got {self.grace_fraction}")
        if not self.models or len(set(self.models)) != len(self.models):
            problems.append(f"models must be a non-empty list without repeats, got {self.models}")
        if not self.seeds:
            problems.append("seeds must not be empty")
        if self.searcher not in ("optuna", "random"):
            problems.append(f"searcher={self.searcher!r}: use 'optuna' or 'random'")
        if self.split not in ("temporal", "random"):
            problems.append(f"split={self.split!r}: use 'temporal' or 'random'")
        stray = sorted(set(self.fixed) - set(self.models))
        if stray:
            problems.append(f"fixed names models that are not studied: {stray}")
        for model in self.models:
            try:
                space = search_space(model)
            except KeyError as err:
                problems.append(f"{model}: {err.args[0]} (Popularity has nothing to tune)")
                continue
            names = model_parameters(model)
            for key in self.fixed.get(model, {}):
                if key not in names:
                    problems.append(f"fixed {model}:{key} is not a parameter of {model}")
            if _is_neural(model):
                if "train_steps" not in space and "train_steps" not in self.model_fixed(model):
                    problems.append(f"{model}: the study counts training in optimizer steps; keep train_steps in "
                                    "its space or fix it")
                taken = sorted({"epochs", "patience"} & set(self.fixed.get(model, {})))
                if taken:
                    problems.append(f"{model}: the study sets the training length by train_steps and never stops "
                                    f"early; drop {', '.join(taken)} from fixed")
        if problems:
            raise ValueError("invalid study options:\n  - " + "\n  - ".join(problems))
        return self

    def model_fixed(self, model: str) -> dict[str, Any]:
        """The fixed parameters of a model: ``--quick``'s budgets, then ``fixed``."""
        quick: dict[str, Any] = {}
        if self.quick:
            quick = dict(QUICK_LSRWRL) if model == LSRWRL else dict(QUICK_NEURAL) if _is_neural(model) else {}
        return {**quick, **self.fixed.get(model, {})}

    @property
    def kernel_path(self) -> str:
        """PyTorch's kernel path of every torch model of the study: LSRWRL's (as in Table 1;
        :mod:`agents.kernel_path`), so that a seed gives one result on any x86-64."""
        from agents.config import make_config

        return make_config(self.lsrwrl_preset, dataset=self.dataset, **self.fixed.get(LSRWRL, {})).kernel_path

    def model_space(self, model: str) -> Space:
        """The searched part of a model's space (without its fixed parameters)."""
        fixed = self.model_fixed(model)
        return {k: v for k, v in search_space(model).items() if k not in fixed}


def _is_neural(model: str) -> bool:
    return model != LSRWRL and "train_steps" in model_parameters(model)


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(_normalised(value), sort_keys=True).encode()).hexdigest()[:12]


# The settings of one model's search ---------------------------------------------------------------


def model_budget(opts: StudyOptions, model: str) -> int:
    """The model's largest training length: optimizer steps (neural baselines), environment
    steps (LSRWRL), 1 for a model fitted in one go."""
    fixed = opts.model_fixed(model)
    if model == LSRWRL:
        from agents.config import make_config

        return int(make_config(opts.lsrwrl_preset, dataset=opts.dataset, **fixed).total_timesteps)
    if not _is_neural(model):
        return 1
    if "train_steps" in fixed:
        return int(fixed["train_steps"])
    kind, *args = search_space(model)["train_steps"]
    return int(max(v for v in args[0] if v is not None) if kind == "choice" else args[1])


def model_settings(opts: StudyOptions, model: str, data: MovieLensData) -> dict[str, Any]:
    """Everything that decides one model's search: recorded with it, compared on resume, and
    hashed into its Tune experiment's name."""
    budget = model_budget(opts, model)
    report_every = max(1, math.ceil(budget / opts.reports))
    grace = min(budget, max(report_every, math.ceil(opts.grace_fraction * budget)))
    asha = dict(max_t=budget, grace_period=grace, reduction_factor=opts.reduction_factor) if opts.asha else None
    settings = {
        "version": STUDY_VERSION, "dataset": data.name, "n_ratings": int(data.n_ratings), "model": model,
        "trials": opts.n_trials, "seed": opts.seed, "searcher": opts.searcher, "metric": METRIC,
        "split": opts.split, "train_ratio": opts.train_ratio, "val_fraction": opts.val_fraction,
        "space": {k: list(v) for k, v in opts.model_space(model).items()}, "fixed": opts.model_fixed(model),
        "budget": budget, "report_every": report_every if budget > 1 else None, "asha": asha,
    }  # fmt: skip
    if model == LSRWRL:
        settings["preset"] = opts.lsrwrl_preset
    if model == LSRWRL or _is_neural(model):
        settings["kernel_path"] = opts.kernel_path
    return _normalised(settings)


def _search_options(opts: StudyOptions, settings: dict[str, Any]):
    """LSRWRL's trials as :class:`experiments.search.SearchOptions` (its trainable is reused)."""
    from experiments.search import SearchOptions

    asha = settings["asha"] or {}
    fixed = dict(split=opts.split, train_ratio=opts.train_ratio, val_fraction=opts.val_fraction,
                 split_seed=opts.seed, **settings["fixed"])  # fmt: skip
    fixed.pop("total_timesteps", None)  # the budget: SearchOptions.max_steps
    return SearchOptions(
        name=f"equal-budget-{opts.dataset}", dataset=opts.dataset, seed=opts.seed, base_preset=opts.lsrwrl_preset,
        trials=opts.n_trials, max_steps=settings["budget"], eval_freq=settings["report_every"],
        grace_steps=asha.get("grace_period", settings["budget"]), reduction_factor=opts.reduction_factor,
        searcher=opts.searcher, cpus_per_trial=opts.cpus_per_trial, data_dir=opts.data_dir,
        expect_official=opts.expect_official, runs_dir=opts.runs_dir, preset_name=None, fixed=fixed,
    ).validate()  # fmt: skip


def _fixed_params(model: str, seed: int, threads: int, fixed: dict[str, Any]) -> dict[str, Any]:
    """A baseline's keyword arguments besides the searched ones: seed and threads where the
    class takes them, then the fixed parameters."""
    names = model_parameters(model)
    imposed = {k: v for k, v in (("seed", seed), ("num_threads", threads)) if k in names}
    return {**imposed, **fixed}


# Trials -----------------------------------------------------------------------------------------

_VALIDATION: dict[str, Split] = {}


def _validation_split(study: dict[str, Any]) -> Split:
    """The validation slice of the study's split, as this worker process finds the data."""
    from experiments.sweep import _worker_dataset
    from recsim_env.splits import holdout_last, split_ratings

    key = json.dumps([study[k] for k in ("dataset", "data_dir", "split", "train_ratio", "val_fraction", "seed")])
    if key not in _VALIDATION:
        data = _worker_dataset(study["dataset"], study["data_dir"], study["download"], study["expect_official"])
        if data.n_ratings != study["n_ratings"]:
            raise RuntimeError(f"this worker's {study['dataset']} has {data.n_ratings} ratings, the driver's "
                               f"{study['n_ratings']}: give every node the same data (--data-dir)")
        split = split_ratings(data, study["split"], study["train_ratio"], seed=study["seed"])
        _VALIDATION[key] = holdout_last(split, study["val_fraction"])
    return _VALIDATION[key]


def baseline_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable: one baseline configuration on the validation slice
    (:func:`agents.baselines.tuning.fit_and_validate`), reporting ``step``, ``budget`` and the
    ranking metrics at every evaluation."""
    from ray import tune

    from agents.baselines.tuning import fit_and_validate

    study = config["study"]
    if "kernel_path" in study:  # before this worker's first torch operation
        from agents.kernel_path import pin_kernel_path

        pin_kernel_path(study["kernel_path"])
    sample = {k: config[k] for k in study["searched"] if k in config}
    params = {**_fixed_params(study["model"], study["seed"], study["cpus_per_trial"], study["fixed"]), **sample}

    def report(step: int, budget: int, metrics: dict[str, float]) -> None:
        tune.report({"step": step, "budget": budget,
                     **{k: float(v) for k, v in metrics.items() if k != "n_users"}})  # fmt: skip

    fit_and_validate(study["model"], params, _validation_split(study), metric=METRIC, report=report,
                     report_every=study["report_every"] if _is_neural(study["model"]) else None)  # fmt: skip


def _trial_setup(opts: StudyOptions, model: str, settings: dict[str, Any]) -> tuple[Callable, dict[str, Any], int | None]:
    """The trainable of a model's trials, their fixed config entries and the budget a complete
    trial reaches (None: each trial reports its own); checks the fixed values first."""
    from experiments.search import search_trial, trial_config

    if model == LSRWRL:
        search_opts = _search_options(opts, settings)
        trial_config(search_opts, {})  # the fixed values make a valid config
        return search_trial, {"options": asdict(search_opts)}, settings["budget"]
    from agents.baselines import get_recommender_class

    get_recommender_class(model)(**_fixed_params(model, opts.seed, opts.cpus_per_trial, settings["fixed"]))
    study = {**settings, "searched": sorted(opts.model_space(model)), "data_dir": opts.data_dir,
             "download": opts.download, "expect_official": opts.expect_official,
             "cpus_per_trial": opts.cpus_per_trial}  # fmt: skip
    return baseline_trial, {"study": study}, None


def stored_record(opts: StudyOptions, model: str, data: MovieLensData, out: str | os.PathLike) -> dict[str, Any] | None:
    """The model's record if it was searched with the same settings, else None.

    :raises ValueError: a record exists with other settings
    """
    settings = model_settings(opts, model, data)
    path = record_path(out, data.name, model)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("settings") == settings:
        return record
    old = record.get("settings") or {}
    changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
    raise ValueError(f"{path} was searched with other settings (differ: {', '.join(changed)}); delete it to "
                     "search again, or choose another --out")


def tune_model(
    opts: StudyOptions,
    model: str,
    data: MovieLensData,
    out: str | os.PathLike,
    storage: str | os.PathLike,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], bool]:
    """Search one model (on the current Ray session) and write its record, or read the record
    of an earlier identical search.

    :return: ``(record, computed)``
    :raises ValueError: a record exists with other settings, or a fixed value is invalid
    :raises RuntimeError: no trial completed its budget (no record is written)
    """
    from experiments.search import choose, searcher_name, trial_record, tune_experiment
    from recsim_env.files import atomic_write_text

    record = stored_record(opts, model, data, out)
    if record is not None:
        return record, False
    settings = model_settings(opts, model, data)
    trainable, config, budget = _trial_setup(opts, model, settings)
    space = opts.model_space(model)
    log(f"{model}: {opts.n_trials} trials on {data.name}'s validation slice ({', '.join(space) or 'nothing'} "
        f"searched, budget {settings['budget']:,})")
    start = time.perf_counter()
    grid, experiment = tune_experiment(
        trainable, space, config, name=f"equal-budget-{data.name}-{model}-{_digest(settings)}", storage=storage,
        metric=METRIC, trials=opts.n_trials, seed=opts.seed, searcher=opts.searcher, asha=settings["asha"],
        cpus_per_trial=opts.cpus_per_trial, log=log,
    )  # fmt: skip
    trials = sorted((trial_record(r, space, METRIC, budget) for r in grid), key=lambda t: t["trial"])
    import ray

    record = {
        "model": model, "dataset": data.name, "settings": settings,
        "metric": f"validation {METRIC} of the final model (max), on holdout_last(train, {opts.val_fraction})",
        "searcher": searcher_name(opts.searcher),
        "scheduler": None if settings["asha"] is None else {"type": "ASHA", "time_attr": "step", **settings["asha"]},
        "ray": ray.__version__, "cpus_per_trial": opts.cpus_per_trial, "seconds": round(time.perf_counter() - start, 1),
        "tune_experiment": experiment, "trials": trials,
    }  # fmt: skip
    best = choose(trials, METRIC)
    record["chosen"] = {"trial": best["trial"], "params": best["params"], "fixed": settings["fixed"],
                        "value": best[f"last_{METRIC}"]}  # fmt: skip
    atomic_write_text(record_path(out, data.name, model), json.dumps(record, indent=2) + "\n")
    return record, True


def record_path(out: str | os.PathLike, dataset: str, model: str) -> Path:
    """Where a model's search record goes: ``<out>/tuning/<dataset>/<model>.json``."""
    return Path(out) / "tuning" / dataset / f"{model}.json"


# Final runs -------------------------------------------------------------------------------------


def run_key(record: dict[str, Any], seed: int) -> dict[str, Any]:
    """What decides a final run: the record's settings (hashed) and chosen values, the seed."""
    settings = record["settings"]
    return _normalised({
        "version": STUDY_VERSION, "dataset": settings["dataset"], "n_ratings": settings["n_ratings"],
        "model": record["model"], "seed": seed, "split": settings["split"], "train_ratio": settings["train_ratio"],
        "params": record["chosen"]["params"], "fixed": record["chosen"]["fixed"], "search": _digest(settings),
        "preset": settings.get("preset"), "kernel_path": settings.get("kernel_path"),
    })  # fmt: skip


def final_run(record: dict[str, Any], seed: int, opts: dict[str, Any]):
    """Train a record's chosen configuration on the whole train part with ``seed`` and
    evaluate it on the test split.

    :param record: the model's search record
    :param seed: model seed (and split seed of a random split)
    :param opts: :class:`StudyOptions` as a dict
    :return: the :class:`experiments.table1.Run`, with its ``per_user`` values
        (:func:`experiments.table1.per_user_record`); ``error`` set if it raised
    """
    from experiments.table1 import Run, per_user_record
    from recsim_env.evaluation import evaluate_ranking

    options = StudyOptions(**opts)
    model, chosen = record["model"], record["chosen"]
    run = Run(model=model, seed=seed, tuned=dict(chosen["params"]), tune_seconds=float(record["seconds"]))
    try:
        if "kernel_path" in record["settings"]:  # before this worker's first torch operation
            from agents.kernel_path import pin_kernel_path

            pin_kernel_path(record["settings"]["kernel_path"])
        t0 = time.perf_counter()
        if model == LSRWRL:
            from agents.config import make_config
            from agents.training import train, unfinished_run

            config = make_config(
                options.lsrwrl_preset, dataset=options.dataset, seed=seed, split=options.split, split_seed=seed,
                train_ratio=options.train_ratio, val_fraction=options.val_fraction, data_dir=options.data_dir,
                expect_official=options.expect_official, runs_dir=options.runs_dir, torch_threads=options.cpus_per_trial,
                name=f"equal-budget-{options.dataset}-{model}-seed{seed}", **chosen["fixed"], **chosen["params"],
            )  # fmt: skip
            unfinished = unfinished_run(config)  # killed mid-run (a session's end): continue it
            result = train(config, unfinished, progress=False, resume=unfinished is not None)  # test metrics, per user
            run.fit_seconds = time.perf_counter() - t0
            training = {k: v for k, v in (result.training or {}).items() if isinstance(v, (int, float, str, bool))}
            run.params = {**config.to_dict(), **training, "run_dir": str(result.run_dir), "resumed": unfinished is not None}
            run.eval_seconds = float(training.get("evaluation_seconds", 0.0))
            run.metrics = {k: result.metrics[k] for k in ("precision@10", "recall@10", "ndcg@10", "hit_rate@10",
                                                          "n_users")}  # fmt: skip
            run.per_user = per_user_record(result.per_user)
        else:
            from agents.baselines import make_recommender
            from experiments.sweep import _worker_dataset
            from recsim_env.splits import split_ratings

            data = _worker_dataset(options.dataset, options.data_dir, options.download, options.expect_official)
            split = split_ratings(data, options.split, options.train_ratio, seed=seed)
            fitted = make_recommender(model, **_fixed_params(model, seed, options.cpus_per_trial, chosen["fixed"]),
                                      **chosen["params"])  # fmt: skip
            run.params = fitted.get_params()
            fitted.fit(split)
            run.fit_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            run.metrics = evaluate_ranking(fitted.score, split, return_per_user=True)
            run.per_user = per_user_record(run.metrics.pop("per_user"))
            run.eval_seconds = time.perf_counter() - t0
    except Exception as exc:  # reported; the other runs go on
        run.error = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
        traceback.print_exc(file=sys.stderr)
    return run


def run_store(out: str | os.PathLike, dataset: str):
    """The study's run files: :class:`experiments.table1.RunStore` under ``equal_budget_runs``."""
    from experiments.table1 import RunStore

    return RunStore(out, dataset, runs_folder="equal_budget_runs")


def final_runs(
    opts: StudyOptions,
    records: dict[str, dict[str, Any]],
    out: str | os.PathLike,
    log: Callable[[str], None] = print,
) -> dict[tuple[str, int], Any]:
    """Every (model, seed) final run not on disk yet, as Ray tasks of ``cpus_per_trial`` CPUs
    on the current Ray session; each is written as soon as it finishes.

    :param records: model -> its search record
    :return: ``(model, seed)`` -> its :class:`experiments.table1.Run` (read back for runs done
        earlier); a failed run is returned with its error and leaves no file
    """
    import ray

    store = run_store(out, opts.dataset)
    done: dict[tuple[str, int], Any] = {}
    pending = {}
    task = ray.remote(num_cpus=opts.cpus_per_trial)(final_run)
    for model, record in records.items():
        for seed in opts.seeds:
            key = run_key(record, seed)
            stored = store.load_run(model, seed, key)
            if stored is not None:
                done[(model, seed)] = stored
                log(f"{model} seed {seed}: done earlier ({store.run_path(model, seed, key)})")
                continue
            pending[task.remote(record, seed, asdict(opts))] = (model, seed, key)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        model, seed, key = pending.pop(ready[0])
        run = ray.get(ready[0])
        if run.error is None:
            run.key = store.run_path(model, seed, key).stem.rsplit("-", 1)[-1]  # the hash, as Table 1's runs
            path = store.save_run(run, key)
            m = run.metrics
            log(f"{model} seed {seed}: test P@10 {m['precision@10']:.4f} NDCG@10 {m['ndcg@10']:.4f} "
                f"(fit {run.fit_seconds:.0f} s) -> {path}")
        else:
            log(f"{model} seed {seed}: FAILED: {run.error}")
        done[(model, seed)] = run
    return done


# Driver -----------------------------------------------------------------------------------------


@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    :param records: model -> its search record
    :param runs: ``(model, seed)`` -> its final :class:`experiments.table1.Run`
    :param failed: model -> error of a search that failed (its model has no final runs)
    :param searched: models searched in this call (the others' records were read)
    """

    records: dict[str, dict[str, Any]]
    runs: dict[tuple[str, int], dict[str, Any]]
    failed: dict[str, str]
    searched: list[str]


def load_study_dataset(opts: StudyOptions) -> MovieLensData:
    """The study's dataset through :func:`recsim_env.movielens.load_movielens`."""
    from recsim_env.movielens import load_movielens

    return load_movielens(opts.dataset, opts.data_dir, download=opts.download, expect_official=opts.expect_official)


def run_study(
    opts: StudyOptions,
    out: str | os.PathLike,
    *,
    storage: str | os.PathLike = "runs/ray_tune",
    data: MovieLensData | None = None,
    log: Callable[[str], None] = print,
) -> StudyResult:
    """Search every model (or read its record), then train and test each chosen configuration
    on every seed, on the current Ray session (:func:`experiments.ray_cluster.ray_session`).

    :param opts: study settings (validated first)
    :param out: results folder (``tuning/`` and ``equal_budget_runs/`` go under it)
    :param storage: folder of the Tune experiments (resume state)
    :param data: the dataset (default: :func:`load_study_dataset`)
    :param log: progress printer
    :return: :class:`StudyResult`
    :raises experiments.ray_cluster.NodeDataError: a Ray node cannot find the dataset (before any
        trial)
    """
    opts.validate()
    data_dir = str(Path(opts.data_dir).expanduser().resolve()) if opts.data_dir else None
    opts = replace(opts, data_dir=data_dir, runs_dir=str(Path(opts.runs_dir).resolve()))  # the workers' paths
    data = data if data is not None else load_study_dataset(opts)
    if data.name != opts.dataset:
        raise ValueError(f"data is {data.name!r}, the options say {opts.dataset!r}")
    for model in opts.models:  # before anything runs: no stale record, every fixed value valid
        if stored_record(opts, model, data, out) is None:
            _trial_setup(opts, model, model_settings(opts, model, data))
    from experiments.ray_cluster import check_data_on_nodes

    check_data_on_nodes([opts.dataset], opts.data_dir, download=opts.download, log=log)
    result = StudyResult(records={}, runs={}, failed={}, searched=[])
    for model in opts.models:
        try:
            record, computed = tune_model(opts, model, data, out, storage, log=log)
        except Exception as exc:  # reported; the other models go on
            result.failed[model] = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
            log(f"{model}: search FAILED: {result.failed[model]}")
            continue
        result.records[model] = record
        if computed:
            result.searched.append(model)
        chosen = record["chosen"]
        log(f"{model}: chosen {chosen['trial']} (validation {METRIC} {chosen['value']:.4f}) "
            f"{'searched now' if computed else 'record read'}: {chosen['params']}")
    result.runs = final_runs(opts, result.records, out, log=log)
    return result


def _parse_fix(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``MODEL:KEY=VALUE`` strings; ``VALUE`` is JSON (``null``, ``0.05``, ``true``, ``"str"``) or a
    bare string."""
    fixed: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, text = item.partition("=")
        model, colon, key = head.partition(":")
        if not sep or not colon or not model or not key:
            raise ValueError(f"--fix {item!r}: expected MODEL:KEY=VALUE, e.g. sasrec:max_len=50")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        fixed.setdefault(model, {})[key] = value
    return fixed


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from experiments.ray_cluster import add_ray_arguments

    d = StudyOptions()
    parser = argparse.ArgumentParser(
        prog="python -m experiments.equal_budget",
        description="The same number of validation trials (Optuna TPE via Ray Tune, ASHA alike) for every model, "
                    "then the chosen configurations on the test split with several seeds, per-user metrics kept.",
    )  # fmt: skip
    parser.add_argument("--dataset", default=d.dataset, help="dataset (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL",
                        help="models (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=None,
                        help=f"validation trials per model (default: {DEFAULT_TRIALS} by dataset)")
    parser.add_argument("--seeds", nargs="+", type=int, default=d.seeds, help="seeds of the test runs (default: 0 1 2)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the searcher and the trials (default: 0)")
    parser.add_argument("--split", choices=("temporal", "random"), default=d.split, help="split (default: %(default)s)")
    parser.add_argument("--train-ratio", type=float, default=d.train_ratio, help="train fraction per user (default: 0.8)")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help="held-out fraction of each train sequence for validation (default: 0.2)")
    parser.add_argument("--searcher", choices=("optuna", "random"), default=d.searcher,
                        help="Optuna TPE or Tune's random search (default: %(default)s)")
    parser.add_argument("--no-asha", action="store_true", help="let every trial run its full budget")
    parser.add_argument("--reports", type=int, default=d.reports,
                        help="validation reports over a model's largest budget (default: %(default)s)")
    parser.add_argument("--grace-fraction", type=float, default=d.grace_fraction,
                        help="ASHA's first rung as a fraction of the largest budget (default: %(default)s)")
    parser.add_argument("--reduction-factor", type=int, default=d.reduction_factor,
                        help="ASHA reduction factor (default: %(default)s)")
    parser.add_argument("--cpus-per-trial", type=int, default=d.cpus_per_trial,
                        help="CPUs and torch threads of a trial and of a test run (default: %(default)s)")
    parser.add_argument("--lsrwrl-preset", default=d.lsrwrl_preset, help="LSRWRL's base preset (default: %(default)s)")
    parser.add_argument("--fix", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="set a parameter for every trial and test run instead of searching it, repeatable "
                             "(e.g. sasrec:max_len=50, lsrwrl:total_timesteps=300000)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke-test budgets (neural {QUICK_NEURAL}, LSRWRL {QUICK_LSRWRL}): not a result")
    parser.add_argument("--data-dir", default=None, help="root holding the dataset folder (default: $MOVIELENS_DATA, cache)")
    parser.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    parser.add_argument("--edited-copy", action="store_true",
                        help="the data are an edited copy: skip the check against the official figures")
    parser.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    parser.add_argument("--runs-dir", default=d.runs_dir, help="LSRWRL's run directories (default: %(default)s)")
    parser.add_argument("--render-only", action="store_true",
                        help="compute nothing: write <out>/table1_equal_<dataset>.md and .csv from the records and "
                             "run files there (every run writes them at its end too)")
    add_ray_arguments(parser)
    return parser.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> StudyOptions:
    """The validated :class:`StudyOptions` of parsed options (exits with the problems)."""
    try:
        return StudyOptions(
            dataset=args.dataset, models=list(args.models), trials=args.trials, seeds=list(args.seeds),
            seed=args.seed, split=args.split, train_ratio=args.train_ratio, val_fraction=args.val_fraction,
            searcher=args.searcher, asha=not args.no_asha, reports=args.reports, grace_fraction=args.grace_fraction,
            reduction_factor=args.reduction_factor, cpus_per_trial=args.cpus_per_trial,
            lsrwrl_preset=args.lsrwrl_preset, fixed=_parse_fix(args.fix), quick=args.quick, data_dir=args.data_dir,
            download=not args.no_download, expect_official=not args.edited_copy, runs_dir=args.runs_dir,
        ).validate()  # fmt: skip
    except ValueError as err:
        raise SystemExit(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 1 if a model's search or a test run failed."""
    from experiments.ray_cluster import NodeDataError, require_ray, session_from_args

    args = parse_args(argv)
    opts = options_from_args(args)
    if args.render_only:
        try:
            paths = render_table(opts, args.out)
        except (FileNotFoundError, RuntimeError, ValueError) as err:
            raise SystemExit(f"{type(err).__name__}: {err}") from None
        print(f"wrote {paths['md']} and {paths['csv']}")
        return 0
    require_ray()
    # Set before PyTorch runs anything here, so that a local Ray's workers inherit it too; each
    # trial and test run pins it again in its own process (agents.kernel_path).
    from agents.kernel_path import pin_kernel_path

    pin_kernel_path(opts.kernel_path)
    start = time.perf_counter()
    try:
        with session_from_args(args):
            result = run_study(opts, args.out, storage=args.storage)
    except (ConnectionError, NodeDataError) as err:
        raise SystemExit(f"{type(err).__name__}: {err}") from None
    failed = dict(result.failed)
    failed.update({f"{m} seed {s}": run.error for (m, s), run in result.runs.items() if run.error})
    print(f"{len(result.records)}/{len(opts.models)} models searched or read, {len(result.runs)} test runs, "
          f"{time.perf_counter() - start:.0f} s; records in {record_path(args.out, opts.dataset, '*').parent}")
    for name, error in failed.items():
        print(f"  FAILED {name}: {error}")
    if any(run.error is None for run in result.runs.values()):
        try:
            paths = render_table(opts, args.out)
        except (FileNotFoundError, RuntimeError, ValueError) as err:  # the runs are on disk: report, go on
            failed["table"] = f"{type(err).__name__}: {err}"
            print(f"  table not written: {failed['table']}")
        else:
            print(f"table: {paths['md']}, {paths['csv']}")
    return 1 if failed else 0


def render_table(opts: StudyOptions, out: str | os.PathLike) -> dict[str, Path]:
    """Write the study's table of ``opts.dataset`` and ``opts.seeds`` from the files under ``out``
    (:func:`experiments.equal_budget_table.write_equal_table`).

    :return: ``{"md": path, "csv": path}``
    """
    from experiments.equal_budget_table import write_equal_table

    return write_equal_table(out, opts.dataset, opts.seeds)


if __name__ == "__main__":
    sys.exit(main())
