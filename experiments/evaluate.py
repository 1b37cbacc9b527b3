"""Evaluate a saved training run: ranking metrics on the test split, greedy simulated return,
and the popularity ranking beside them, all through the shared evaluator.

Usage::

    python -m experiments.evaluate                                # newest ml-100k run in runs/
    python -m experiments.evaluate runs/lsrwrl-20250101-120000       # or --run-dir RUN
    python -m experiments.evaluate --run-dir RUN --split validation --no-greedy

Writes ``<run_dir>/evaluation.json`` (atomically) unless ``--out`` names another file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agents.config import DATASETS, TrainConfig
from agents.training import PAPER_FIGURES, atomic_write_json, metric_lines
from agents.evaluate import evaluate_model, popularity_metrics
from agents.make import check_data_record, load_split


def find_latest_run(runs_dir: str | Path, dataset: str | None = None) -> Path:
    """The most recently modified run directory (with ``model.zip``) under ``runs_dir``.

    :param runs_dir: parent folder of run directories
    :param dataset: only runs whose ``config.json`` has this dataset (None: any)
    :raises FileNotFoundError: no finished run there
    """
    candidates = []
    for path in Path(runs_dir).glob("*/model.zip"):
        run = path.parent
        try:
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if dataset is None or config.get("dataset") == dataset:
            candidates.append((path.stat().st_mtime, run))
    if not candidates:
        which = f" for dataset {dataset}" if dataset else ""
        raise FileNotFoundError(
            f"no finished run (a folder with model.zip and config.json){which} under {runs_dir}; "
            "train one with `make train` or pass --run-dir"
        )
    return max(candidates)[1]


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[TrainConfig, Any]:
    """``(config, model)`` of a run directory.

    :param run_dir: folder with ``config.json`` and ``model.zip``
    :param device: torch device to load the model on
    """
    from agents.factory import algorithm_class

    run_dir = Path(run_dir)
    for name in ("config.json", "model.zip"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: {run_dir} is not a finished run directory")
    config = TrainConfig.load(str(run_dir / "config.json"))
    model = algorithm_class(config.algo).load(run_dir / "model.zip", device=device)
    return config, model


def evaluate_run(
    run_dir: str | Path,
    split_name: str = "test",
    greedy: bool = True,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Evaluate a saved run on its own data settings.

    :param run_dir: the run directory
    :param split_name: ``"test"`` (the protocol) or ``"validation"`` (the slice used in training)
    :param greedy: also simulate the greedy policy on every eligible user
    :param data_dir: override the run's ``data_dir`` (where the MovieLens files are)
    :raises ValueError: the run trained on an interaction log whose contents changed since
    :return: ``{"run_dir", "split", "agent", "popularity", "paper", "seconds"}``
    """
    from recsim_env import holdout_last

    config, model = load_run(run_dir)
    if data_dir is not None:
        config.data_dir = data_dir
    t0 = time.monotonic()
    check_data_record(config, run_dir)  # a log must still be the file the run trained on
    split = load_split(config)
    if split_name == "validation":
        split = holdout_last(split, config.val_fraction)
    elif split_name != "test":
        raise ValueError(f"split must be 'test' or 'validation', got {split_name!r}")
    agent = evaluate_model(model, config, split, k=config.eval_k, greedy=greedy)
    return {
        "run_dir": str(run_dir),
        "algo": config.algo,
        "dataset": config.data_name,
        "split": split_name,
        "agent": agent,
        "popularity": popularity_metrics(split, config.eval_k),
        "paper": PAPER_FIGURES.get(config.dataset),
        "seconds": round(time.monotonic() - t0, 2),
    }


def format_evaluation(result: dict[str, Any]) -> str:
    """Human-readable table of :func:`evaluate_run`'s result."""
    agent, pop, paper = result["agent"], result["popularity"], result["paper"] or {}
    lines = [
        f"{result['algo']} run {result['run_dir']} on {result['dataset']}, {result['split']} split "
        f"({result['seconds']:.1f} s)",
        f"{'metric':<14}{'agent':>9}{'popularity':>12}{'paper':>9}",
    ]
    return "\n".join(lines + metric_lines(agent, pop, paper))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", default=None, help="run directory (same as --run-dir)")
    parser.add_argument("--run-dir", default=None, help="run directory (default: newest finished run)")
    parser.add_argument("--runs-dir", default="runs", help="where to look for the newest run (default: runs)")
    parser.add_argument("--dataset", default=None, choices=DATASETS,
                        help="pick the newest run of this dataset; checked against --run-dir's config")
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--data-dir", default=None, help="MovieLens root (default: the run's, then MOVIELENS_DATA)")
    parser.add_argument("--no-greedy", action="store_true", help="skip the greedy-policy simulation")
    parser.add_argument("--out", default=None, help="result JSON (default: RUN_DIR/evaluation.json)")
    args = parser.parse_args(argv)
    if args.run and args.run_dir and args.run != args.run_dir:
        parser.error(f"two run directories given: {args.run} and --run-dir {args.run_dir}")
    args.run_dir = args.run_dir or args.run

    try:
        run_dir = Path(args.run_dir) if args.run_dir else find_latest_run(args.runs_dir, args.dataset)
        if args.dataset and args.run_dir:
            trained_on = TrainConfig.load(str(run_dir / "config.json")).dataset
            if trained_on != args.dataset:
                parser.error(f"{run_dir} was trained on {trained_on}, not --dataset {args.dataset}")
        result = evaluate_run(run_dir, args.split, greedy=not args.no_greedy, data_dir=args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(format_evaluation(result))
    out = Path(args.out) if args.out else run_dir / ("evaluation.json" if args.split == "test" else "evaluation_validation.json")
    atomic_write_json(out, result)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
