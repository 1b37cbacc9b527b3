"""Reproduce the paper's Table 1: every baseline and LSRWRL, one split, one evaluator.

For each dataset and seed the per-user split is drawn once (:func:`recsim_env.splits.split_ratings`);
every model is fitted on its train part and scored by the shared
:func:`recsim_env.evaluation.evaluate_ranking` (full ranking, train items excluded, all test
items relevant). Baseline hyperparameters are chosen on the validation slice
:func:`recsim_env.splits.holdout_last` of the train part (:mod:`agents.baselines.tuning`),
never on the test part: once per dataset for the temporal split (identical for every seed),
once per seed for the random split. LSRWRL is trained by :func:`agents.training.train` with
a named preset (``--lsrwrl-preset``) on the same split.

Usage::

    python -m experiments.table1                              # ML-100K (+ ML-1M if present), seeds 0 1 2
    python -m experiments.table1 --models itemcf ease sasrec --seeds 0
    python -m experiments.table1 --split random --out results/random
    python -m experiments.table1 --quick --seeds 0            # smoke test, a minute or two

Writes, atomically, per dataset: ``<out>/table1_<dataset>.md`` (the table, protocol, tuned
values, failures), ``.csv`` (one row per model), ``_runs.json`` (every model x seed run, without
the per-user values) and ``_p10_r10.png`` (bar chart of precision@10 and recall@10 with std error
bars over seeds).
A model that raises is reported as failed with its error; the others still run.

Every model also acts as a policy (``Recommender.score_states``; LSRWRL through
:func:`agents.scoring.greedy_return`): its **simulated return** is the mean return of its masked
greedy policy, one test-mode episode per user, in ``MovieLensRec-v0`` with the replay user
(``sim_return_replay``) and with the learned user model (``user_model="ease"``,
``sim_return_ease``, seed 0), so RL and supervised models are also compared on the quantity RL
optimises. A stored run without these figures (written before they existed) gets them computed
(the model is refitted with its stored settings) and its file rewritten, same key.

Resumable: every finished (dataset, model, seed) run is written at once, atomically, to
``<out>/table1_runs/<dataset>/<model>-seed<seed>-<key>.json``, where ``<key>`` hashes the run's
full configuration (split, tuning grid and metric, fixed settings; for LSRWRL the whole
:class:`~agents.config.TrainConfig`). A rerun with the same configuration reads that file
instead of recomputing, so an interrupted table loses at most the run in progress, and a
changed preset or option reruns what it changes. ``--force`` recomputes everything. Baseline
tuning results are stored beside them (``tuning-<model>-<key>.json``) and shared by the seeds
of a temporal split. A code change that alters results without changing any setting is not
detected: rerun with ``--force``. The table files are a pure function of the run files and the
options (no date, the command is rebuilt from the options), so any runner that writes the same
run files (e.g. a Ray sweep) renders the same bytes.

Per-user values: a run file also keeps the test users' values of :data:`PER_USER_METRICS`
(:func:`per_user_record`; read back with :func:`run_per_user`), so that "model A is better than
model B" can be tested user by user (:mod:`recsim_env.significance`). A file written before they
were kept reads as before, with ``per_user`` ``None`` (no key changed, so it is not recomputed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.baselines import available_recommenders, get_recommender_class, init_param_names
from agents.baselines.tuning import DEFAULT_GRIDS, TuningResult, tune
from agents.config import DATASET_PRESETS
from recsim_env.dataset import MovieLensData, Split
from recsim_env.evaluation import evaluate_ranking
from recsim_env.files import atomic_write_bytes, atomic_write_text

#: The paper's Table 1 as printed: dataset -> model -> (precision@10, recall@10).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "ml-1m": {
        "itemcf": (0.176, 0.098), "usercf": (0.167, 0.108), "sasrec": (0.226, 0.125),
        "stamp": (0.220, 0.116), "gru4rec": (0.214, 0.121), "lsrwrl": (0.243, 0.136),
    },
    "ml-100k": {
        "itemcf": (0.131, 0.072), "usercf": (0.142, 0.087), "sasrec": (0.203, 0.119),
        "stamp": (0.191, 0.110), "gru4rec": (0.178, 0.115), "lsrwrl": (0.207, 0.121),
    },
}  # fmt: skip
#: Display names; also the default model order (the paper's, with the extra references first).
LABELS: dict[str, str] = {
    "popularity": "Popularity", "itemcf": "ItemCF", "usercf": "UserCF", "ease": "EASE",
    "sasrec": "SASRec", "stamp": "STAMP", "gru4rec": "GRU4Rec", "lsrwrl": "LSRWRL",
}  # fmt: skip
METRICS: tuple[str, ...] = ("precision@10", "recall@10", "ndcg@10", "hit_rate@10")
SHORT = {"precision@10": "P@10", "recall@10": "R@10", "ndcg@10": "NDCG@10", "hit_rate@10": "HR@10"}
#: Simulated returns of each model's greedy policy, by simulator (``user_model``).
SIM_METRICS: dict[str, str] = {"sim_return_replay": "replay", "sim_return_ease": "ease"}
#: Per-user metrics a run file keeps, for paired significance tests (:func:`per_user_record`).
PER_USER_METRICS: tuple[str, ...] = ("precision@10", "ndcg@10")
#: Seed of the simulations (the learned user model draws its likes from it).
SIM_SEED = 0
LSRWRL = "lsrwrl"
#: LSRWRL overrides of ``--quick`` (a smoke-test budget, not a result).
QUICK_LSRWRL: dict[str, Any] = dict(
    total_timesteps=2_000, learning_starts=500, eval_freq=0, checkpoint_freq=0, pretrain_steps=20
)


@dataclass
class Run:
    """One model fitted and evaluated on one seed.

    :param model: registry name (or ``"lsrwrl"``)
    :param seed: seed of the model (and of the split when it is random)
    :param metrics: test metrics from ``evaluate_ranking``; ``None`` if the run failed
    :param params: the hyperparameters used (tuned ones included)
    :param tuned: names and values chosen on the validation slice
    :param tune_seconds: wall time of tuning charged to this run (0 when reused from a cache)
    :param fit_seconds: wall time of the final fit (LSRWRL: the whole ``train`` call)
    :param eval_seconds: wall time of the test evaluation
    :param error: ``"Type: message"`` if the run raised
    :param key: hash of the run's configuration (see :func:`run_key`); names its result file
    :param per_user: the evaluated users (the test split's users with a test item) and their
        values of :data:`PER_USER_METRICS`, as :func:`per_user_record` stores them (decode with
        :func:`run_per_user`); ``None`` for a failed run or one written before they were kept
    """

    model: str
    seed: int
    metrics: dict[str, float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)
    tune_seconds: float = 0.0
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    error: str | None = None
    key: str = ""
    per_user: dict[str, list] | None = None


def per_user_record(per_user: dict[str, np.ndarray]) -> dict[str, list]:
    """The per-user values a run file keeps: the users and each of :data:`PER_USER_METRICS`.

    Values are stored as float32, each written as the shortest decimal that reads back as the
    same float32 (about 8 significant digits; ``0.3``, ``0.63092977``): precision@10, a multiple
    of 0.1, reads back exactly, NDCG@10 to float32 rounding (relative 6e-8), so a mean over the
    stored values matches the run's metric to about 1e-7, not bit for bit.

    :param per_user: ``evaluate_ranking(..., return_per_user=True)["per_user"]``
    :return: ``{"user": [int, ...], "precision@10": [float, ...], "ndcg@10": [float, ...]}``,
        the lists aligned (the evaluator's user order)
    """
    record: dict[str, list] = {"user": np.asarray(per_user["user"], dtype=np.int64).tolist()}
    for metric in PER_USER_METRICS:
        record[metric] = [float(str(v)) for v in np.asarray(per_user[metric], dtype=np.float32)]
    return record


def run_per_user(run: Run) -> dict[str, np.ndarray] | None:
    """The per-user values of a run as arrays: ``"user"`` int64, each metric float64.

    Feed them to :func:`recsim_env.significance.compare_to_reference` (several seeds of one
    model: :func:`recsim_env.significance.mean_over_seeds` first).

    :param run: a run, fresh or read from its file
    :return: the arrays, or ``None`` when the run has none (failed, or its file predates them)
    """
    if run.per_user is None:
        return None
    return {name: np.asarray(values, dtype=np.int64 if name == "user" else np.float64)
            for name, values in run.per_user.items()}  # fmt: skip


def run_summary(run: Run) -> dict[str, Any]:
    """A run as a dict without its per-user values (the summary files; the run file keeps them)."""
    record = asdict(run)
    record.pop("per_user")
    return record


@dataclass
class TableOptions:
    """Settings of one table run (the CLI maps one to one onto these).

    :param seeds: seeds; each gives a model seed (and a split seed for ``split="random"``)
    :param models: model names in table order (registry names and ``"lsrwrl"``)
    :param split: ``"temporal"`` or ``"random"``
    :param train_ratio: fraction of each user's ratings in train (default 0.8, the paper's)
    :param val_fraction: held-out fraction of each train sequence for tuning (default 0.2)
    :param tune_metric: validation metric that selects hyperparameters (default ``"ndcg@10"``)
    :param max_epochs: cap on the neural baselines' epochs (early stopping picks the count)
    :param threads: torch threads of the neural baselines (LSRWRL: its preset's ``torch_threads``)
    :param quick: smoke-test budget: 2 epochs, two grid points, tiny LSRWRL run
    :param lsrwrl_preset: :data:`agents.config.PRESETS` name for LSRWRL
    :param lsrwrl_overrides: extra :class:`~agents.config.TrainConfig` field overrides
    :param data_dir: root holding the dataset folders (default: the loader's search order)
    :param download: allow downloading a dataset that is found nowhere
    :param expect_official: check the data against the official release's figures (``False``
        for an edited copy; LSRWRL reloads through :mod:`agents.training`, which always checks)
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: list[str] = field(default_factory=lambda: list(LABELS))
    split: str = "temporal"
    train_ratio: float = 0.8
    val_fraction: float = 0.2
    tune_metric: str = "ndcg@10"
    max_epochs: int = 50
    threads: int = 1
    quick: bool = False
    lsrwrl_preset: str = "default"
    lsrwrl_overrides: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    download: bool = True
    expect_official: bool = True


# Running the models --------------------------------------------------------------------------

#: Bumped when a run's result would change for the same settings (invalidates every run file).
RUN_FORMAT_VERSION = 1
#: TrainConfig fields that do not change an LSRWRL result (left out of its run key).
#: ``replay_buffer``: the compact buffer samples batches bit-identical to SB3's (agents.replay).
_UNKEYED_CONFIG = ("name", "runs_dir", "data_dir", "preset", "expect_official", "replay_buffer")
#: TrainConfig fields added after runs of this table were stored, with the (resolved) value that
#: gives the behaviour of before. At that value the field is left out of LSRWRL's run key, so a run
#: stored before the field existed keeps its key; any other value is keyed (and retrains).
_KEYED_UNLESS = {
    "kernel_path": "native", "data": None, "user_col": None, "item_col": None, "rating_col": None,
    "value_col": None, "timestamp_col": None, "user_feature_cols": [], "duplicates": "error",
    "policy": "lsrwrl", "next_item_loss": "full", "next_item_negatives": None, "item_compute": "dense",
}  # fmt: skip


def _lsrwrl_key_config(config: Any, data: MovieLensData) -> dict[str, Any]:
    """LSRWRL's config as keyed: its ``"auto"`` catalogue settings decided for ``data``
    (:meth:`~agents.config.TrainConfig.for_catalogue`, as a run records them), ``like_threshold``
    None as the dataset's."""
    values = json.loads(json.dumps(config.for_catalogue(data.n_items).to_dict(), default=str))
    if values.get("like_threshold") is None:
        values["like_threshold"] = data.like_threshold
    for unkeyed in _UNKEYED_CONFIG:
        values.pop(unkeyed, None)
    for name, before in _KEYED_UNLESS.items():
        if name in values and values[name] == before:
            del values[name]
    return values


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")


def _hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _fixed_params(name: str, seed: int, opts: TableOptions) -> dict[str, Any]:
    """Settings the table imposes (seed, threads, epoch cap), for classes that accept them."""
    accepted = set(init_param_names(get_recommender_class(name)))
    wanted = {"seed": seed, "num_threads": opts.threads, "epochs": 2 if opts.quick else opts.max_epochs}
    if opts.quick:
        wanted["patience"] = 1
    return {k: v for k, v in wanted.items() if k in accepted}


def _grid(name: str, opts: TableOptions) -> list[dict[str, Any]]:
    grid = DEFAULT_GRIDS.get(name, [{}])
    return grid[:2] if opts.quick else grid


def _tuning_key(name: str, data: MovieLensData, seed: int, opts: TableOptions) -> dict[str, Any]:
    """What decides a baseline's tuning: the validation slice, the grid and the fixed settings.

    On a temporal split the slice is the same for every seed, so the tuning is done once, with
    the fixed settings of the first seed that needs it (it is then reused by the others).
    """
    random_split = opts.split == "random"
    fixed = _fixed_params(name, seed, opts)
    if not random_split:
        fixed.pop("seed", None)
    return {
        "version": RUN_FORMAT_VERSION, "dataset": data.name, "n_ratings": data.n_ratings,
        "model": name, "split": opts.split, "train_ratio": opts.train_ratio,
        "split_seed": seed if random_split else None, "val_fraction": opts.val_fraction,
        "tune_metric": opts.tune_metric, "grid": _grid(name, opts), "fixed": fixed,
    }  # fmt: skip


def tuning_key(name: str, data: MovieLensData, seed: int, opts: TableOptions) -> dict[str, Any] | None:
    """The configuration of a baseline's stored tuning (``None`` for LSRWRL, which is not tuned here).

    Runs with equal tuning keys share one ``tuning-*.json`` file (every seed of a temporal split).
    """
    return None if name == LSRWRL else _tuning_key(name, data, seed, opts)


def lsrwrl_config(dataset: str, seed: int, opts: TableOptions, out: Path, name: str | None = None):
    """The :class:`~agents.config.TrainConfig` of LSRWRL's run on one seed of the table.

    :param name: run directory prefix (an unkeyed field; default ``table1-lsrwrl-<dataset>-seed<seed>``)
    """
    from agents.config import make_config

    overrides = dict(
        dataset=dataset, seed=seed, split=opts.split, split_seed=seed,
        train_ratio=opts.train_ratio, val_fraction=opts.val_fraction,
        data_dir=opts.data_dir, expect_official=opts.expect_official, runs_dir=str(out / "runs"),
        name=name or f"table1-{LSRWRL}-{dataset}-seed{seed}",
    )  # fmt: skip
    if opts.quick:
        overrides.update(QUICK_LSRWRL)
    overrides.update(opts.lsrwrl_overrides)
    return make_config(opts.lsrwrl_preset, **overrides)


def run_key(name: str, data: MovieLensData, seed: int, opts: TableOptions, out: Path) -> dict[str, Any]:
    """Everything that decides the result of one (dataset, model, seed) run of the table.

    :return: a JSON-ready dict; its hash names the run's result file
    """
    if name == LSRWRL:
        config = _lsrwrl_key_config(lsrwrl_config(data.name, seed, opts, out), data)
        return {"version": RUN_FORMAT_VERSION, "dataset": data.name, "n_ratings": data.n_ratings,
                "model": name, "seed": seed, "config": config}  # fmt: skip
    return {**_tuning_key(name, data, seed, opts), "seed": seed, "fixed": _fixed_params(name, seed, opts)}


class RunStore:
    """The per-run result files of one dataset under ``<out>/<runs_folder>/<dataset>/``.

    Each file holds ``{"key": <configuration>, "run": <Run>}`` (or a ``TuningResult`` for
    ``tuning-*`` files) and is written atomically as soon as the run is done.

    :param out: results folder
    :param dataset: dataset name
    :param runs_folder: folder of the run files under ``out`` (default ``"table1_runs"``;
        :mod:`experiments.studies.ablation` keeps its runs in ``"ablation_runs"``)
    """

    def __init__(self, out: str | os.PathLike, dataset: str, runs_folder: str = "table1_runs") -> None:
        self.folder = Path(out) / runs_folder / dataset

    def run_path(self, name: str, seed: int, key: dict[str, Any]) -> Path:
        return self.folder / f"{name}-seed{seed}-{_hash(key)}.json"

    def tuning_path(self, name: str, key: dict[str, Any]) -> Path:
        return self.folder / f"tuning-{name}-{_hash(key)}.json"

    @staticmethod
    def _read(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RuntimeError(
                f"{path}: unreadable run file ({_error_text(exc)}); delete it to recompute that run"
            ) from exc
        if json.loads(json.dumps(key, default=str)) != record.get("key"):
            raise RuntimeError(f"{path}: its recorded configuration does not match its name; delete it")
        return record

    def load_run(self, name: str, seed: int, key: dict[str, Any]) -> Run | None:
        """The stored run with exactly this configuration, or ``None``."""
        record = self._read(self.run_path(name, seed, key), key)
        return None if record is None else Run(**record["run"])

    def save_run(self, run: Run, key: dict[str, Any], name: str | None = None) -> Path:
        """Write ``run`` to its file, atomically (``name``: the file's name prefix, default ``run.model``).

        Indented JSON, but each per-user list on one line (about 125 KB for ML-1M's 6,040 users).
        """
        payload = {"key": key, "run": asdict(run)}
        per_user = payload["run"]["per_user"] or {}
        # Placeholders are written in their place, then replaced by the compact lists.
        payload["run"]["per_user"] = {entry: f"<per_user {entry}>" for entry in per_user} or None
        text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
        for entry, values in per_user.items():
            text = text.replace(json.dumps(f"<per_user {entry}>"), json.dumps(values), 1)
        return atomic_write_text(self.run_path(name or run.model, run.seed, key), text)

    def load_hashed(self, name: str, seed: int, key_hash: str) -> Run:
        """The stored run whose configuration hashes to ``key_hash`` (a :attr:`Run.key`, as a
        table's ``_runs.json`` lists it), checked against the configuration the file records.

        :raises FileNotFoundError: no such file
        :raises RuntimeError: the file is unreadable or its configuration has another hash
        """
        path = self.folder / f"{name}-seed{seed}-{key_hash}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no run file (the table lists it: rerun the table to write it)")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RuntimeError(f"{path}: unreadable run file ({_error_text(exc)})") from exc
        if _hash(record.get("key", {})) != key_hash:
            raise RuntimeError(f"{path}: its recorded configuration does not match its name; delete it")
        return Run(**record["run"])

    def load_tuning(self, name: str, key: dict[str, Any]) -> TuningResult | None:
        record = self._read(self.tuning_path(name, key), key)
        return None if record is None else TuningResult(**record["tuning"])

    def save_tuning(self, name: str, key: dict[str, Any], result: TuningResult) -> Path:
        payload = {"key": key, "tuning": result.to_dict()}
        text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
        return atomic_write_text(self.tuning_path(name, key), text)


def simulated_returns(
    obs_score_fn: Callable[[dict[str, np.ndarray]], np.ndarray],
    split: Split,
    history_len: int = 20,
    like_threshold: int = 4,
    max_steps: int = 50,
    num_envs: int = 64,
) -> dict[str, float]:
    """Mean return of a greedy policy in each simulator, one test-mode episode per user.

    :param obs_score_fn: item scores of a batch of observations (``Recommender.score_states``)
    :param split: the split (test mode starts from each user's whole train history)
    :param history_len: observation history length (a model's own, for LSRWRL)
    :param like_threshold: smallest liked rating
    :param max_steps: episode length before truncation
    :param num_envs: users simulated together
    :return: ``{"sim_return_replay", "sim_likes_replay", "sim_return_ease", "sim_likes_ease"}``
    """
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the id)
    from recsim_env.evaluation import evaluate_greedy

    out: dict[str, float] = {}
    for key, user_model in SIM_METRICS.items():
        vec = gym.make_vec(
            "MovieLensRec-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
            mode="test", split_data=split, history_len=history_len,
            like_threshold=like_threshold, max_steps=max_steps, user_model=user_model,
        )  # fmt: skip
        result = evaluate_greedy(obs_score_fn, vec, seed=SIM_SEED)
        vec.close()
        out[key] = result["mean_return"]
        out[key.replace("return", "likes")] = result["mean_likes"]
    return out


def run_baseline(name: str, split: Split, seed: int, opts: TableOptions, store: RunStore, force: bool = False) -> Run:
    """Tune (or reuse the stored tuning of) a baseline on the validation slice, refit, evaluate.

    :param name: registry name of the baseline
    :param split: the split of this seed
    :param seed: model seed
    :param opts: table settings
    :param store: where tuning results are kept and shared across seeds
    :param force: tune again even if a stored tuning result exists
    :return: the :class:`Run` (``error`` set, ``metrics`` None if anything raised)
    """
    run = Run(model=name, seed=seed)
    try:
        fixed = _fixed_params(name, seed, opts)
        key = _tuning_key(name, split.data, seed, opts)
        tuning = None if force else store.load_tuning(name, key)
        if tuning is None:
            tuning = tune(name, split, grid=_grid(name, opts), fixed=fixed,
                          metric=opts.tune_metric, fraction=opts.val_fraction)  # fmt: skip
            store.save_tuning(name, key, tuning)
            run.tune_seconds = tuning.seconds
        run.tuned = dict(tuning.params)
        model = get_recommender_class(name)(**{**fixed, **run.tuned})
        run.params = model.get_params()
        t0 = time.perf_counter()
        model.fit(split)
        run.fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        run.metrics = evaluate_ranking(model.score, split, return_per_user=True)
        run.per_user = per_user_record(run.metrics.pop("per_user"))
        run.metrics.update(simulated_returns(model.score_states, split))
        run.eval_seconds = time.perf_counter() - t0
    except Exception as exc:  # reported in the table; the other models still run
        run.error = _error_text(exc)
        traceback.print_exc(file=sys.stderr)
    return run


def run_lsrwrl(
    dataset: str,
    seed: int,
    opts: TableOptions,
    out: Path,
    *,
    name: str | None = None,
    simulate: bool = True,
    keep: Sequence[str] = (),
) -> Run:
    """Train and evaluate LSRWRL through :func:`agents.training.train` on the table's split.

    :param dataset: dataset name
    :param seed: seed of the agent (and of the split when it is random)
    :param opts: table settings (preset, overrides, split)
    :param out: results folder; the run directory goes to ``<out>/runs/``
    :param name: run directory prefix (default: see :func:`lsrwrl_config`)
    :param simulate: also compute :func:`simulated_returns` on the test split (replay and user
        model; default True, the table's columns)
    :param keep: further keys of ``train``'s metrics to copy into the run's metrics (e.g.
        ``"greedy_mean_return"``, the greedy return in the environment of the run's own
        evaluation split); default none
    :return: the :class:`Run`
    """
    run = Run(model=LSRWRL, seed=seed)
    try:
        from agents.training import train

        config = lsrwrl_config(dataset, seed, opts, out, name=name)
        t0 = time.perf_counter()
        result = train(config, progress=False)
        run.fit_seconds = time.perf_counter() - t0
        run.metrics = {k: float(result.metrics[k]) for k in METRICS}
        run.metrics["n_users"] = int(result.metrics.get("n_users", 0))
        run.metrics.update({k: float(result.metrics[k]) for k in keep})
        run.per_user = per_user_record(result.per_user)
        if simulate:
            run.metrics.update(_lsrwrl_returns(result.model, config))
        training = {k: v for k, v in (result.training or {}).items() if isinstance(v, (int, float, str))}
        quick = QUICK_LSRWRL if opts.quick else {}
        run.tuned = {"preset": opts.lsrwrl_preset, **quick, **opts.lsrwrl_overrides}
        run.params = {**run.tuned, **training, "run_dir": str(result.run_dir)}
    except Exception as exc:
        run.error = _error_text(exc)
        traceback.print_exc(file=sys.stderr)
    return run


def _lsrwrl_returns(model: Any, config: Any) -> dict[str, float]:
    """:func:`simulated_returns` of a trained LSRWRL model, on its own split and observation settings."""
    from agents.scoring import score_observations
    from agents.make import load_split

    return simulated_returns(
        lambda obs: score_observations(model, obs), load_split(config),
        history_len=config.history_len, like_threshold=config.like_threshold,
        max_steps=config.max_steps,
    )  # fmt: skip


def _add_simulated_returns(run: Run, split: Split, recompute: bool = False) -> bool:
    """Compute the simulated returns of a stored baseline run that predates them.

    A baseline is refitted with its stored settings (deterministic for a seed), so its
    ranking metrics are not recomputed. LSRWRL's trained model is loaded from its run
    directory (``model.zip``); when that is gone its cells stay empty.

    :param recompute: compute them even if the run has them (``--recompute-sim``: the returns
        of runs stored before a change of the simulators)
    :return: whether the run was changed
    """
    if run.metrics is None or (not recompute and all(k in run.metrics for k in SIM_METRICS)):
        return False
    if run.model == LSRWRL:
        run_dir = Path(str(run.params.get("run_dir", "")))
        if not (run_dir / "model.zip").is_file():
            return False
        from experiments.evaluate import load_run

        config, model = load_run(run_dir)
        run.metrics.update(_lsrwrl_returns(model, config))
        return True
    model = get_recommender_class(run.model)(**run.params).fit(split)
    run.metrics.update(simulated_returns(model.score_states, split))
    return True


def run_one(data: MovieLensData, split: Split, name: str, seed: int, opts: TableOptions, out: Path,
            force: bool = False, recompute_sim: bool = False) -> tuple[Run, bool]:
    """One (dataset, model, seed) run: read from its result file, or compute it and write that file.

    :param data: the dataset
    :param split: the split of this seed
    :param name: model name
    :param seed: seed
    :param opts: table settings
    :param out: results folder
    :param force: recompute even if the run's result file exists
    :param recompute_sim: a stored run's simulated returns are computed again (its ranking
        metrics are kept)
    :return: the run, and whether it was computed now (``False``: read from its file). A failed
        run is returned with ``error`` set and no file, so the next table run retries it.
    """
    store = RunStore(out, data.name)
    key = run_key(name, data, seed, opts, out)
    stored = None if force else store.load_run(name, seed, key)
    if stored is not None:
        if _add_simulated_returns(stored, split, recompute=recompute_sim):
            store.save_run(stored, key)
            return stored, True
        return stored, False
    if name == LSRWRL:
        run = run_lsrwrl(data.name, seed, opts, out)
    else:
        run = run_baseline(name, split, seed, opts, store, force=force)
    run.key = _hash(key)
    if run.error is None:
        store.save_run(run, key)
    return run, True


# Summaries and files -------------------------------------------------------------------------

#: Settings not worth a table line (they are in ``_runs.json``).
_HIDDEN_PARAMS = ("seed", "num_threads", "patience")


def metric_summary(runs: Sequence[Run]) -> dict[str, float]:
    """Mean and std (ddof=1; 0 for one run) over runs of each of :data:`METRICS` and
    :data:`SIM_METRICS`, as ``<metric>_mean`` / ``<metric>_std``.

    A metric missing from a run (e.g. the simulated returns of a run written before them) is
    averaged over the runs that have it; NaN where none has it.

    :param runs: successful runs of one model (``metrics`` not ``None``)
    """
    row: dict[str, float] = {}
    for metric in (*METRICS, *SIM_METRICS):
        values = np.array([r.metrics[metric] for r in runs if metric in r.metrics], dtype=float)
        row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
        row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else math.nan)
    return row


