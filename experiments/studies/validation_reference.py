"""Validation-slice figures of the Table 1 baselines: the yardstick for tuning LSRWRL.

LSRWRL's settings are chosen on the validation slice (``--tune true``: trained on
:func:`recsim_env.splits.holdout_last` of the train part, evaluated on the held-out last 20%).
Table 1 stores only each baseline's tuning metric (NDCG@10) for that slice; this script refits
each baseline on the same slice with its stored tuned settings (from ``make table``'s
``tuning-*.json``, seed 0) and reports every ranking metric, so an agent configuration can be
compared with the baselines without ever reading the test split.

Usage::

    python -m experiments.studies.validation_reference --dataset ml-100k   # -> results/validation_reference_ml-100k.json

Needs the baselines' tuning files (``make table`` writes them); a missing one is an error that
names the command to run. The output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.table1 import (
    LABELS, LSRWRL, RunStore, TableOptions, _fixed_params, load_dataset, table_split,
    tuning_key,
)  # fmt: skip
from recsim_env.files import atomic_write_text

#: Models of the reference (every Table 1 baseline).
MODELS: tuple[str, ...] = tuple(name for name in LABELS if name != LSRWRL)


def validation_reference(dataset: str, out: Path, data_dir: str | None = None,
                         models: Sequence[str] = MODELS) -> dict:
    """Fit every baseline on the validation slice with its stored tuned settings; evaluate there.

    :param dataset: ``"ml-100k"`` or ``"ml-1m"``
    :param out: the results folder holding ``table1_runs/`` (``make table``'s ``--out``)
    :param data_dir: root holding the dataset folders (default: the loader's search order)
    :param models: baseline names
    :return: ``{"dataset", "val_fraction", "seed", "models": {name: {"params", metrics..., "seconds"}}}``
    :raises FileNotFoundError: a baseline has no stored tuning (run ``make table`` first)
    """
    from agents.baselines import get_recommender_class
    from recsim_env.evaluation import evaluate_ranking
    from recsim_env.splits import holdout_last

    opts, seed = TableOptions(data_dir=data_dir), 0
    data = load_dataset(dataset, opts)
    validation = holdout_last(table_split(data, seed, opts), opts.val_fraction)
    store = RunStore(out, dataset)
    result: dict = {"dataset": dataset, "val_fraction": opts.val_fraction, "seed": seed, "models": {}}
    for name in models:
        key = tuning_key(name, data, seed, opts)
        tuning = store.load_tuning(name, key)
        if tuning is None:
            raise FileNotFoundError(
                f"no stored tuning of {name} on {dataset} under {store.folder}: run "
                f"`python -m experiments.table1 --datasets {dataset} --models {name}` first")
        params = {**_fixed_params(name, seed, opts), **tuning.params}
        t0 = time.perf_counter()
        model = get_recommender_class(name)(**params).fit(validation)
        metrics = evaluate_ranking(model.score, validation)
        result["models"][name] = {"params": params, **metrics, "seconds": time.perf_counter() - t0}
        print(f"{LABELS[name]:<11} P@10 {metrics['precision@10']:.4f}  R@10 {metrics['recall@10']:.4f}  "
              f"NDCG@10 {metrics['ndcg@10']:.4f}  ({params})", flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.validation_reference",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k", choices=("ml-100k", "ml-1m"))
    parser.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="root holding ml-100k/ and ml-1m/")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    try:
        result = validation_reference(args.dataset, Path(args.out), args.data_dir, args.models)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = Path(args.out) / f"validation_reference_{args.dataset}.json"
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
