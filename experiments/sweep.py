"""Run the runs of ``make table`` (and any other list of table runs) as Ray Tune trials.

Every (dataset, model, seed) run of :mod:`experiments.table1` becomes one Ray Tune trial that
calls :func:`experiments.table1.run_one` with the table's own :class:`~experiments.table1.TableOptions`,
so it writes (or reads) exactly the per-run result file ``make table`` does; the driver then
renders the table with :func:`experiments.table1.write_outputs`. A table made by ``make sweep``
and one made by ``make table`` from the same run files are the same bytes.

Usage::

    python -m experiments.sweep --models popularity itemcf usercf ease   # local Ray, this machine's cores
    python -m experiments.sweep --address 10.0.0.5:6379                  # a running cluster (or $RAY_ADDRESS)
    python -m experiments.sweep --help                                   # every experiments.table1 option, plus Ray's

Resources: a trial asks for as many CPUs as its run uses threads: ``--threads`` for the
baselines (default 1), the LSRWRL config's ``torch_threads`` for LSRWRL (preset ``default``:
2; ``--lsrwrl-set torch_threads=N`` changes it). Ray sets ``OMP_NUM_THREADS`` to the same number
inside the trial, so a node never runs more threads than it has cores.

Shared tuning: on a temporal split the seeds of a baseline share one tuning result. The sweep
runs in two waves so that it is computed once: first every run that does not wait for another
run's tuning (the first seed of each baseline, every LSRWRL seed), then the other seeds, which
read the stored tuning.

Data: each trial loads its dataset on its own node, from ``--data-dir`` (made absolute on the
driver: give a path that exists on every node, e.g. a shared mount), else ``$MOVIELENS_DATA``
(the driver's, made absolute, travels with the job: :mod:`experiments.ray_cluster`), else that
node's cache or download. Before any trial starts, every node locates the datasets once
(:func:`~experiments.ray_cluster.check_data_on_nodes`): a node without them stops the sweep with
its name, the places looked at and the fix. A trial checks that its data give the same run
configuration (dataset size included) as the driver's, and fails with a clear error if not.

Resume: the Tune experiment lives in ``--storage`` (default ``runs/ray_tune``), named by a hash
of the planned runs; running the same command again restores it (``Tuner.restore``): finished
trials are not run again, interrupted and failed ones are. Finished runs are also never
recomputed because their result files exist. A failed trial is reported by name with its error
while the others finish, and the table shows it as ``make table`` would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments import table1
from experiments.ray_cluster import (
    NodeDataError,
    add_ray_arguments,
    check_data_on_nodes,
    require_ray,
    session_from_args,
)
from experiments.table1 import Run, TableOptions
from recsim_env.dataset import MovieLensData

# What one trial runs ----------------------------------------------------------------------------


@dataclass
class RunSpec:
    """One run of a table (or of an ablation): a Ray Tune trial.

    :param dataset: dataset name
    :param model: model name (a baseline registry name or ``"lsrwrl"``)
    :param seed: seed (as in :func:`experiments.table1.run_one`)
    :param options: the table settings of this run; an ablation varies them per run (e.g.
        ``lsrwrl_overrides``)
    :param tag: distinguishes runs of the same model and seed with different options
        (e.g. ``"no-next-item"``); part of the trial name
    """

    dataset: str
    model: str
    seed: int
    options: TableOptions = field(default_factory=TableOptions)
    tag: str = ""

    @property
    def name(self) -> str:
        """The trial name, e.g. ``ml-100k-itemcf-seed0``."""
        model = f"{self.model}-{self.tag}" if self.tag else self.model
        return f"{self.dataset}-{model}-seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "model": self.model, "seed": self.seed,
                "options": asdict(self.options), "tag": self.tag}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSpec:
        return cls(values["dataset"], values["model"], int(values["seed"]),
                   TableOptions(**values["options"]), values.get("tag", ""))  # fmt: skip

    def cpus(self) -> int:
        """CPUs the trial asks for: the threads its run uses (see the module docstring)."""
        if self.model == table1.LSRWRL:
            return int(table1.lsrwrl_config(self.dataset, self.seed, self.options, Path("runs")).torch_threads)
        return int(self.options.threads)


def table_specs(datasets: Sequence[str], opts: TableOptions) -> list[RunSpec]:
    """The runs of ``make table`` with ``opts`` on each dataset, in the table's order."""
    return [RunSpec(name, model, seed, opts) for name in datasets for seed, model in table1.table_plan(opts)]


