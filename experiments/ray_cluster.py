"""The Ray session of ``make sweep`` and ``make search``: a local Ray or a running cluster.

:func:`ray_session` starts Ray on this machine (and stops it at the end) or connects to a
running cluster (``--address``; only disconnected from at the end). On a cluster three things
differ from a local Ray, and the session takes care of each:

- *The job's environment.* A cluster's workers run in the environment ``ray start`` was given on
  their node, not in the driver's. The driver's ``$MOVIELENS_DATA`` (made absolute) therefore
  travels with the job as a Ray ``runtime_env`` variable (:func:`job_runtime_env`); a value in
  ``--runtime-env`` wins over it. The per-user cache stays each node's own.
- *Token authentication.* Ray 2.59+ starts ``ray start --head`` with token authentication when the
  head has a token (``~/.ray/auth_token``; any local ``ray.init()``, e.g. a local ``make sweep``,
  creates one), but a driver connecting to an explicit address sends its token only with
  ``RAY_AUTH_MODE=token`` (``--address auto`` does so by itself). When ``RAY_AUTH_MODE`` is unset,
  the address is explicit and this machine has a token (:func:`token_source`), the session turns
  token mode on for this process and says so: the token goes to the address named and nowhere
  else; authentication is never turned off. ``RAY_AUTH_MODE=disabled`` connects without a token.
  A failed connection names the token it sent (or that none was sent) and how to fix it.
- *Data on every node.* Before any trial starts, :func:`check_data_on_nodes` runs one small task
  on every node that locates the datasets exactly as a trial will, so that a node without them
  stops the run at once with its name, the places looked at and the fix, instead of every trial
  failing with the same error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from recsim_env.movielens import DATA_ENV_VAR

#: What to install when Ray is missing (the ``sweep`` extra of ``setup.cfg``).
INSTALL_HINT = "pip install 'recsim-env[sweep]'  (or: pip install 'ray[tune]>=2.60')"
#: Driver environment variables that travel to every worker of the job (paths made absolute).
FORWARDED_ENV_VARS = (DATA_ENV_VAR,)
#: Ray's authentication settings (https://docs.ray.io/en/latest/ray-security/token-auth.html).
AUTH_MODE_ENV_VAR = "RAY_AUTH_MODE"
TOKEN_ENV_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV_VAR = "RAY_AUTH_TOKEN_PATH"
#: Ray's niceness increment of its worker processes (Ray's default: 15).
WORKER_NICENESS_ENV_VAR = "RAY_worker_niceness"


def require_ray():
    """Import and return :mod:`ray`, or exit with how to install it."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"this command needs Ray Tune ({exc}); install it with {INSTALL_HINT}") from None
    return ray


def _ray_processes(temp_dir: str | None = None) -> list[int]:
    """Pids of this machine's Ray daemons (``raylet``, ``gcs_server``) and workers; with
    ``temp_dir``, only those whose command line names it (one session's processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not any(tag in cmdline for tag in ("raylet", "gcs_server", "default_worker.py", "ray::")):
            continue
        if temp_dir is None or temp_dir in cmdline:
            pids.append(int(entry.name))
    return pids


# The job's environment --------------------------------------------------------------------------


def job_runtime_env(
    runtime_env: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The Ray ``runtime_env`` of the job: ``runtime_env`` plus the driver's :data:`FORWARDED_ENV_VARS`.

    :param runtime_env: the user's runtime environment (``--runtime-env``); its ``env_vars``
        win over the driver's values
    :param environ: the driver's environment (default :data:`os.environ`)
    :return: the runtime environment (``None`` if empty); a forwarded path is absolute, so it
        means the same in a trial (whose working directory is its trial folder) and on another
        node (where it must exist: :func:`check_data_on_nodes` checks)
    :raises ValueError: ``runtime_env`` is not a JSON object, or its ``env_vars`` do not map
        names to strings
    """
    environ = os.environ if environ is None else environ
    if runtime_env is not None and not isinstance(runtime_env, Mapping):
        raise ValueError(f"the Ray runtime environment must be a JSON object, got {runtime_env!r}")
    env = dict(runtime_env or {})
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise ValueError(f'runtime_env "env_vars" must map names to strings (Ray\'s rule), got {env_vars!r}')
    env_vars = dict(env_vars)
    for name in FORWARDED_ENV_VARS:
        value = environ.get(name)
        if value and name not in env_vars:  # empty counts as unset, as recsim_env reads it
            env_vars[name] = str(Path(value).expanduser().resolve())
    if env_vars:
        env["env_vars"] = env_vars
    return env or None


