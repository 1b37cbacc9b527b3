"""Same seed, same result across machines? Where LSRWRL's floats depend on the CPU's kernel path.

PyTorch on x86-64 picks its kernels at run time from the CPU: ATen's vectorised element-wise
and reduction kernels (``ATEN_CPU_CAPABILITY``: ``avx512``, ``avx2`` or ``default``), MKL's GEMM
(``MKL_CBWR``: conditional numerical reproducibility) and oneDNN (``ONEDNN_MAX_CPU_ISA``). Two
machines with different instruction sets therefore add floats in different orders, and a
training run (which feeds its own outputs back through millions of updates) drifts apart.

This study runs, in a fresh process per setting (the variables are read when PyTorch starts):

* ``ops``: one forward and backward pass of the recommended DQN on a fixed batch of training
  observations; every module's output and every parameter's gradient is compared with the
  machine's native kernel path, which names the first module whose floats change;
* ``runs``: a short training run (``--steps``) per setting, twice for the native path, compared
  on validation metrics and a hash of the final weights, with the seconds per 1,000 steps.

``python -m experiments.studies.determinism --steps 20000`` writes ``results/determinism/<cpu>.json``
(``<cpu>`` = the machine's native capability, e.g. ``avx512``) and prints a table. Timings are
only comparable on an otherwise idle machine; the file records the load average and, less
sensitive to the load, the process's CPU seconds (one torch thread by default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Environment of each kernel-path setting (added to the parent's).
SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl-avx2": {"MKL_CBWR": "AVX2"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "pinned-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
}


def _agent_on_validation_slice(threads: int, seed: int):
    """The recommended DQN on ML-100K's validation slice (its train part), and that slice."""
    import torch as th

    from agents import make_agent
    from agents.config import make_config
    from agents.make import load_split
    from recsim_env import holdout_last

    th.set_num_threads(threads)
    config = make_config("default", dataset="ml-100k", seed=seed)
    split = holdout_last(load_split(config), config.val_fraction)
    return make_agent(split, seed=seed), split


def probe_ops(threads: int, out: Path) -> None:
    """Child: every ATen op's output of one forward and backward pass on a fixed batch (npz).

    The pass is the Q-network on one batch of training observations, and the backward of the
    mean squared Q-value; ops are recorded in execution order through a ``TorchDispatchMode``.
    """
    import numpy as np
    import torch as th
    from torch.utils._python_dispatch import TorchDispatchMode

    model, _ = _agent_on_validation_slice(threads, seed=0)
    tensors, _ = model.policy.obs_to_tensor(model.env.reset())
    arrays: dict[str, np.ndarray] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            outputs = result if isinstance(result, (tuple, list)) else (result,)
            if "empty" in str(func):  # uninitialised memory, not a result
                return result
            for j, t in enumerate(outputs):
                if isinstance(t, th.Tensor) and t.is_floating_point():
                    arrays[f"{len(arrays):04d}:{func}:{j}"] = t.detach().cpu().numpy().copy()
            return result

    with Record():
        q = model.policy.q_net(tensors)
        q = th.where(th.isfinite(q), q, th.zeros_like(q))
        (q ** 2).mean().backward()
    arrays["capability"] = np.array(th.backends.cpu.get_cpu_capability())
    np.savez(out, **arrays)