def summarize(runs: list[Run], dataset: str, opts: TableOptions) -> list[dict[str, Any]]:
    """One row per model: mean and std (ddof=1; 0 for one seed) of each metric over the seeds
    that succeeded, the paper's figures, times, the tuned values and the model's settings.

    :param runs: every run of one dataset
    :param dataset: dataset name (selects the paper's column)
    :param opts: table settings (model order)
    :return: rows in ``opts.models`` order
    """
    rows = []
    for name in opts.models:
        mine = [r for r in runs if r.model == name]
        ok = [r for r in mine if r.metrics is not None]
        first = ok[0] if ok else (mine[0] if mine else Run(name, -1))
        paper = PAPER_TABLE1.get(dataset, {}).get(name, (math.nan, math.nan))
        row: dict[str, Any] = {
            "dataset": dataset,
            "model": LABELS.get(name, name),
            "status": _status(len(ok), len(mine), len(opts.seeds)),
            "seeds_ok": f"{len(ok)}/{len(opts.seeds)}",
        }
        row.update(metric_summary(ok))
        row["paper_precision@10"], row["paper_recall@10"] = paper
        per_seed = [r.fit_seconds + r.eval_seconds for r in mine]
        row["tune_seconds"] = float(sum(r.tune_seconds for r in mine))
        row["fit_eval_seconds_per_seed"] = float(np.mean(per_seed)) if mine else 0.0
        row["total_seconds"] = row["tune_seconds"] + float(sum(per_seed))
        row["tuned"] = json.dumps(first.tuned, default=str, sort_keys=True)
        settings = {k: v for k, v in first.params.items() if k not in _HIDDEN_PARAMS}
        row["params"] = json.dumps(settings, default=str, sort_keys=True)  # a read and a fresh run alike
        row["split"] = opts.split
        row["train_ratio"] = opts.train_ratio
        row["seeds"] = " ".join(str(r.seed) for r in mine)
        row["error"] = next((r.error for r in mine if r.error), "")
        rows.append(row)
    return rows


