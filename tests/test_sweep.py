"""``experiments.sweep``: the table's runs as Ray Tune trials, on a tiny ML-1M-format dataset.

The end-to-end test starts a real local Ray (2 CPUs, small object store) in a subprocess,
interrupts it with Ctrl+C (SIGINT), resumes it, and checks that the table equals the one
``make table`` renders from the same run files, that a failing trial is reported by name while
the others finish, and that no Ray process is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from experiments import table1
from experiments.ray_cluster import _ray_processes
from experiments.sweep import RunSpec, plan_waves, table_specs
from experiments.table1 import TableOptions
from recsim_env.movielens import load_movielens

from test_table1 import write_tiny_ml1m

REPO = Path(__file__).resolve().parents[1]


def test_table_specs_follow_the_table_order_and_waves_share_tuning(tmp_path: Path) -> None:
    root = write_tiny_ml1m(tmp_path / "data")
    data = load_movielens("ml-1m", root, download=False, expect_official=False)
    opts = TableOptions(seeds=[0, 1, 2], models=["popularity", "itemcf", "lsrwrl"], quick=True)
    specs = table_specs(["ml-1m"], opts)
    assert [(s.seed, s.model) for s in specs] == table1.table_plan(opts)
    assert specs[0].name == "ml-1m-popularity-seed0"
    assert [s.cpus() for s in specs[:3]] == [1, 1, table1.lsrwrl_config("ml-1m", 0, opts, tmp_path).torch_threads]

    # Temporal split: one tuning per baseline, computed by its first seed; LSRWRL never waits.
    first, second = plan_waves(specs, {"ml-1m": data})
    assert [s.name for s in first] == ["ml-1m-popularity-seed0", "ml-1m-itemcf-seed0", "ml-1m-lsrwrl-seed0",
                                      "ml-1m-lsrwrl-seed1", "ml-1m-lsrwrl-seed2"]  # fmt: skip
    assert {s.name for s in second} == {f"ml-1m-{m}-seed{k}" for m in ("popularity", "itemcf") for k in (1, 2)}
    # Random split: every seed has its own validation slice, so nothing waits.
    random = TableOptions(seeds=[0, 1], models=["itemcf"], split="random", quick=True)
    assert len(plan_waves(table_specs(["ml-1m"], random), {"ml-1m": data})) == 1


def test_an_ablation_is_a_list_of_tagged_specs_with_their_own_options() -> None:
    base = TableOptions(seeds=[0], models=["lsrwrl"], quick=True)
    off = TableOptions(seeds=[0], models=["lsrwrl"], quick=True, lsrwrl_overrides={"next_item_weight": 0.0})
    specs = [RunSpec("ml-100k", "lsrwrl", 0, base), RunSpec("ml-100k", "lsrwrl", 0, off, tag="no-next-item")]
    assert [s.name for s in specs] == ["ml-100k-lsrwrl-seed0", "ml-100k-lsrwrl-no-next-item-seed0"]
    again = RunSpec.from_dict(specs[1].to_dict())
    assert again == specs[1] and again.options.lsrwrl_overrides == {"next_item_weight": 0.0}


def test_the_environment_agents_and_table_never_import_ray() -> None:
    code = ("import sys, recsim_env, agents, agents.baselines, agents.config, experiments.train, "
            "experiments.table1; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _sweep_cmd(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "experiments.sweep", *argv]


def _run_files(out: Path) -> dict[str, int]:
    folder = out / "table1_runs" / "ml-1m"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*-seed*.json")} if folder.is_dir() else {}


@pytest.mark.slow
def test_sweep_survives_ctrl_c_resumes_reports_failures_and_renders_the_table_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    root = write_tiny_ml1m(tmp_path / "data")
    broken = tmp_path / "broken" / "ml-1m"  # a worker whose data folder lacks ratings.dat
    broken.mkdir(parents=True)
    for name in ("users.dat", "movies.dat"):
        (broken / name).write_bytes((root / "ml-1m" / name).read_bytes())
    out = tmp_path / "results"
    table_argv = ["--datasets", "ml-1m", "--data-dir", str(root), "--no-download", "--seeds", "0", "1",
                  "--models", "popularity", "itemcf", "lsrwrl", "--quick", "--edited-copy", "--out", str(out),
                  "--lsrwrl-set", "torch_threads=1", "--lsrwrl-set", f"data_dir={broken.parent}"]  # fmt: skip
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray puts Unix sockets there
    ray_argv = ["--num-cpus", "2", "--object-store-mb", "100", "--ray-temp-dir", temp_dir,
                "--storage", str(tmp_path / "tune")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    # 1. Interrupted with Ctrl+C as soon as the first run is done.
    proc = subprocess.Popen(_sweep_cmd(table_argv + ray_argv), cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # generous: the machine may be loaded
        while not _run_files(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        first_output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, first_output
    assert "interrupted: run the same command again to resume" in first_output
    assert _ray_processes(temp_dir) == [], "Ray processes left after Ctrl+C"
    done_before = _run_files(out)
    assert 1 <= len(done_before) < 4, first_output

    # 2. The same command resumes: finished runs are not recomputed, the failing trial is reported
    #    by name with its error, the other trials finish.
    second = subprocess.run(_sweep_cmd(table_argv + ray_argv), cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=1200)  # fmt: skip
    output = second.stdout + second.stderr
    assert second.returncode == 1, output  # LSRWRL failed on every seed, as make table reports it
    assert "resuming Tune experiment" in output
    for seed in (0, 1):
        assert f"FAILED ml-1m-lsrwrl-seed{seed}: SetupError: cannot load the ml-1m data" in output
    assert "ratings.dat" in output
    assert _ray_processes(temp_dir) == [], "Ray processes left after a sweep with a failed trial"
    after = _run_files(out)
    assert len(after) == 4  # popularity and itemcf, seeds 0 and 1; failed runs leave no file
    assert all(after[name] == mtime for name, mtime in done_before.items())  # not recomputed
    tuning = list((out / "table1_runs" / "ml-1m").glob("tuning-itemcf-*.json"))
    assert len(tuning) == 1  # the seeds shared one tuning

    names = ("table1_ml-1m.md", "table1_ml-1m.csv", "table1_ml-1m_runs.json", "table1_ml-1m_p10_r10.png")
    swept = {name: (out / name).read_bytes() for name in names}
    md = swept["table1_ml-1m.md"].decode()
    assert "| Popularity | " in md and "| ItemCF | " in md and "| LSRWRL | **failed**" in md
    assert "SetupError: cannot load the ml-1m data" in md and "ratings.dat missing" in md

    # 3. make table with the same options reads every finished run and renders the same bytes.
    assert table1.main(table_argv) == 1
    assert {name: (out / name).read_bytes() for name in names} == swept
    assert _run_files(out) == after