# Token authentication ---------------------------------------------------------------------------


def token_source(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Where Ray would take this machine's authentication token from, or ``None`` if it has none.

    Ray's order: ``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``.

    :param environ: the environment (default :data:`os.environ`)
    :param home: the home folder (default :meth:`pathlib.Path.home`)
    :return: ``"$RAY_AUTH_TOKEN"`` or the token file's path
    :raises ValueError: ``$RAY_AUTH_TOKEN_PATH`` names a missing or empty file (Ray would abort)
    """
    environ = os.environ if environ is None else environ
    if environ.get(TOKEN_ENV_VAR):
        return f"${TOKEN_ENV_VAR}"
    if environ.get(TOKEN_PATH_ENV_VAR):
        path = Path(environ[TOKEN_PATH_ENV_VAR]).expanduser()
        if not path.is_file() or not path.read_text(encoding="utf-8", errors="replace").strip():
            raise ValueError(f"${TOKEN_PATH_ENV_VAR} names {path}, which is missing or empty; point it at "
                             "the cluster's token file or unset it")  # fmt: skip
        return str(path)
    path = (home or Path.home()) / ".ray" / "auth_token"
    return str(path) if path.is_file() else None


def _set_auth_mode(mode: str | None) -> None:
    """Set (``None``: unset) ``RAY_AUTH_MODE`` for this process, as ``ray start`` does it.

    Ray reads the variable into its cached config; ``Config.initialize`` re-reads it, which is how
    Ray's own ``ray start --head`` turns token mode on (no public API does).
    """
    from ray._raylet import Config

    if mode is None:
        os.environ.pop(AUTH_MODE_ENV_VAR, None)
    else:
        os.environ[AUTH_MODE_ENV_VAR] = mode
    Config.initialize("")


@contextlib.contextmanager
def _token_auth_for(address: str, log: Callable[[str], None]) -> Iterator[str]:
    """Token mode for a connection to ``address`` (see the module docstring); yields a sentence
    saying what was sent, for the error of a failed connection."""
    mode = os.environ.get(AUTH_MODE_ENV_VAR)
    if mode is not None:
        yield f"{AUTH_MODE_ENV_VAR}={mode} is set here, so Ray {'sent the token' if mode == 'token' else 'sent no token'}"
        return
    if address == "auto":
        yield "with --address auto Ray sends this machine's token when it has one"
        return
    source = token_source()
    if source is None:
        yield (f"this machine has no token (none in ${TOKEN_ENV_VAR}, ${TOKEN_PATH_ENV_VAR} or "
               "~/.ray/auth_token), so none was sent")  # fmt: skip
        return
    log(f"Ray: connecting to {address} with token authentication, token from {source} "
        f"({AUTH_MODE_ENV_VAR}=disabled connects without it)")  # fmt: skip
    _set_auth_mode("token")
    try:
        yield f"the token from {source} was sent"
    finally:
        _set_auth_mode(None)


def _connection_error(address: str, exc: BaseException, sent: str) -> ConnectionError:
    return ConnectionError(
        f"{exc}. Check that {address} is the address `ray start --head` printed and that this machine "
        f"reaches it. If the cluster uses token authentication, this machine needs the head's token: "
        f"{sent}. Copy the head's ~/.ray/auth_token here (`ray get-auth-token` on the head prints it) "
        f"or set ${TOKEN_ENV_VAR}; with {AUTH_MODE_ENV_VAR} unset, this command then sends it."
    )


# The session ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore the earlier ones."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ray_session(
    address: str | None = None,
    num_cpus: int | None = None,
    *,
    object_store_mb: int | None = None,
    temp_dir: str | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[Any]:
    """Connect to a Ray cluster, or start Ray on this machine, and always shut it down.

    :param address: a running cluster (``"host:6379"`` as ``ray start --head`` prints it,
        ``"auto"`` on one of its nodes, ``"ray://host:10001"``); default ``$RAY_ADDRESS`` if set,
        else a new local Ray with this machine's cores
    :param num_cpus: CPUs of a local Ray (default: all cores); not allowed with a cluster,
        which declares its own
    :param object_store_mb: object store of a local Ray in MiB (default: Ray's, 30% of RAM);
        the trials pass little data through it
    :param temp_dir: Ray's session folder for a local Ray (default ``/tmp/ray``); keep it short,
        it holds Unix sockets
    :param runtime_env: Ray runtime environment of the job (e.g. ``{"env_vars":
        {"MOVIELENS_DATA": "/nfs/movielens"}}``); the driver's ``$MOVIELENS_DATA`` is added
        (:func:`job_runtime_env`)
    :param log: printer of the session's notes (token authentication)

    A local Ray's workers (the trials) run at this process's priority: Ray would start them
    15 niceness levels lower (its ``worker_niceness``), so that a study run next to any other
    work at normal priority got almost no CPU. ``nice -n 10 make equal-budget`` lowers the
    study, trials included; ``$RAY_worker_niceness`` set by you is kept. A cluster's workers
    keep the priority its ``ray start`` gives them.

    :return: the :mod:`ray` module, initialised. On exit (even by an exception or Ctrl+C)
        :func:`ray.shutdown` runs: a local Ray stops every process it started, a cluster is
        only disconnected from
    :raises ConnectionError: the cluster cannot be reached; the message says what token was sent
    """
    ray = require_ray()
    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; call ray.shutdown() first")
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(include_dashboard=False, runtime_env=job_runtime_env(runtime_env),
                                  log_to_driver=False)  # fmt: skip
    local_env: dict[str, str] = {}
    if address is None:
        if WORKER_NICENESS_ENV_VAR not in os.environ:  # yours is kept
            local_env[WORKER_NICENESS_ENV_VAR] = "0"
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1)
        if object_store_mb is not None:
            kwargs["object_store_memory"] = int(object_store_mb) * 2**20
        if temp_dir is not None:
            kwargs["_temp_dir"] = str(temp_dir)
    elif num_cpus is not None or object_store_mb is not None or temp_dir is not None:
        raise ValueError(
            f"--num-cpus, --object-store-mb and --ray-temp-dir configure a local Ray; the cluster at "
            f"{address!r} declares its own (set them on `ray start`), so drop them"
        )
    auth = _token_auth_for(address, log) if address is not None else contextlib.nullcontext("")
    with auth as sent:
        try:
            try:
                # "local": always a new Ray of our own, never a `ray start` cluster found on this machine.
                with _environment(local_env):  # read by the processes ray.init starts
                    ray.init(address=address or "local", **kwargs)
            except ConnectionError as exc:
                raise _connection_error(address, exc, sent) from exc
            yield ray
        finally:
            ray.shutdown()


# Data on every node -----------------------------------------------------------------------------


class NodeDataError(RuntimeError):
    """Some node of the Ray cluster cannot find a dataset its trials need (raised before any trial)."""


def _locate_here(names: Sequence[str], data_dir: str | None, download: bool) -> dict[str, Any]:
    """Run on one node (a Ray task): where each dataset is found there, or why it is not."""
    import socket

    import ray

    from recsim_env.movielens import locate_movielens

    found, errors = {}, {}
    for name in names:
        try:
            found[name] = str(locate_movielens(name, data_dir, download=download))
        except OSError as exc:  # not found, a file missing, the download failed
            errors[name] = f"{type(exc).__name__}: {exc}"
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(), "found": found, "errors": errors}  # fmt: skip


def check_data_on_nodes(
    names: Sequence[str],
    data_dir: str | None = None,
    *,
    download: bool = True,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, str]]:
    """Locate the datasets on every alive node with CPUs of the current Ray session, as a trial will.

    One task per node (no CPU asked, pinned to the node) calls
    :func:`recsim_env.movielens.locate_movielens` with the trials' ``data_dir`` and
    ``download``, in the job's environment; with ``download`` a node without the files
    downloads them into its cache now, once, instead of in several trials at the same time.
    Nodes that join after the check are not checked (their trials fail with the loader's error).

    :param names: dataset names
    :param data_dir: the trials' data root (absolute; ``None``: each node's ``$MOVIELENS_DATA``,
        which the job sets from the driver's, then its cache)
    :param download: whether a trial may download a missing dataset
    :param timeout_s: seconds to wait for every node's answer
    :param log: printer of the one-line summary
    :return: node id -> dataset name -> the folder found there
    :raises NodeDataError: a node cannot find a dataset; the message names every such node,
        the places it looked at, and the fix
    """
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    names = sorted(set(names))
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if not nodes:
        raise NodeDataError("the Ray cluster has no alive node with CPUs to run trials on; check `ray status`")
    task = ray.remote(num_cpus=0, max_retries=0)(_locate_here)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(names, data_dir, download) for n in nodes]  # fmt: skip
    reports = ray.get(refs, timeout=timeout_s)
    failed = [r for r in reports if r["errors"]]
    if failed:
        lines = [f"{len(failed)} of {len(reports)} Ray nodes cannot find the data their trials need "
                 "(checked on every node before any trial started):"]  # fmt: skip
        by_error: dict[tuple[str, str], list[str]] = {}  # the same failure on several nodes: told once
        for r in failed:
            for name, error in r["errors"].items():
                by_error.setdefault((name, error), []).append(
                    f"{r['ip']} (host {r['host']}, node id {r['node_id'][:8]})")
        for (name, error), where in by_error.items():
            text = textwrap.indent(error, "      ").lstrip()
            lines.append(f"  - node{'s' if len(where) > 1 else ''} {', '.join(where)}: {name}: {text}")
        lines.append(
            "Fix: make the files reachable at the same path on every node (e.g. a shared mount) and "
            f"pass it with --data-dir, or export {DATA_ENV_VAR}=<that path> where you run this command "
            f"(it travels with the job), or set {DATA_ENV_VAR} on each node before `ray start`."
        )
        raise NodeDataError("\n".join(lines))
    for name in names:
        folders = sorted({r["found"][name] for r in reports})
        log(f"{name}: found on {len(reports)} Ray node(s) at {', '.join(folders)}")
    return {r["node_id"]: r["found"] for r in reports}


# CLI --------------------------------------------------------------------------------------------


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--address``, ``--num-cpus``, ``--object-store-mb``, ``--ray-temp-dir``, ``--runtime-env``, ``--storage``."""
    group = parser.add_argument_group("Ray")
    group.add_argument("--address", default=None,
                       help="a running Ray cluster: host:port as `ray start --head` prints it, 'auto' on one of "
                            "its nodes, or ray://host:port (default: $RAY_ADDRESS, else start Ray on this "
                            "machine); with a token on this machine and RAY_AUTH_MODE unset, it is sent")
    group.add_argument("--num-cpus", type=int, default=None,
                       help="CPUs of a local Ray (default: all of this machine's cores)")
    group.add_argument("--object-store-mb", type=int, default=None,
                       help="object store of a local Ray, MiB (default: Ray's)")
    group.add_argument("--ray-temp-dir", default=None, help="session folder of a local Ray (default: /tmp/ray)")
    group.add_argument("--runtime-env", default=None, metavar="JSON",
                       help='Ray runtime environment, e.g. \'{"env_vars": {"MOVIELENS_DATA": "/nfs/movielens"}}\' '
                            "(default: the driver's $MOVIELENS_DATA, made absolute, is sent to every worker)")
    group.add_argument("--storage", default="runs/ray_tune",
                       help="folder of the Tune experiments, for resuming (default: %(default)s; a shared path "
                            "or cloud URI on a multi-node cluster)")


def session_from_args(args: argparse.Namespace):
    """:func:`ray_session` with the ``--address`` ... options."""
    runtime_env = None
    if args.runtime_env:
        try:
            runtime_env = json.loads(args.runtime_env)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--runtime-env is not valid JSON ({exc}): {args.runtime_env!r}") from None
        try:
            job_runtime_env(runtime_env)
        except ValueError as exc:
            raise SystemExit(f"--runtime-env: {exc}") from None
    if args.num_cpus is not None and args.num_cpus < 1:
        raise SystemExit(f"--num-cpus must be >= 1, got {args.num_cpus}")
    return ray_session(args.address, args.num_cpus, object_store_mb=args.object_store_mb,
                       temp_dir=args.ray_temp_dir, runtime_env=runtime_env)  # fmt: skip
