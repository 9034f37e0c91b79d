"""``strom run``: load job code (a file, a module, or a ``module:function``) and run it.

A job file or module runs as ``__main__``, the way ``python job.py`` / ``python -m`` would run
it: it builds its environment and calls ``execute()`` itself. A function is called without
arguments; if it returns an environment (or a stream of one) instead of executing, it is
executed here. In every form the job sees its arguments in ``sys.argv[1:]``.

Only what the user typed wrong raises ``UsageError``; errors raised by job code propagate
unchanged, so ``strom.cli.main`` can tell the two apart.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import runpy
import sys
from pathlib import Path
from typing import Any

from strom.api import DataStream, StreamExecutionEnvironment
from strom.runtime.job import JobExecutionResult


class UsageError(Exception):
    """The command line names something that does not exist or cannot be run."""


def run_target(
    target: str,
    args: list[str],
    parallelism: int | None = None,
    restore: str | None = None,
    allow_non_restored_state: bool = False,
) -> None:
    """Run ``target`` with ``args`` in ``sys.argv[1:]``; ``parallelism`` becomes the default
    of every environment the job creates (its own ``set_parallelism`` still wins), and
    ``restore`` (a checkpoint or savepoint directory, or ``latest``) its starting point."""
    if parallelism is not None:
        StreamExecutionEnvironment.set_default_parallelism(parallelism)
    if restore is not None:
        StreamExecutionEnvironment.set_default_restore(
            restore, allow_non_restored_state=allow_non_restored_state
        )
    if target.endswith(".py") or os.sep in target or Path(target).is_file():
        run_file(Path(target), args)
    elif ":" in target:
        run_function(target, args)
    else:
        run_module(target, args)


def run_file(path: Path, args: list[str]) -> None:
    if not path.is_file():
        what = "is a directory, not a job file" if path.is_dir() else "not found"
        raise UsageError(f"job file {str(path)!r} {what}")
    sys.argv = [str(path), *args]
    # as `python job.py` does: modules next to the job file are importable
    sys.path.insert(0, str(path.resolve().parent))
    runpy.run_path(str(path), run_name="__main__")


def _import(module_name: str) -> Any:
    # as `python -m` does: modules in the working directory are importable
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # only a missing *target* is a usage error; a missing import inside it is a job bug
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            raise UsageError(f"no module named {module_name!r}") from None
        raise


def run_module(module_name: str, args: list[str]) -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(module_name)
    except (ModuleNotFoundError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(
            f"{module_name!r} is neither a job file nor a module "
            "(expected path/to/job.py, package.module or package.module:function)"
        )
    sys.argv = [module_name, *args]
    runpy.run_module(module_name, run_name="__main__", alter_sys=True)


def run_function(target: str, args: list[str]) -> None:
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise UsageError(f"expected package.module:function, got {target!r}")
    obj = _import(module_name)
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no function {attr_path!r}") from None
    if not callable(obj):
        raise UsageError(f"{target!r} is a {type(obj).__name__}, not a function")
    sys.argv = [target, *args]
    execute_returned(obj(), target)


def execute_returned(returned: object, target: str) -> None:
    """Execute what a job function returned, unless it ran the job itself."""
    if returned is None or isinstance(returned, JobExecutionResult):
        return
    if isinstance(returned, StreamExecutionEnvironment):
        returned.execute(target)
    elif isinstance(returned, DataStream):
        # DataStream has no public accessor for its environment (yet)
        returned._env.execute(target)
    else:
        raise UsageError(
            f"{target!r} returned a value of type {type(returned).__name__}; a job function "
            "returns None (it executed the job), a StreamExecutionEnvironment or a DataStream"
        )