def _status(n_ok: int, n_runs: int, n_seeds: int) -> str:
    """``ok`` (every seed), ``pending`` (no run yet), ``failed`` (every run failed), else ``partial``."""
    if n_ok == n_seeds:
        return "ok"
    if n_runs == 0:
        return "pending"
    return "failed" if n_ok == 0 else "partial"


def _cell(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if row["seeds_ok"].startswith("1/") else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _paper(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def reproduce_command(dataset: str, opts: TableOptions) -> str:
    """The ``experiments.table1`` command line that computes (or re-reads) this table's runs."""
    parts = ["python -m experiments.table1", "--datasets", dataset, "--seeds", *map(str, opts.seeds),
             "--models", *opts.models]  # fmt: skip
    defaults = TableOptions()
    for flag, name in (("--split", "split"), ("--train-ratio", "train_ratio"),
                       ("--val-fraction", "val_fraction"), ("--tune-metric", "tune_metric"),
                       ("--max-epochs", "max_epochs"), ("--threads", "threads"),
                       ("--lsrwrl-preset", "lsrwrl_preset")):  # fmt: skip
        if getattr(opts, name) != getattr(defaults, name):
            parts += [flag, str(getattr(opts, name))]
    parts += [f"--lsrwrl-set {k}={v}" for k, v in sorted(opts.lsrwrl_overrides.items())]
    if opts.quick:
        parts.append("--quick")
    return " ".join(parts)


def render_markdown(rows: list[dict[str, Any]], data: MovieLensData, opts: TableOptions) -> str:
    """The ``table1_<dataset>.md`` text: protocol, the table, tuned values, failures.

    A pure function of the rows and options (no date, the command rebuilt from ``opts``), so the
    same run files always render the same bytes.
    """
    order = "chronological: earliest ratings train" if opts.split == "temporal" else "seeded random per user"
    when = "once, the temporal split is the same for every seed" if opts.split == "temporal" else "per seed"
    lsrwrl = f"preset `{opts.lsrwrl_preset}`"
    per_dataset = DATASET_PRESETS.get(opts.lsrwrl_preset, {}).get(data.name)
    if per_dataset:
        lsrwrl += f" (its {data.name} values `{json.dumps(per_dataset)}`)"
    if opts.lsrwrl_overrides:
        lsrwrl += f" with overrides `{json.dumps(opts.lsrwrl_overrides)}`"
    lines = [
        f"# Table 1 on {data.name}" + (" (quick smoke-test budget: not a result)" if opts.quick else ""),
        "",
        f"- Split: **{opts.split}** per user, {opts.train_ratio:.0%} train / {1 - opts.train_ratio:.0%} test "
        f"({order}); {data.n_users} users, {data.n_items} items, {data.n_ratings} ratings.",
        "- Metrics: `recsim_env.evaluation.evaluate_ranking`: full ranking over all items, each user's "
        "train items excluded, relevant = all of the user's test items; mean ± std (ddof=1) over seeds "
        f"{' '.join(map(str, opts.seeds))}.",
        f"- Baseline hyperparameters chosen on `holdout_last(train, {opts.val_fraction})` by "
        f"{opts.tune_metric} ({when}); neural baselines pick their epochs by early stopping on that "
        "slice, then refit on the whole train part.",
        *([f"- LSRWRL: `agents.training.train` with {lsrwrl}, same dataset, split and seed."]
          if LSRWRL in opts.models else []),
        "- Paper columns: the figures printed in the paper's Table 1 (its split protocol is unspecified).",
        f"- Command: `{reproduce_command(data.name, opts)}` (re-reads finished runs from "
        f"`table1_runs/{data.name}/`).",
        "",
        "- Simulated return: mean return of the model's masked greedy policy (it recommends its "
        "top-scored allowed item in the current state), one test-mode episode per user, max 50 steps, "
        "reward rating/5 on a like; *replay* = the logged test items are the only likes (users with "
        f"a liked test item); *user model* = `user_model=\"ease\"` (every user, seed {SIM_SEED}).",
        "",
        "| Model | P@10 | paper P@10 | R@10 | paper R@10 | NDCG@10 | HR@10 "
        "| return, replay | return, user model | tune s | fit+eval s / seed | seeds ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p10 = "**failed**" if r["status"] == "failed" else _cell(r, "precision@10")
        cells = [p10, _paper(r["paper_precision@10"]), _cell(r, "recall@10"), _paper(r["paper_recall@10"]),
                 _cell(r, "ndcg@10"), _cell(r, "hit_rate@10"),
                 *(_cell(r, metric, 3) for metric in SIM_METRICS), f"{r['tune_seconds']:.1f}",
                 f"{r['fit_eval_seconds_per_seed']:.1f}", r["seeds_ok"]]  # fmt: skip
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    total = sum(r["total_seconds"] for r in rows)
    lines += ["", f"Total model time: {total:.0f} s.", "", "## Tuned values and settings", ""]
    lines += [f"- {r['model']}: tuned `{r['tuned']}`; settings `{r['params']}`" for r in rows]
    failures = [r for r in rows if r["error"]]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {r['model']} ({r['seeds_ok']} seeds ok): {r['error']}" for r in failures]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict[str, Any]]) -> str:
    """The ``table1_<dataset>.csv`` text (one row per model, floats unrounded)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def plot_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """Bar chart of precision@10 and recall@10 per model (std error bars; paper figures as x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["status"] != "failed"]
    x = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(shown) + 2), 4.0))
    for offset, metric, colour in ((-0.2, "precision@10", "tab:blue"), (0.2, "recall@10", "tab:orange")):
        ax.bar(x + offset, [r[f"{metric}_mean"] for r in shown], width=0.4, color=colour,
               yerr=[r[f"{metric}_std"] for r in shown], capsize=3, label=SHORT[metric])  # fmt: skip
        paper = [r[f"paper_{metric}"] for r in shown]
        ax.scatter(x + offset, paper, marker="x", color="black", zorder=3,
                   label="paper" if metric == "precision@10" else None)  # fmt: skip
    ax.set_xticks(x, [r["model"] for r in shown])
    ax.set_ylabel("metric value")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    from agents.plots import figure_png

    return figure_png(fig, dpi=120)


