"""Training and evaluation figures at ML-32M's shape, on a synthetic log; written to a results file.

``python -m experiments.bench_scale`` measures, on the synthetic ML-32M log
(:func:`experiments.bench_agent.synthetic_data`, loaded as the official release is; its 86,787
rated items are the catalogue; not MovieLens data, so no accuracy figure comes from it):

* **training**: environment steps per second of the ``default`` preset with its ``"auto"``
  catalogue settings decided for that catalogue (sampled next-item softmax, sparse item terms;
  :meth:`agents.config.TrainConfig.for_catalogue`) and its kernel path pinned as ``make train``
  pins it, from :func:`experiments.bench_agent.profile_training` (per-part breakdown included),
  on every user (or the first ``--train-users``, with every item: the cost of a step depends on
  the catalogue and on the users' sequence lengths, not on the number of users); the 64 training
  environments share one simulator (:func:`recsim_env.simulator.make_simulator`);
* **evaluation**: full-ranking evaluation of every user with a test item (all 200,948 by
  default) by the trained model (:func:`agents.evaluate.evaluate_model`, ranking metrics only),
  its wall and CPU seconds and its peak resident memory above the process's level before it.

* **ItemCF** (with ``--baselines``): fitting :class:`agents.baselines.ItemCFRecommender` with
  ``k`` = ``--itemcf-k`` (100) neighbours per item, block by block
  (:func:`agents.baselines.similarity.cosine_similarity`), on the same full-shape split: its
  wall and CPU seconds and its peak resident memory above the process's level before it.

Each part reports the process's CPU time beside the wall time, and the load average around it:
the figures of a loaded machine are low. The keys are merged into ``--out`` (default
``results/scale_synthetic-ml-32m.json``, whose other keys come from
:mod:`experiments.bench_scale_data`) by :func:`experiments.bench_scale_data.merge_result`.

Usage::

    python -m experiments.bench_scale [--root DIR] [--train-users N] [--train-steps 3200] [--threads 2] [--baselines]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _peak_reset() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mib(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def measure_training(args: argparse.Namespace, split) -> tuple[dict[str, Any], Any]:
    """Training throughput and its breakdown on ``split`` (``args.train_users`` users); and the model."""
    from agents.config import make_config
    from experiments.bench_agent import PARTS, print_profile, profile_training

    config = make_config("default", dataset="ml-32m", torch_threads=args.threads, seed=args.seed)
    config = config.for_catalogue(split.n_items)  # the preset's ML-32M values, then the "auto" settings
    load_before = os.getloadavg()
    prof, model = profile_training(config, args.train_steps, split=split)
    load_after = os.getloadavg()
    print_profile(f"synthetic ml-32m ({split.n_users:,} users, {split.n_items:,} items)", config, prof)
    record = {
        "train_steps_per_second": round(prof["transitions_per_s"], 1),
        "train_steps_per_cpu_second": round(prof["cpu_transitions_per_s"], 1),
        "train_profile_ms_per_vector_step": {k: round(prof[k], 2) for k in (*PARTS, "other", "total")},
        "train_timed_steps": args.train_steps,
        "train_users": split.n_users,
        "train_ratings": int(split.train_indptr[-1] + split.test_indptr[-1]),
        "train_settings": {k: getattr(config, k) for k in (
            "preset", "n_envs", "batch_size", "next_item_batch", "history_len", "embed_dim", "next_item_loss",
            "next_item_negatives", "item_compute", "torch_threads", "buffer_size", "replay_buffer", "kernel_path")},
        "train_load_average": [round(load_before[0], 2), round(load_after[0], 2)],
    }
    return record, model


def _measured(what: str, call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``call()`` and print what it cost: ``(its result, {"seconds", "cpu_seconds",
    "load_average", "peak_rss_above_start_mib" (Linux only)})``."""
    rss_before = _rss_mib("VmRSS")
    peak_known = _peak_reset()
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load_after = os.getloadavg()
    figures: dict[str, Any] = {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                               "load_average": [round(load_before[0], 2), round(load_after[0], 2)]}
    if peak_known:
        figures["peak_rss_above_start_mib"] = round(_rss_mib("VmHWM") - rss_before, 1)
    print(f"{what}: {wall:.1f} s wall, {cpu:.1f} s CPU (load average {load_before[0]:.1f} -> {load_after[0]:.1f})"
          + (f", peak memory {figures['peak_rss_above_start_mib']:,.0f} MiB above the {rss_before:,.0f} MiB "
             f"before it" if peak_known else ""))
    return result, figures


