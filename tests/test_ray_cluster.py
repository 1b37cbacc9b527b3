"""``experiments.ray_cluster``: the Ray session of ``make sweep`` / ``make search`` on a real cluster.

The cluster test follows docs/ray.md as a user would: ``ray get-auth-token --generate``,
``ray start --head``, a second node with ``RAY_AUTH_MODE=token ray start --address=...`` (both on
this machine, one CPU each, random free ports, their own temp folder, a temporary ``HOME`` so the
token never touches ``~/.ray``), then ``make sweep ARGS="--address ..."`` (run as ``python -m
experiments.sweep`` with ``MOVIELENS_DATA`` exported, which is what ``make sweep`` runs). The nodes are started without ``MOVIELENS_DATA``: the driver's must travel
with the job. Teardown stops exactly the processes of these two ``ray start`` calls (their
sessions and descendants), never another Ray on the machine (``ray stop`` would stop them all).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments import table1
from experiments.ray_cluster import job_runtime_env, session_from_args, token_source

from test_table1 import write_tiny_ml1m

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "ray.md"
# The cluster commands of docs/ray.md, exactly as written there (the test fills in port and address).
DOC_TOKEN = "ray get-auth-token --generate > /dev/null"
DOC_HEAD = "ray start --head --port=6379"
DOC_NODE = "RAY_AUTH_MODE=token ray start --address=<head-ip>:6379"
DOC_SWEEP = 'make sweep ARGS="--address <head-ip>:6379'


# The job's environment and the token, without a cluster ------------------------------------------


def test_the_drivers_data_root_travels_absolute_and_an_explicit_value_wins(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    env = job_runtime_env(None, {"MOVIELENS_DATA": "data", "HOME": "/home/me"})
    assert env == {"env_vars": {"MOVIELENS_DATA": str(tmp_path / "data")}}  # only the data root, absolute
    given = {"env_vars": {"MOVIELENS_DATA": "/nfs/movielens", "X": "1"}, "pip": ["tqdm"]}
    assert job_runtime_env(given, {"MOVIELENS_DATA": "data"}) == given
    assert job_runtime_env(None, {"MOVIELENS_DATA": ""}) is None  # empty means unset, as the loader reads it
    with pytest.raises(ValueError, match="env_vars.*map names to strings"):
        job_runtime_env({"env_vars": {"OMP_NUM_THREADS": 2}}, {})
    with pytest.raises(ValueError, match="must be a JSON object"):
        job_runtime_env([1], {})  # type: ignore[arg-type]


def test_token_source_follows_rays_order_and_refuses_a_broken_token_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert token_source({}, home) is None
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a" * 32)
    assert token_source({}, home) == str(home / ".ray" / "auth_token")
    other = tmp_path / "token"
    other.write_text("b" * 32)
    assert token_source({"RAY_AUTH_TOKEN_PATH": str(other)}, home) == str(other)
    assert token_source({"RAY_AUTH_TOKEN": "c" * 32, "RAY_AUTH_TOKEN_PATH": str(other)}, home) == "$RAY_AUTH_TOKEN"
    with pytest.raises(ValueError, match="RAY_AUTH_TOKEN_PATH names .*missing or empty"):
        token_source({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "absent")}, home)


def test_cluster_address_rejects_local_only_options_and_bad_runtime_env() -> None:
    pytest.importorskip("ray", reason="Ray is not installed (the sweep extra: pip install 'recsim-env[sweep]')")
    from experiments.ray_cluster import ray_session

    with pytest.raises(ValueError, match="configure a local Ray"):
        with ray_session("127.0.0.1:1", num_cpus=2):
            pass
    args = argparse.Namespace(runtime_env='{"env_vars": {"A": 1}}', num_cpus=None, address=None,
                              object_store_mb=None, ray_temp_dir=None)  # fmt: skip
    with pytest.raises(SystemExit, match="--runtime-env: .*map names to strings"):
        session_from_args(args)


def test_local_trials_run_at_the_drivers_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray would start its workers 15 niceness levels down (a study next to other work starves)."""
    pytest.importorskip("ray", reason="Ray is not installed (the sweep extra: pip install 'recsim-env[sweep]')")
    from experiments.ray_cluster import WORKER_NICENESS_ENV_VAR, ray_session

    monkeypatch.delenv(WORKER_NICENESS_ENV_VAR, raising=False)
    temp_dir = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # short: Ray puts Unix sockets there
    try:
        with ray_session(num_cpus=1, temp_dir=temp_dir, log=lambda *a: None) as ray:
            niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert niceness == os.nice(0)
    assert WORKER_NICENESS_ENV_VAR not in os.environ  # the driver's environment is left as it was