@dataclass
class TableResult:
    """What :func:`run_table` produced for one dataset.

    :param runs: every model x seed run
    :param rows: the summary rows (see :func:`summarize`)
    :param paths: files written, by kind (``md``, ``csv``, ``runs``, ``png``)
    """

    runs: list[Run]
    rows: list[dict[str, Any]]
    paths: dict[str, Path]


def write_outputs(
    runs: list[Run], data: MovieLensData, opts: TableOptions, out: Path, plot: bool = True
) -> TableResult:
    """Write the table files of one dataset, each atomically (the bar chart only if ``plot``)."""
    rows = summarize(runs, data.name, opts)
    stem = out / f"table1_{data.name}"
    paths = {
        "md": atomic_write_text(stem.with_suffix(".md"), render_markdown(rows, data, opts)),
        "csv": atomic_write_text(stem.with_suffix(".csv"), render_csv(rows)),
        "runs": atomic_write_text(
            out / f"table1_{data.name}_runs.json",
            json.dumps({"options": asdict(opts), "runs": [run_summary(r) for r in runs]}, indent=2, default=str,
                       sort_keys=True)
            + "\n",
        ),
    }
    if not plot:
        return TableResult(runs, rows, paths)
    try:
        title = f"{data.name}, {opts.split} split, seeds {' '.join(map(str, opts.seeds))}"
        paths["png"] = atomic_write_bytes(out / f"table1_{data.name}_p10_r10.png", plot_png(rows, title))
    except Exception as exc:  # a plotting problem must not lose the table
        print(f"warning: bar chart not written: {_error_text(exc)}", file=sys.stderr)
    return TableResult(runs, rows, paths)