def measure_evaluation(args: argparse.Namespace, model, split) -> dict[str, Any]:
    """Full-ranking evaluation of every user of ``split`` (the full-shape synthetic split) by ``model``."""
    from agents.config import make_config
    from agents.evaluate import evaluate_model
    from recsim_env.evaluation import BATCH_CELLS

    config = make_config("default", dataset="ml-32m", torch_threads=args.threads).for_catalogue(split.n_items)
    metrics, figures = _measured(
        f"evaluation of {split.n_users:,} users x {split.n_items:,} items",
        lambda: evaluate_model(model, config, split, k=config.eval_k, greedy=False))
    return {
        **{f"evaluate_{key}": value for key, value in figures.items()},
        "evaluate_users": metrics["n_users"],
        "evaluate_ratings": int(split.train_indptr[-1] + split.test_indptr[-1]),
        "evaluate_users_per_batch": max(1, BATCH_CELLS // split.n_items),
    }


def measure_itemcf(args: argparse.Namespace, split) -> dict[str, Any]:
    """ItemCF's fit (``args.itemcf_k`` neighbours per item) on ``split`` (the full-shape synthetic split)."""
    from agents.baselines import ItemCFRecommender

    model, figures = _measured(f"ItemCF(k={args.itemcf_k}) fit on {split.n_users:,} users x {split.n_items:,} items",
                               lambda: ItemCFRecommender(k=args.itemcf_k).fit(split))
    record = {
        "itemcf_fit_seconds": figures["seconds"],
        "itemcf_fit_cpu_seconds": figures["cpu_seconds"],
        "itemcf_k": args.itemcf_k,
        "itemcf_users": split.n_users,
        "itemcf_items": split.n_items,
        "itemcf_train_interactions": int(model.x_.nnz),
        "itemcf_neighbours_kept": int(model.sim_.nnz),
        "itemcf_load_average": figures["load_average"],
    }
    if "peak_rss_above_start_mib" in figures:
        record["itemcf_peak_rss_above_start_mib"] = figures["peak_rss_above_start_mib"]
    return record


def main(argv: list[str] | None = None) -> int:
    from experiments.bench_agent import SYNTHETIC_ROOT
    from experiments.bench_scale_data import RESULT, merge_result

    parser = argparse.ArgumentParser(prog="python -m experiments.bench_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(SYNTHETIC_ROOT),
                        help="folder holding the synthetic ml-32m/ (written there when missing; default %(default)s)")
    parser.add_argument("--train-users", type=int, default=None, help="users of the training log (default: all)")
    parser.add_argument("--train-steps", type=int, default=3_200, help="timed environment steps (default 3,200)")
    parser.add_argument("--eval-users", type=int, default=None, help="users of the evaluated log (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic logs and the model")
    parser.add_argument("--out", default=str(RESULT), help="results file to merge the figures into")
    parser.add_argument("--baselines", action="store_true",
                        help="also time ItemCF's fit on the evaluated split (keys itemcf_*)")
    parser.add_argument("--itemcf-k", type=int, default=100, help="ItemCF's neighbours per item (default 100)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    from agents.config import TrainConfig
    from agents.kernel_path import pin_kernel_path

    kernel_path = pin_kernel_path(TrainConfig.kernel_path)  # as make train: before torch runs
    import torch as th

    th.set_num_threads(args.threads)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    from experiments.bench_agent import synthetic_data
    from recsim_env import split_ratings

    t0 = time.perf_counter()
    eval_split = split_ratings(synthetic_data(args.root, users=args.eval_users))
    build_seconds = round(time.perf_counter() - t0, 1)
    train_split = (eval_split if args.train_users == args.eval_users  # by default both every user: one split
                   else split_ratings(synthetic_data(args.root, users=args.train_users)))
    train, model = measure_training(args, train_split)
    evaluation = {**measure_evaluation(args, model, eval_split), "evaluate_split_build_seconds": build_seconds}
    baselines = measure_itemcf(args, eval_split) if args.baselines else {}
    record = {
        **train,
        **evaluation,
        **baselines,
        "scale_measured": started,
        "scale_command": "python -m experiments.bench_scale " + " ".join(shlex.quote(a) for a in (
            argv if argv is not None else sys.argv[1:])),
        "scale_machine": (f"{os.cpu_count()} CPUs, torch {th.__version__}, {args.threads} torch thread(s), "
                          f"kernel path {kernel_path}"),
        "scale_note": ("synthetic log with ML-32M's shape (experiments.synthetic_log), not MovieLens data; the load "
                       "averages say how busy the machine was (train_steps_per_cpu_second is the rate per second "
                       "of this process's CPU time)"),
    }
    if not args.no_write:
        merge_result(Path(args.out), record)
        print(f"merged {len(record)} keys into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