# A real two-node cluster -------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _isolation(temp_dir: str, head: bool) -> list[str]:
    """``ray start`` options that keep a test node off everything another Ray here may use."""
    dashboard, agent, agent_grpc, metrics, runtime_env_agent, client = _free_ports(6)
    options = [f"--temp-dir={temp_dir}", "--num-cpus=1", "--object-store-memory=100000000",
               "--disable-usage-stats", f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
               f"--runtime-env-agent-port={runtime_env_agent}", "--min-worker-port=0", "--max-worker-port=0"]  # fmt: skip
    if head:
        options += ["--include-dashboard=false", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}"]
    return options


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, state) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


def _cluster_processes(sessions: set[int]) -> set[int]:
    """Live processes of these sessions (the ``ray start`` calls) and all their descendants."""
    table = _processes()
    chosen = {pid for pid, (_, sid, _) in table.items() if sid in sessions}
    while True:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in chosen} - chosen
        if not more:
            break
        chosen |= more
    return {pid for pid in chosen if table[pid][2] != "Z"}  # zombies hold nothing


def _stop(sessions: set[int], grace_s: float = 5.0) -> None:
    """``ray stop`` for these sessions only: SIGTERM, then SIGKILL what is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in _cluster_processes(sessions):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while _cluster_processes(sessions) and time.monotonic() < deadline:
            time.sleep(0.2)


def _ray(command: str, env: dict[str, str], temp_dir: str, sessions: set[int]) -> str:
    """Run a documented ``ray`` command line (``VAR=value`` prefixes and ``> /dev/null`` allowed)
    in a new session, with :func:`_isolation`'s options for ``ray start``; return its output."""
    words = shlex.split(command.split(" > /dev/null")[0])
    env = dict(env)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    ray_cli = str(Path(sys.executable).with_name("ray"))
    extra = _isolation(temp_dir, head="--head" in words) if words[1] == "start" else []
    proc = subprocess.Popen([ray_cli, *words[1:], *extra], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if words[1] == "start" else None,
                            start_new_session=True)  # fmt: skip
    sessions.add(proc.pid)
    try:
        output, _ = proc.communicate(timeout=240)  # generous: Ray starts slowly on a loaded machine
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"{command} failed:\n{output}"
    return output


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A head and a second node on this machine, token authentication on, no MOVIELENS_DATA.

    Their ``HOME`` is a temporary folder, so the documented token lands in its ``.ray/``, never
    in the user's ``~/.ray``; both nodes share it, as if it had been copied.
    """
    pytest.importorskip("ray", reason="Ray is not installed (the sweep extra: pip install 'recsim-env[sweep]')")
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray puts Unix sockets there
    home = tmp_path / "home"
    home.mkdir()
    node_cache = tmp_path / "node-cache"
    node_cache.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOVIELENS_DATA", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(home), RECSIM_ENV_CACHE=str(node_cache))
    sessions: set[int] = set()
    try:
        _ray(DOC_TOKEN, env, temp_dir, sessions)
        token = home / ".ray" / "auth_token"
        assert len(token.read_text().strip()) >= 32
        (port,) = _free_ports(1)
        head = _ray(DOC_HEAD.replace("6379", str(port)), env, temp_dir, sessions)
        assert "Token authentication is enabled" in head  # a token was found, so the head requires it
        address = re.search(r"ray start --address='([^']+)'", head).group(1)
        _ray(DOC_NODE.replace("<head-ip>:6379", address), env, temp_dir, sessions)
        yield {"address": address, "token": str(token), "node_cache": str(node_cache), "temp_dir": temp_dir}
    finally:
        _stop(sessions)
        left = _cluster_processes(sessions)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, f"processes of the test cluster left running: {sorted(left)}"


def _sweep(extra: list[str], driver_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``make sweep ARGS="..."``: what make runs (its MOVIELENS_DATA is in ``driver_env``)."""
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *extra], cwd=REPO, env=driver_env,
                          text=True, capture_output=True, timeout=300)  # fmt: skip