def _normalised(key: dict[str, Any]) -> Any:
    return json.loads(json.dumps(key, default=str))


_WORKER_DATA: dict[tuple[str, str | None, bool, bool], MovieLensData] = {}


def _worker_dataset(name: str, data_dir: str | None, download: bool, expect_official: bool) -> MovieLensData:
    """The dataset as this worker process finds it (loaded once per process)."""
    from recsim_env.movielens import load_movielens

    key = (name, data_dir, download, expect_official)
    if key not in _WORKER_DATA:
        _WORKER_DATA[key] = load_movielens(name, data_dir, download=download, expect_official=expect_official)
    return _WORKER_DATA[key]


class TrialFailed(RuntimeError):
    """A table run that failed; its :class:`~experiments.table1.Run` (with ``error``) was reported."""


def table_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable: one :func:`experiments.table1.run_one` call.

    ``config["trial"]``: ``run`` (a :meth:`RunSpec.to_dict`), ``key`` (the driver's run
    configuration), ``data_dir`` (absolute or None), ``out`` (absolute results folder),
    ``force``. Reports one result: the run as JSON (``run``), whether it was computed now
    (``computed``) and its test metrics; raises :class:`TrialFailed` after reporting a failed run.
    """
    from ray import tune

    config = config["trial"]
    spec = RunSpec.from_dict(config["run"])
    opts = spec.options
    out = Path(config["out"])
    # Every model on LSRWRL's kernel path, as `make table` runs them, set before this worker's
    # first torch operation (agents.kernel_path).
    from agents.kernel_path import pin_kernel_path

    pin_kernel_path(table1.lsrwrl_config(spec.dataset, spec.seed, opts, out).kernel_path)
    data = _worker_dataset(spec.dataset, config["data_dir"], opts.download, opts.expect_official)
    key = table1.run_key(spec.model, data, spec.seed, opts, out)
    if _normalised(key) != config["key"]:
        raise RuntimeError(
            f"{spec.name}: this worker's {spec.dataset} ({data.n_ratings} ratings, found via "
            f"{config['data_dir'] or '$MOVIELENS_DATA / cache'}) gives another run configuration than "
            "the driver's; give every node the same data (--data-dir on a shared path, or the same "
            "MOVIELENS_DATA copy)"
        )
    split = table1.table_split(data, spec.seed, opts)
    run, computed = table1.run_one(data, split, spec.model, spec.seed, opts, out, force=bool(config["force"]))
    metrics = {f"test_{k}": float(v) for k, v in (run.metrics or {}).items() if k in table1.METRICS}
    tune.report({"run": json.dumps(asdict(run), default=str), "computed": computed, **metrics})
    if run.error is not None:
        raise TrialFailed(f"{spec.name}: {run.error}")


# Driver -----------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`run_specs` returns.

    :param runs: trial name -> its :class:`~experiments.table1.Run` (``error`` set if it failed);
        missing for runs that did not finish (interrupted sweep)
    :param computed: trial names whose run a trial of this sweep computed (in this session or an
        earlier, interrupted one); the others were read from their result files
    :param failed: trial name -> error of every failed trial
    :param experiments: the Tune experiment folders (one per wave)
    :param seconds: wall time of the sweep
    :param planned: number of planned runs
    """

    runs: dict[str, Run]
    computed: list[str]
    failed: dict[str, str]
    experiments: list[str]
    seconds: float
    planned: int

    @property
    def complete(self) -> bool:
        """Whether every planned run finished (successfully or not)."""
        return len(self.runs) == self.planned


def _progress_callback(done: int, total: int, log: Callable[[str], None]):
    from ray import tune

    class Progress(tune.Callback):
        """One line per finished trial: its metrics or its error (``done``: runs of earlier waves)."""

        def _line(self, trials, trial, text: str) -> None:
            # Counted from the trials' states, so a restored experiment counts right too.
            finished = done + 1 + sum(t is not trial and t.status in ("TERMINATED", "ERROR") for t in trials)
            log(f"[{finished}/{total} {time.strftime('%H:%M:%S')}] {trial.config['trial']['run_name']}: {text}")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            run = Run(**json.loads(trial.last_result["run"]))
            m = run.metrics or {}
            how = "computed" if trial.last_result.get("computed") else "read from its result file"
            self._line(trials, trial, f"P@10 {m.get('precision@10', float('nan')):.4f}  R@10 "
                              f"{m.get('recall@10', float('nan')):.4f}  tuned {run.tuned}  ({how})")  # fmt: skip

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._line(trials, trial, f"FAILED: {_trial_error(trial.last_result, trial.path)}")

    return Progress()


