"""Command line: train the LSRWRL agent (or another algorithm around its extractor) on
``MovieLensRec-v0`` and evaluate it on the test split (:func:`agents.training.train`).

Usage::

    python -m experiments.train                       # preset "default", ml-100k
    python -m experiments.train --preset paper        # the paper's settings
    python -m experiments.train --algo ppo --total-timesteps 100000 --seed 1
    python -m experiments.train --resume runs/lsrwrl-20250101-120000
    python -m experiments.train --run-dir runs/mine --overwrite   # replace an earlier run there

Every ``TrainConfig`` field is an option (``--help``); a setting the chosen ``--algo`` does not
take is an error that names the algorithms taking it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import typing
from pathlib import Path

from agents.config import TrainConfig, add_config_arguments, config_from_args, parse_value
from agents.training import RESUME_FIELDS, SetupError, TrainingInterrupted, train


# CLI ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one message, not the 100-line usage text."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(python -m experiments.train --help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m experiments.train",
        description="Train the LSRWRL agent on MovieLensRec-v0 and evaluate it on the test split. "
                    "Exit status: 0 done (the report says if a wall-clock cap left the run INCOMPLETE), "
                    "2 nothing started (bad option, config, device, data or run directory), "
                    "130 / 143 interrupted by SIGINT / SIGTERM after saving a checkpoint.",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run from its last checkpoint with its config.json; "
                             f"only --{', --'.join(f.replace('_', '-') for f in RESUME_FIELDS)} may be given "
                             "(e.g. a larger budget)")
    parser.add_argument("--run-dir", default=None,
                        help="run directory (default: a new <runs-dir>/<name>-<timestamp>); an existing one "
                             "with files is refused unless --resume or --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the existing run in --run-dir: its files are deleted once the data have "
                             "loaded (only folders with a config.json)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines (the final report is still printed)")
    add_config_arguments(parser)
    return parser


def _fail(message: str) -> int:
    print(f"python -m experiments.train: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The command line: parse, check, train, print the report.

    :return: the exit status (0, 2, 130 or 143; see ``--help``)
    """
    args = build_parser().parse_args(argv)
    cli_only = ("resume", "run_dir", "overwrite", "no_progress", "preset")
    given = [f for f in vars(args) if f not in cli_only and getattr(args, f) is not None]
    # Every config problem is reported here, before any data is loaded or any training starts.
    try:
        if args.resume:
            refused = [f for f in given if f not in RESUME_FIELDS] + (["preset"] if args.preset != "default" else [])
            if refused:
                return _fail("--resume continues with the run's saved config.json; drop "
                             + " ".join("--" + f.replace("_", "-") for f in refused)
                             + f" (only --{', --'.join(f.replace('_', '-') for f in RESUME_FIELDS)} may change)")
            if args.overwrite:
                return _fail("--resume continues a run and --overwrite replaces it: choose one")
            if args.run_dir and Path(args.run_dir) != Path(args.resume):
                return _fail(f"two run directories given: --resume {args.resume} and --run-dir {args.run_dir}")
            config_path = Path(args.resume) / "config.json"
            if not config_path.is_file():
                return _fail(f"--resume {args.resume}: no config.json there (is it a run directory?)")
            saved = TrainConfig.load(str(config_path))
            hints = typing.get_type_hints(TrainConfig)
            overrides = {f: parse_value(getattr(args, f), hints[f], f) for f in given}
            if overrides.get("data") is not None:  # a moved log: recorded absolute, as make_config does
                overrides["data"] = str(Path(overrides["data"]).expanduser().resolve())
            config = TrainConfig.from_dict({**saved.to_dict(), **overrides}).validate()
        else:
            config = config_from_args(args)
    except ValueError as err:
        return _fail(str(err))
    run_dir = Path(args.resume or args.run_dir) if (args.resume or args.run_dir) else None
    try:
        train(config, run_dir, progress=not args.no_progress, resume=bool(args.resume),
              overwrite=args.overwrite, report=True)
    except SetupError as err:
        return _fail(str(err))
    except TrainingInterrupted as stop:
        sys.stdout.flush()
        if stop.checkpoint is None:
            print(f"\n{stop.signal_name}: stopped before training started; nothing was saved", file=sys.stderr)
        else:
            how = "checkpoint saved" if stop.saved_now else "aborted without a new checkpoint; the last one is"
            print(f"\n{stop.signal_name}: {how} at step {stop.step:,} in {stop.checkpoint}. Continue with:\n"
                  f"  python -m experiments.train --resume {shlex.quote(str(stop.run_dir))}", file=sys.stderr)
        return stop.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
