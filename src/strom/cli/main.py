"""Entry point of the ``strom`` command (``strom = strom.cli.main:main``).

Exit codes: 0 the job finished; 1 the job failed (the ``JobExecutionError`` — operator, subtask,
original traceback — or the job code's own traceback goes to stderr); 2 the command line was
wrong (missing file, unknown module or function, bad option); 130 interrupted by Ctrl-C
(SIGINT), after the running job was cancelled.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence

import strom
from strom.apps.accesslog import demo as app
from strom.cli.control import ControlServer, request_savepoint
from strom.cli.run import UsageError, run_target
from strom.errors import JobCancelledError, JobExecutionError, StromError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C'd program

_PARALLELISM_FLAGS = ("-p", "--parallelism")
_VALUE_FLAGS = (*_PARALLELISM_FLAGS, "--from-checkpoint", "--from-savepoint", "-s")
_BOOL_FLAGS = ("--allow-non-restored-state", "-n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _is_own_flag(arg: str) -> bool:
    """A strom option written as one word (``--parallelism=4``, ``-p4``, a boolean flag)."""
    return (
        arg in _BOOL_FLAGS
        or any(arg.startswith(f"{flag}=") for flag in _VALUE_FLAGS if flag.startswith("--"))
        or (arg.startswith("-p") and arg[2:].isdigit())
    )


def split_run_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``strom run``'s arguments into strom's own and the job's.

    Strom's options may come before the target and right after it;
    the first other argument after the target (or a ``--``) starts the job's arguments. This
    is done by hand because argparse's ``REMAINDER`` swallows options after the target and
    drops a ``--`` differently across Python versions. Strom's part comes back as
    ``[*options, "--", target]``, so a target starting with ``-`` parses too.
    """
    options: list[str] = []
    target: str | None = None
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        if arg == "--":
            if target is not None:
                i += 1
                break
            if i + 1 < n:
                target = argv[i + 1]
            i += 2
        elif arg in _VALUE_FLAGS:
            options.extend(argv[i : i + 2])
            i += 2
        elif _is_own_flag(arg) or (arg.startswith("-") and target is None):
            options.append(arg)
            i += 1
        elif target is None:
            target = arg
            i += 1
        else:
            break
    own = options if target is None else [*options, "--", target]
    return own, list(argv[i:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strom", description="Run strom stream-processing jobs on this machine."
    )
    parser.add_argument("--version", action="version", version=f"strom {strom.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a job: a Python file, a module, or module:function",
        usage=(
            "strom run [-h] [-p N] [--from-checkpoint DIR|latest | --from-savepoint DIR] [-n] "
            "TARGET [--] [ARGS ...]"
        ),
        description=(
            "Run a job. TARGET is path/to/job.py or package.module (run as __main__: the job "
            "builds its environment and calls execute()), or package.module:function (called "
            "without arguments; a returned environment or stream is executed). ARGS reach "
            "the job as sys.argv[1:]. Ctrl-C cancels the job (exit code 130)."
        ),
    )
    run.add_argument(
        *_PARALLELISM_FLAGS,
        dest="parallelism",
        type=_positive_int,
        metavar="N",
        help="default parallelism of every environment the job creates",
    )
    restore = run.add_mutually_exclusive_group()
    restore.add_argument(
        "--from-checkpoint",
        metavar="DIR|latest",
        help="resume from a checkpoint directory, or the newest completed checkpoint of the "
        "job (latest) in its checkpoint storage — e.g. after the process was killed",
    )
    restore.add_argument(
        "-s",
        "--from-savepoint",
        metavar="DIR",
        help="start from a savepoint (state matched to operators by uid; any parallelism)",
    )
    run.add_argument(
        "-n",
        "--allow-non-restored-state",
        action="store_true",
        help="drop restored state that matches no operator of the job instead of failing",
    )
    run.add_argument(
        "target", metavar="TARGET", help="path/to/job.py, package.module or package.module:function"
    )

    demo = commands.add_parser(
        "demo",
        help="run the bundled access-log analytics demo",
        description="Per-API request statistics over generated access-log records.",
    )
    demo.add_argument("--records", type=_non_negative_int, default=app.DEFAULT_RECORDS, metavar="N")
    demo.add_argument(
        *_PARALLELISM_FLAGS,
        dest="parallelism",
        type=_positive_int,
        default=app.DEFAULT_PARALLELISM,
        metavar="P",
    )
    demo.add_argument("--seed", type=int, default=app.DEFAULT_SEED, metavar="S")

    savepoint = commands.add_parser(
        "savepoint",
        help="write a savepoint of a job started with strom run",
        description="Trigger a savepoint of a running job (found by its process id or job id, "
        "or the only running job) and print its path. Savepoints are never deleted by strom.",
    )
    savepoint.add_argument("job", metavar="JOB", nargs="?", help="process id or job id (prefix)")
    savepoint.add_argument("directory", metavar="DIR", nargs="?", default="savepoints")
    stop = commands.add_parser(
        "stop",
        help="stop a job started with strom run, with a savepoint",
        description="Write a savepoint, then cancel the job; print the savepoint path.",
    )
    stop.add_argument("--with-savepoint", dest="directory", metavar="DIR", default="savepoints")
    stop.add_argument("job", metavar="JOB", nargs="?", help="process id or job id (prefix)")
    return parser


def _demo(records: int, parallelism: int, seed: int) -> None:
    started = time.monotonic()
    stats = app.run_demo(records=records, parallelism=parallelism, seed=seed)
    print(f"Access-log demo: {records:,} generated records, seed {seed}, parallelism {parallelism}")
    print()
    print(app.format_table(stats))
    # timing to stderr: stdout stays identical for identical arguments
    print(f"(ran in {time.monotonic() - started:.2f} s)", file=sys.stderr)


def _stopped_with_savepoint() -> bool:
    """``strom stop --with-savepoint`` cancels the job after its savepoint: a clean end."""
    from strom.runtime.executor import stopped_with_savepoint

    return stopped_with_savepoint()


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    job_args: list[str] = []
    if args_in[:1] == ["run"]:
        own, job_args = split_run_args(args_in[1:])
        args_in = ["run", *own]
    parser = build_parser()
    args = parser.parse_args(args_in)  # exits with 2 on bad usage
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    if threading.current_thread() is threading.main_thread():
        # A shell starts background commands with SIGINT ignored; the contract here is that
        # SIGINT cancels the job, so make it raise KeyboardInterrupt whatever we inherited.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.command == "run":
            restore_point = args.from_checkpoint or args.from_savepoint
            with ControlServer():
                run_target(
                    args.target,
                    job_args,
                    args.parallelism,
                    restore_point,
                    args.allow_non_restored_state,
                )
        elif args.command in ("savepoint", "stop"):
            print(request_savepoint(args.job, args.directory, stop=args.command == "stop"))
        else:
            _demo(args.records, args.parallelism, args.seed)
    except UsageError as e:
        print(f"strom {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # env.execute() has cancelled the job before re-raising
        print("strom: interrupted, job cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except JobExecutionError as e:  # also JobCancelledError: cancelled by someone else
        if isinstance(e, JobCancelledError) and args.command == "run":
            print(f"strom: {e}", file=sys.stderr)
            return EXIT_OK if _stopped_with_savepoint() else EXIT_FAILED
        print(f"strom: {e}", file=sys.stderr)
        return EXIT_FAILED
    except StromError as e:
        print(f"strom {args.command}: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        # an error of the job code itself (building the job, its own logic)
        traceback.print_exc()
        return EXIT_FAILED
    return EXIT_OK