def _trial_error(last_result: dict[str, Any] | None, trial_path: str | None) -> str:
    """The error of a failed trial: its run's error if it reported one, else Tune's."""
    if last_result and "run" in last_result:
        error = json.loads(last_result["run"]).get("error")
        if error:
            return error
    text = ""
    if trial_path:
        with contextlib.suppress(OSError):
            text = (Path(trial_path) / "error.txt").read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1].strip() if lines else "the trial failed without an error message") + (
        f" (see {trial_path}/error.txt)" if trial_path else "")


def plan_waves(specs: Sequence[RunSpec], datasets: dict[str, MovieLensData]) -> list[list[RunSpec]]:
    """Split the runs so that each baseline tuning is computed by one run only.

    Wave 1: every run whose tuning no earlier run of the plan shares (and LSRWRL); wave 2: the
    runs that reuse a tuning computed in wave 1 (the other seeds of a temporal split). The
    waves depend on the plan only, never on which files exist, so a rerun finds the same Tune
    experiments to restore.
    """
    first, second = [], []
    tuned: set[str] = set()
    for spec in specs:
        key = table1.tuning_key(spec.model, datasets[spec.dataset], spec.seed, spec.options)
        text = None if key is None else json.dumps([spec.dataset, _normalised(key)], sort_keys=True)
        if text is None or text not in tuned:
            first.append(spec)
            if text is not None:
                tuned.add(text)
        else:
            second.append(spec)
    return [wave for wave in (first, second) if wave]