# Driver --------------------------------------------------------------------------------------


def load_dataset(name: str, opts: TableOptions) -> MovieLensData:
    """Load a dataset through :func:`recsim_env.movielens.load_movielens`."""
    from recsim_env.movielens import load_movielens

    return load_movielens(
        name, opts.data_dir, download=opts.download, expect_official=opts.expect_official
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def table_plan(opts: TableOptions) -> list[tuple[int, str]]:
    """The (seed, model) runs of one dataset's table, in the order they are run and listed."""
    return [(seed, name) for seed in opts.seeds for name in opts.models]


def table_split(data: MovieLensData, seed: int, opts: TableOptions) -> Split:
    """The split of one seed of the table (the same for every seed of a temporal split)."""
    from recsim_env.splits import split_ratings

    return split_ratings(data, opts.split, opts.train_ratio, seed=seed)


def run_table(
    data: MovieLensData,
    opts: TableOptions,
    out: str | os.PathLike,
    log: Callable[[str], None] = print,
    force: bool = False,
    render_only: bool = False,
    recompute_sim: Sequence[str] = (),
) -> TableResult:
    """Fit and evaluate every model of ``opts`` on every seed of one dataset; write the files.

    Runs whose result file exists (same configuration) are read, not recomputed (see the module
    docstring); each computed run is written at once.

    :param data: the dataset
    :param opts: table settings
    :param out: results folder (created if needed)
    :param log: progress printer (``print`` by default): which run, elapsed time, an estimate
    :param force: recompute every run, overwriting its result file when it succeeds
    :param recompute_sim: models whose stored runs get their simulated returns computed again
    :param render_only: compute nothing: write the table files from the run files already there
        (a run without a file is left out, its model's ``seeds ok`` says how many are missing)
    :return: the :class:`TableResult` (the table files are rewritten after every run, so an
        interrupted table keeps what it has)
    """
    unknown = sorted(set(recompute_sim) - set(opts.models))
    if unknown:
        raise ValueError(f"--recompute-sim names {unknown}, which are not models of this table "
                         f"({', '.join(opts.models)})")
    out = Path(out)
    runs: list[Run] = []
    splits: dict[int | None, Split] = {}
    plan = table_plan(opts)
    durations: dict[str, list[float]] = {}
    start = time.perf_counter()
    result: TableResult | None = None
    for index, (seed, name) in enumerate(plan, 1):
        split_key = seed if opts.split == "random" else None
        if split_key not in splits:
            splits[split_key] = table_split(data, seed, opts)
        label = f"[{index}/{len(plan)} {data.name} seed {seed}] {LABELS.get(name, name)}"
        log(f"{label} ... (elapsed {_duration(time.perf_counter() - start)}{_estimate(plan[index - 1:], durations)})")
        t0 = time.perf_counter()
        if render_only:
            stored = RunStore(out, data.name).load_run(name, seed, run_key(name, data, seed, opts, out))
            if stored is None:
                log("    no run file: pending")
                continue
            run, computed = stored, False
        else:
            run, computed = run_one(data, splits[split_key], name, seed, opts, out, force=force,
                                    recompute_sim=name in recompute_sim)
        if computed:
            durations.setdefault(name, []).append(time.perf_counter() - t0)
        runs.append(run)
        if run.error:
            log(f"    FAILED: {run.error}")
        else:
            m = run.metrics
            how = "computed" if computed else f"done earlier, read from table1_runs/{data.name}/"
            log(f"    P@10 {m['precision@10']:.4f}  R@10 {m['recall@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  "
                f"HR@10 {m['hit_rate@10']:.4f}  tune {run.tune_seconds:.1f}s  fit {run.fit_seconds:.1f}s  "
                f"eval {run.eval_seconds:.1f}s  tuned {run.tuned}  ({how})")  # fmt: skip
        if not render_only:
            result = write_outputs(runs, data, opts, out, plot=len(runs) == len(plan))
    if render_only:
        result = write_outputs(runs, data, opts, out, plot=True)
    assert result is not None, "a table has at least one model and one seed"
    return result


def _estimate(remaining: list[tuple[int, str]], durations: dict[str, list[float]]) -> str:
    """``", about X left"`` from the mean time of the runs computed so far (per model when known)."""
    if not durations:
        return ""
    overall = float(np.mean([d for ds in durations.values() for d in ds]))
    left = sum(float(np.mean(durations[name])) if name in durations else overall for _, name in remaining)
    return f", about {_duration(left)} left if nothing is cached"



def build_parser(
    prog: str = "python -m experiments.table1",
    description: str = "Reproduce Table 1: every baseline and LSRWRL on one split with one evaluator.",
) -> argparse.ArgumentParser:
    """The table's command-line options (:mod:`experiments.sweep` adds its own to the same parser)."""
    models = [*available_recommenders(), LSRWRL]
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                        help="datasets (default: ml-100k, plus ml-1m when its files are present)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                        help=f"subset of models, in table order (default: all of {', '.join(models)})")
    parser.add_argument("--split", choices=("temporal", "random"), default="temporal",
                        help="per-user split protocol (default: %(default)s)")
    parser.add_argument("--train-ratio", type=float, default=0.8, help="train fraction per user (default: 0.8)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="held-out fraction of each train sequence for tuning (default: 0.2)")
    parser.add_argument("--tune-metric", default="ndcg@10", choices=METRICS,
                        help="validation metric that picks hyperparameters (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=50,
                        help="epoch cap of the neural baselines; early stopping picks the count (default: 50)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the neural baselines (default: 1; LSRWRL keeps its preset's "
                             "torch_threads unless --lsrwrl-set torch_threads=N)")
    parser.add_argument("--quick", "--budget-quick", dest="quick", action="store_true",
                        help="smoke-test budget: 2 epochs, 2 grid points, a 2k-step LSRWRL (not a result)")
    parser.add_argument("--lsrwrl-preset", default="default",
                        help="agents.config preset for LSRWRL (default: %(default)s)")
    parser.add_argument("--lsrwrl-seconds", type=float, default=None,
                        help="LSRWRL training wall-clock cap per seed, s (max_train_seconds; default: the preset's)")
    parser.add_argument("--lsrwrl-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="extra TrainConfig override for LSRWRL, repeatable (e.g. total_timesteps=200000)")
    parser.add_argument("--data-dir", default=None,
                        help="root holding ml-100k/ and ml-1m/ (default: $MOVIELENS_DATA, then the cache)")
    parser.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    parser.add_argument("--edited-copy", action="store_true",
                        help="the data are an edited copy (subsampled, hand-made): skip the check against "
                             "the official figures (load_movielens(expect_official=False))")
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument("--force", action="store_true",
                        help="recompute every run even if its result file exists (default: reuse finished runs)")
    parser.add_argument("--recompute-sim", nargs="+", default=[], metavar="MODEL",
                        help="compute the simulated returns of these models' stored runs again (their ranking "
                             "metrics are kept; for runs stored before a change of the simulators)")
    parser.add_argument("--render-only", action="store_true",
                        help="compute nothing: write the table files from the finished runs' files (a partly "
                             "filled table, e.g. to commit what a long table has so far)")
    return parser


def parse_args(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse and check the table's options (``parser``: default :func:`build_parser`)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    models = [*available_recommenders(), LSRWRL]
    unknown = [m for m in (args.models or []) if m not in models]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {models}")
    if args.threads < 1 or args.max_epochs < 1:
        parser.error("--threads and --max-epochs must be >= 1")
    return args


def lsrwrl_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--lsrwrl-seconds`` and ``--lsrwrl-set`` as TrainConfig overrides (typed by the config)."""
    overrides: dict[str, Any] = {}
    if args.lsrwrl_seconds is not None:
        overrides["max_train_seconds"] = args.lsrwrl_seconds
    if args.lsrwrl_set:
        from agents.config import parse_overrides

        try:
            overrides.update(parse_overrides(args.lsrwrl_set, "--lsrwrl-set"))
        except ValueError as err:
            raise SystemExit(str(err)) from None
    return overrides


def options_from_args(args: argparse.Namespace) -> TableOptions:
    """The :class:`TableOptions` of parsed :func:`parse_args` options."""
    return TableOptions(
        seeds=list(args.seeds), models=list(args.models or LABELS), split=args.split,
        train_ratio=args.train_ratio, val_fraction=args.val_fraction, tune_metric=args.tune_metric,
        max_epochs=args.max_epochs, threads=args.threads, quick=args.quick,
        lsrwrl_preset=args.lsrwrl_preset, lsrwrl_overrides=lsrwrl_overrides(args),
        data_dir=args.data_dir, download=not args.no_download, expect_official=not args.edited_copy,
    )  # fmt: skip


def load_datasets(args: argparse.Namespace, opts: TableOptions) -> list[tuple[str, MovieLensData]]:
    """The datasets of ``--datasets`` (default: ML-100K, plus ML-1M when its files are present)."""
    datasets: list[tuple[str, MovieLensData]] = []
    for name in args.datasets or ["ml-100k"]:
        datasets.append((name, load_dataset(name, opts)))
    if args.datasets is None:  # ML-1M joins the default only when its files are already here
        try:
            probe = TableOptions(data_dir=opts.data_dir, download=False, expect_official=opts.expect_official)
            datasets.append(("ml-1m", load_dataset("ml-1m", probe)))
        except FileNotFoundError as exc:  # absent or incomplete; a damaged copy is an error
            print(f"ml-1m skipped (files not present: {_error_text(exc)[:200]})")
    return datasets


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (1 if any model failed on every seed)."""
    args = parse_args(argv)
    opts = options_from_args(args)
    # Every model of the table (the neural baselines too) on LSRWRL's kernel path, set before
    # PyTorch runs anything (agents.kernel_path).
    from agents.kernel_path import pin_kernel_path

    pin_kernel_path(lsrwrl_config("ml-100k", 0, opts, Path(args.out)).kernel_path)
    datasets = load_datasets(args, opts)
    failed = False
    for name, data in datasets:
        t0 = time.perf_counter()
        result = run_table(data, opts, args.out, force=args.force, render_only=args.render_only,
                           recompute_sim=tuple(args.recompute_sim))
        print(f"{name}: {time.perf_counter() - t0:.0f} s; wrote " + ", ".join(map(str, result.paths.values())))
        failed |= any(r["status"] == "failed" for r in result.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
