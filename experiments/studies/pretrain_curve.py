"""Validation learning curve of the supervised next-item pre-training (no TD update).

Builds the model a config describes (:func:`agents.make.build_agent`), trains it by the
next-item loss alone (:meth:`agents.factory.LSRDQN.pretrain`) and evaluates its Q-value ranking
on the validation slice (``holdout_last`` of the train part; the test split is never read)
after each step count of ``--eval-at``. One row of JSON per evaluation, also written to
``--out`` when given (appended atomically as a whole file). A row at ``N`` steps equals the
validation metrics of ``python -m experiments.train --tune true --pretrain-steps N
--total-timesteps 64`` with the same options (64 steps < ``learning_starts``: no TD update).

Usage::

    python -m experiments.studies.pretrain_curve --eval-at 500,1000,2000 --embedding-init-std 0.05
    python -m experiments.studies.pretrain_curve --eval-at 1000 --causal true --readout last \\
        --positions relative --next-item-positions all --next-item-batch 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from agents.config import add_config_arguments, config_from_args
from agents.make import attach_logged_data, build_agent, load_split, make_env, make_train_vec_env
from recsim_env.files import atomic_write_text

METRICS = ("precision@10", "recall@10", "ndcg@10", "hit_rate@10")


def pretrain_curve(config, eval_at: list[int], out: Path | None = None) -> list[dict]:
    """Pre-train ``config``'s model and evaluate it on the validation slice at ``eval_at`` steps.

    :param config: a dqn config with the dueling head (its ``tune`` flag is ignored: always the
        validation slice); ``pretrain_steps`` is ignored, ``eval_at`` says how far to train,
        ``pretrain_batch`` (else ``next_item_batch``) how many samples each step draws
    :param eval_at: increasing step counts
    :param out: JSON-lines file rewritten (atomically) after every row
    :return: the rows: ``steps``, mean ``loss`` of the last 100 steps, ``seconds``, the metrics
    """
    import torch as th

    from agents.next_item import LoggedNextItems
    from agents.scoring import make_score_fn
    from recsim_env import evaluate_ranking, holdout_last

    if list(eval_at) != sorted(set(eval_at)) or not eval_at or eval_at[0] < 1:
        raise ValueError(f"--eval-at must be increasing positive step counts, got {eval_at}")
    th.set_num_threads(config.torch_threads)
    val = holdout_last(load_split(config), config.val_fraction)
    vec_env = make_train_vec_env(config, val)
    model = build_agent(config, vec_env)
    attach_logged_data(model, config, vec_env)
    if model.__dict__.get("next_item_source") is None:  # next_item_weight 0: still pre-trainable
        model.set_next_item_source(LoggedNextItems(vec_env.envs[0], seed=config.seed))
    env = make_env(config, val, "test")
    rows: list[dict] = []
    done, start = 0, time.monotonic()
    for steps in eval_at:
        losses = model.pretrain(steps - done, config.pretrain_batch)
        done = steps
        metrics = evaluate_ranking(make_score_fn(model, env), val, k=10)
        rows.append({"steps": steps, "loss": round(float(np.mean(losses[-100:])), 4),
                     "seconds": round(time.monotonic() - start, 1), **{k: round(metrics[k], 4) for k in METRICS}})
        print(json.dumps(rows[-1]), flush=True)
        if out is not None:
            text = "".join(json.dumps(r) + "\n" for r in rows)
            atomic_write_text(out, text)
    vec_env.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.pretrain_curve", description=__doc__.split("\n")[0])
    parser.add_argument("--eval-at", required=True, help="comma-separated pre-training step counts to evaluate at")
    parser.add_argument("--out", default=None, help="JSON-lines file for the rows")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        eval_at = [int(x) for x in args.eval_at.split(",") if x]
        config = config_from_args(args)
        if config.policy != "lsrwrl" or (config.algo == "dqn" and not config.dueling):
            raise ValueError("pre-training needs the LSRWRL extractor (--policy lsrwrl) and, for dqn, the dueling "
                             "head (--dueling true)")
        pretrain_curve(config, eval_at, Path(args.out) if args.out else None)
    except ValueError as err:
        print(f"python -m experiments.studies.pretrain_curve: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