def run_specs(
    specs: Sequence[RunSpec],
    datasets: dict[str, MovieLensData],
    out: str | os.PathLike,
    *,
    storage: str | os.PathLike = "runs/ray_tune",
    data_dir: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Run every spec as a Ray Tune trial on the current Ray session (see
    :func:`~experiments.ray_cluster.ray_session`), after checking that every node finds the data
    (:func:`~experiments.ray_cluster.check_data_on_nodes`).

    :param specs: the runs; trial names (:attr:`RunSpec.name`) must be unique
    :param datasets: name -> the driver's copy of each dataset (run keys, wave planning)
    :param out: results folder of the run files (as ``make table --out``); made absolute
    :param storage: folder of the Tune experiments (resume state; default ``runs/ray_tune``);
        on a multi-node cluster a shared path or a cloud URI
    :param data_dir: the data root every worker loads from (made absolute; default each
        worker's own ``$MOVIELENS_DATA`` / cache)
    :param force: recompute every run (a new Tune experiment; result files are overwritten)
    :param log: progress printer
    :return: :class:`SweepResult`
    :raises NodeDataError: a node cannot find a dataset (before any trial started)
    """
    require_ray()
    from ray import tune

    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"trial names must be unique, these repeat: {duplicates}; give the variants a tag")
    out = Path(out).resolve()
    storage_path = str(storage) if "://" in str(storage) else str(Path(storage).resolve())
    data_dir = str(Path(data_dir).expanduser().resolve()) if data_dir else None
    start = time.perf_counter()
    for download in sorted({s.options.download for s in specs}):
        check_data_on_nodes([s.dataset for s in specs if s.options.download == download], data_dir,
                            download=download, log=log)  # fmt: skip
    keys = {s.name: table1.run_key(s.model, datasets[s.dataset], s.seed, s.options, out) for s in specs}
    result = SweepResult(runs={}, computed=[], failed={}, experiments=[], seconds=0.0, planned=len(specs))
    waves = plan_waves(specs, datasets)
    for number, wave in enumerate(waves, 1):
        digest = hashlib.sha256(json.dumps([[s.name, _normalised(keys[s.name])] for s in wave],
                                           sort_keys=True).encode()).hexdigest()[:12]  # fmt: skip
        name = f"sweep-{digest}-wave{number}" + (f"-force-{time.strftime('%Y%m%d-%H%M%S')}" if force else "")
        path = f"{storage_path}/{name}"
        trainable = tune.with_resources(table_trial, lambda config: {"cpu": config["trial"]["cpus"]})
        if not force and tune.Tuner.can_restore(path):
            log(f"wave {number}/{len(waves)}: resuming Tune experiment {path}")
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            log(f"wave {number}/{len(waves)}: {len(wave)} trials, Tune experiment {path}")
            configs = [{"run": s.to_dict(), "run_name": s.name, "key": _normalised(keys[s.name]),
                        "data_dir": data_dir, "out": str(out), "force": force, "cpus": s.cpus()}
                       for s in wave]  # fmt: skip
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(configs)},
                tune_config=tune.TuneConfig(
                    trial_name_creator=lambda t: t.config["trial"]["run_name"],
                    trial_dirname_creator=lambda t: t.config["trial"]["run_name"],
                    reuse_actors=True,  # no new process (and imports) per run; every run seeds itself
                ),
                run_config=tune.RunConfig(
                    name=name, storage_path=storage_path, verbose=0, log_to_file=True,
                    failure_config=tune.FailureConfig(max_failures=0),
                    callbacks=[_progress_callback(len(result.runs), len(specs), log)],
                ),
            )
        grid = tuner.fit()
        result.experiments.append(path)
        by_name = {s.name: s for s in wave}
        for trial_result in grid:
            spec_name = Path(trial_result.path).name  # trial folder = trial name (config is None if unstarted)
            spec = by_name[spec_name]
            metrics = trial_result.metrics or {}
            if "run" in metrics:
                run = Run(**json.loads(metrics["run"]))
                if metrics.get("computed"):
                    result.computed.append(spec_name)
            elif trial_result.error is not None:
                run = Run(model=spec.model, seed=spec.seed, error=_trial_error(None, trial_result.path))
            else:
                continue  # never finished: the sweep was interrupted
            if run.error is None:
                store = table1.RunStore(out, spec.dataset)
                if not store.run_path(spec.model, spec.seed, keys[spec_name]).is_file():
                    store.save_run(run, keys[spec_name])  # the trial ran on a node without this folder
            else:
                result.failed[spec_name] = run.error
            result.runs[spec_name] = run
        if len([s for s in wave if s.name in result.runs]) < len(wave):
            break  # interrupted: the next wave waits for this one
    result.seconds = time.perf_counter() - start
    return result


# CLI --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: the table's runs as trials, then the table files.

    :return: 0, 1 if a model failed on every seed (as ``make table``), 130 if interrupted
    """
    parser = table1.build_parser(
        prog="python -m experiments.sweep",
        description="Compute the runs of experiments.table1 as Ray Tune trials (locally or on a cluster) "
                    "and write the same table files. Every experiments.table1 option works the same.",
    )  # fmt: skip
    add_ray_arguments(parser)
    args = table1.parse_args(argv, parser)
    require_ray()
    opts = table1.options_from_args(args)
    if opts.data_dir:  # the trials (LSRWRL's config too) run in their trial folders, maybe on other nodes
        opts = dataclasses.replace(opts, data_dir=str(Path(opts.data_dir).expanduser().resolve()))
    datasets = dict(table1.load_datasets(args, opts))
    specs = table_specs(list(datasets), opts)
    out = Path(args.out)
    try:
        with session_from_args(args):
            result = run_specs(specs, datasets, out, storage=args.storage, data_dir=opts.data_dir, force=args.force)
    except (ConnectionError, NodeDataError) as err:
        raise SystemExit(f"{type(err).__name__}: {err}") from None
    except KeyboardInterrupt:  # outside Tune's own Ctrl+C handling (e.g. between two waves)
        print("interrupted: run the same command again to resume (finished runs are not recomputed)")
        return 130
    read = len(result.runs) - len(result.computed) - len(result.failed)
    print(f"{len(result.runs)}/{len(specs)} runs in {result.seconds:.0f} s: {len(result.computed)} computed, "
          f"{read} read from their result files, {len(result.failed)} failed")
    for name, error in result.failed.items():
        print(f"  FAILED {name}: {error}")
    if not result.complete:
        print("interrupted: run the same command again to resume (finished runs are not recomputed)")
        return 130
    failed = False
    for name, data in datasets.items():
        runs = [result.runs[s.name] for s in specs if s.dataset == name]
        table = table1.write_outputs(runs, data, opts, out)
        print(f"{name}: wrote " + ", ".join(map(str, table.paths.values())))
        failed |= any(r["status"] == "failed" for r in table.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