def probe_run(threads: int, steps: int, out: Path) -> None:
    """Child: a short validation run; metrics, weight hash and seconds to ``out`` (json)."""
    import torch as th

    from agents.evaluate import evaluate_model

    model, split = _agent_on_validation_slice(threads, seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(steps)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    digest = hashlib.sha256()
    for name, tensor in sorted(model.policy.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    metrics = evaluate_model(model, model.agent_config, split, k=10, greedy=False)
    out.write_text(json.dumps({
        "capability": th.backends.cpu.get_cpu_capability(), "steps": steps, "seconds": seconds,
        "seconds_per_1000_steps": 1000 * seconds / steps,
        "cpu_seconds": cpu_seconds, "cpu_seconds_per_1000_steps": 1000 * cpu_seconds / steps, "weights_sha256": digest.hexdigest(),
        "precision@10": metrics["precision@10"], "recall@10": metrics["recall@10"],
        "ndcg@10": metrics["ndcg@10"],
    }))


def _child(setting: str, args: list[str]) -> None:
    env = {**os.environ, **SETTINGS[setting]}
    subprocess.run([sys.executable, "-m", "experiments.studies.determinism", "--child", *args], env=env, check=True)


def compare_ops(folder: Path, settings: list[str]) -> dict[str, Any]:
    """Per setting: the capability, the first differing tensor (forward order) and max differences."""
    import numpy as np

    native = np.load(folder / "native.npz")
    report = {}
    for setting in settings:
        if setting == "native":
            continue
        other = np.load(folder / f"{setting}.npz")
        if sorted(native.files) != sorted(other.files):
            raise RuntimeError(f"{setting} ran other ops than native: the kernel path changed the graph")
        diffs = {}
        for k in sorted(native.files):
            if k == "capability" or not native[k].size:
                continue
            a, b = native[k].astype(np.float64), other[k].astype(np.float64)
            if np.array_equal(a, b, equal_nan=True):
                diffs[k] = 0.0
            else:  # -inf (masked items) equal on both sides is not a difference
                finite = np.isfinite(a) & np.isfinite(b)
                same_inf = (a == b) & ~finite
                diffs[k] = float(np.max(np.abs(a[finite] - b[finite]), initial=0.0)) if (finite | same_inf).all() else math.inf
        changed = [k for k, v in diffs.items() if v > 0]
        report[setting] = {
            "capability": str(other["capability"]),
            "op_outputs": len(diffs), "op_outputs_changed": len(changed),
            "first_changed": changed[0] if changed else None,
            "max_abs_diff": max(diffs.values()) if diffs else 0.0,
            "changed": {k: diffs[k] for k in changed[:12]},
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps of each short run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every probe")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                        help="kernel-path settings to compare (native is always first)")
    parser.add_argument("--repeats", type=int, default=2, help="short runs of the native path")
    parser.add_argument("--out", default="results/determinism")
    parser.add_argument("--parts", nargs="+", choices=("ops", "runs"), default=["ops", "runs"],
                        help="what to (re)measure; the other part of an existing record is kept")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.settings = ["native"] + [s for s in args.settings if s != "native"]
    if args.child:
        kind, path = args.child[0], Path(args.child[1])
        if kind == "ops":
            probe_ops(args.threads, path)
        else:
            probe_run(args.threads, args.steps, path)
        return 0

    import tempfile

    import torch as th

    from recsim_env.files import atomic_write_text

    native = th.backends.cpu.get_cpu_capability().lower()
    command = "python -m experiments.studies.determinism " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out) / f"{native}.json"
    record: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    record.update(native_capability=native, threads=args.threads, settings=SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "ops" in args.parts:
            meta = {"command": command, "load_average_start": os.getloadavg()}
            for setting in args.settings:
                _child(setting, ["ops", str(folder / f"{setting}.npz"), "--threads", str(args.threads)])
            record["ops"] = compare_ops(folder, args.settings)
            record["ops_run"] = {**meta, "load_average_end": os.getloadavg()}
        if "runs" in args.parts:
            meta = {"command": command, "load_average_start": os.getloadavg()}
            runs: dict[str, list[dict]] = {}
            for setting in args.settings:
                for repeat in range(args.repeats if setting == "native" else 1):
                    path = folder / f"{setting}-{repeat}.json"
                    _child(setting, ["run", str(path), "--threads", str(args.threads), "--steps", str(args.steps)])
                    runs.setdefault(setting, []).append(json.loads(path.read_text()))
                    print(setting, runs[setting][-1], flush=True)
            record["runs"] = runs
            record["runs_run"] = {**meta, "load_average_end": os.getloadavg()}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    for setting, row in record.get("ops", {}).items():
        print(f"{setting:13s} {row['capability']:8s} changed {row['op_outputs_changed']}/{row['op_outputs']} "
              f"first {row['first_changed']} max {row['max_abs_diff']:.3g}")
    for setting, rows in record.get("runs", {}).items():
        for r in rows:
            print(f"{setting:13s} P@10 {r['precision@10']:.4f} R@10 {r['recall@10']:.4f} "
                  f"sha {r['weights_sha256'][:12]} {r['cpu_seconds_per_1000_steps']:.2f} CPU s/1k steps")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