def _results(out: Path) -> dict[str, dict]:
    """Each run file of the table, without its wall times."""
    files = {}
    for path in sorted((out / "table1_runs" / "ml-1m").glob("*-seed*.json")):
        record = json.loads(path.read_text())
        files[path.name] = {**record, "run": {k: v for k, v in record["run"].items() if not k.endswith("_seconds")}}
    return files


def test_documented_cluster_commands_give_the_local_results_and_a_node_without_data_fails_fast(
    two_node_cluster: dict[str, str], tmp_path: Path
) -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for command in (DOC_TOKEN, DOC_HEAD, DOC_NODE, DOC_SWEEP):
        assert command in doc, f"docs/ray.md no longer shows `{command}`: update this test with it"
    address = two_node_cluster["address"]
    root = write_tiny_ml1m(tmp_path / "data")
    table_args = ["--datasets", "ml-1m", "--models", "popularity", "itemcf", "--seeds", "0", "--no-download",
                  "--edited-copy", "--quick"]  # fmt: skip
    driver_env = {k: v for k, v in os.environ.items()
                  if k not in ("MOVIELENS_DATA", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}  # fmt: skip
    driver_env.update(RAY_AUTH_TOKEN_PATH=two_node_cluster["token"], RECSIM_ENV_CACHE=str(tmp_path / "driver-cache"))
    args = ["--address", address]  # DOC_SWEEP with the address `ray start --head` printed

    # 1. The sweep on the cluster: the token is sent, the driver's MOVIELENS_DATA reaches both nodes.
    out = tmp_path / "cluster"
    done = _sweep([*args, *table_args, "--out", str(out), "--storage", str(tmp_path / "tune")],
                  {**driver_env, "MOVIELENS_DATA": str(root)})  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"connecting to {address} with token authentication, token from {two_node_cluster['token']}" in output
    assert f"ml-1m: found on 2 Ray node(s) at {root / 'ml-1m'}" in output
    assert "2/2 runs" in output and "2 computed" in output

    # 2. The same runs locally (make table) give the same run files: same keys, metrics, tuned values.
    local = tmp_path / "local"
    assert table1.main([*table_args, "--data-dir", str(root), "--out", str(local)]) == 0
    assert _results(out) == _results(local) and len(_results(local)) == 2

    # 3. The data only in the driver's cache: no node has it, the sweep stops before any trial.
    cache = Path(driver_env["RECSIM_ENV_CACHE"])
    shutil.copytree(root / "ml-1m", cache / "ml-1m")
    started = time.monotonic()
    out = tmp_path / "no-data"
    done = _sweep([*args, *table_args, "--out", str(out), "--storage", str(tmp_path / "tune-no-data")], driver_env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "NodeDataError: 2 of 2 Ray nodes cannot find the data their trials need" in output
    assert f"per-user cache: no folder {two_node_cluster['node_cache']}/ml-1m" in output  # the path tried
    assert "Fix: make the files reachable at the same path on every node" in output
    assert "wave 1" not in output and not out.exists()  # no trial started
    assert time.monotonic() - started < 120
