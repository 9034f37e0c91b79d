"""Conformance batteries: generic checks that any ``Source`` or ``Sink`` can run.

A connector is only as good as its behaviour at the edges — many splits, a snapshot in the
middle of a split, a restore at another parallelism, the end of the input, a crash between a
checkpoint and its notification. Those edges are the same for every connector, so the checks
are written once, here (Flink's connector test suites and trio's ``check_*_stream`` are the
models), and each connector only supplies small fixtures that create input or read output:

- ``SourceConformance`` (``conformance_sources.py``): single split, many splits at parallelism
  1 and 3, stop and restore, rescale, end of input, and the declared guarantee.
- ``SinkConformance`` (``conformance_sinks.py``): writes across subtasks, flush at the end of
  input, stop and restore with replay, rescale, close without flush, and the declared guarantee.

Every check drives the connector through the same harnesses as ``SourceReaderHarness`` /
``SinkWriterHarness`` (so the runtime's own operators deal state as a job does), pickles every
snapshot as a checkpoint would, and raises ``AssertionError`` naming the connector, the check,
the property that failed and the data it failed on. A check that cannot apply to a connector
(rescale of a non-parallel source) raises ``CheckNotApplicable``; ``check_all`` reports it as
skipped. ``conformance_tests`` turns a battery into parametrized pytest tests.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, NoReturn

__all__ = ["Battery", "CheckNotApplicable", "Scenario", "conformance_tests"]


class CheckNotApplicable(Exception):
    """The check does not apply to this connector; the message says why."""


def sample(items: Sequence[Any], limit: int = 5) -> str:
    """A short, readable excerpt of ``items`` for failure messages."""
    shown = ", ".join(repr(x) for x in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"


class Scenario:
    """Where a check is: the connector, the check, and a description of the data and steps.

    Failures raised through it carry all three, so a message alone says what to reproduce.
    """

    def __init__(self, subject: str, check: str, data: str) -> None:
        self.subject = subject
        self.check = check
        self.data = data

    def _prefix(self) -> str:
        return f"{self.subject}: conformance check {self.check!r}"

    def fail(self, prop: str, detail: str) -> NoReturn:
        raise AssertionError(f"{self._prefix()}: {prop} violated: {detail}; scenario: {self.data}")

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Turn an exception the connector raises during ``what`` into a check failure that
        says where it happened (the original stays chained as the cause)."""
        try:
            yield
        except (AssertionError, CheckNotApplicable):
            raise
        except Exception as exc:
            raise AssertionError(
                f"{self._prefix()}: {what} raised {type(exc).__name__}: {exc}; "
                f"scenario: {self.data}"
            ) from exc

    def roundtrip(self, snapshots: list[list[Any]]) -> list[list[Any]]:
        """The snapshots as a restore sees them: pickled and unpickled, as checkpoint storage
        does. Unpicklable state would only fail in a job that writes checkpoints to disk."""
        try:
            restored: list[list[Any]] = pickle.loads(pickle.dumps(snapshots))
        except Exception as exc:
            self.fail(
                "picklable snapshot state", f"{type(exc).__name__}: {exc} on {sample(snapshots)}"
            )
        return restored


class Battery:
    """What both batteries share: named checks, ``run_check`` and ``check_all``."""

    CHECKS: ClassVar[tuple[str, ...]] = ()
    """The names of the checks, in the order ``check_all`` runs them (``check_<name>``)."""

    def run_check(self, name: str) -> None:
        """Run one check by name; ``CheckNotApplicable`` if it does not apply."""
        if name not in self.CHECKS:
            raise ValueError(f"unknown check {name!r}; choose from {', '.join(self.CHECKS)}")
        getattr(self, f"check_{name}")()

    def check_all(self) -> dict[str, str]:
        """Run every check; return each one's outcome (``"passed"`` or ``"skipped: why"``).

        All checks run even when one fails; then a single ``AssertionError`` lists every
        failure.
        """
        outcomes: dict[str, str] = {}
        failures: list[str] = []
        for name in self.CHECKS:
            try:
                self.run_check(name)
            except CheckNotApplicable as exc:
                outcomes[name] = f"skipped: {exc}"
            except AssertionError as exc:
                outcomes[name] = "failed"
                failures.append(str(exc))
            else:
                outcomes[name] = "passed"
        if failures:
            raise AssertionError(
                f"{len(failures)} of {len(self.CHECKS)} conformance checks failed:\n- "
                + "\n- ".join(failures)
            )
        return outcomes


def conformance_tests(
    suite: type[Battery],
    factory: Callable[..., Battery],
    *,
    known_failures: Mapping[str, str] | None = None,
) -> Callable[..., None]:
    """A pytest test function running each check of ``suite`` as its own parametrized case.

    ``factory`` builds the battery; its parameters are pytest fixtures (``tmp_path``,
    ``capsys``, ...) and are requested by the returned test. ``known_failures`` maps check
    names to the reason they fail; those cases are ``xfail(strict=True)``, so a fix shows up
    as an unexpected pass. Assign the result to a name starting with ``test_`` in a test
    module::

        def my_source_battery(tmp_path):
            return SourceConformance(make_source, write_files_under(tmp_path))

        test_my_source = conformance_tests(SourceConformance, my_source_battery)

    Checks that do not apply are skipped with the reason. Needs pytest (imported here only).
    """
    import pytest

    fixtures = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(factory).parameters.values()
        if p.default is inspect.Parameter.empty
    ]
    if any(p.name == "conformance_check" for p in fixtures):
        raise ValueError("the factory must not take a parameter named 'conformance_check'")
    failing = dict(known_failures or {})
    unknown = set(failing) - set(suite.CHECKS)
    if unknown:
        raise ValueError(f"known_failures names unknown checks: {sorted(unknown)}")
    cases = [
        pytest.param(name, marks=pytest.mark.xfail(reason=failing[name], strict=True))
        if name in failing
        else name
        for name in suite.CHECKS
    ]

    def test_conformance(conformance_check: str, **kwargs: Any) -> None:
        battery = factory(**kwargs)
        if not isinstance(battery, suite):
            raise TypeError(
                f"the factory returned {type(battery).__name__}, expected {suite.__name__}"
            )
        try:
            battery.run_check(conformance_check)
        except CheckNotApplicable as exc:
            pytest.skip(str(exc))

    check = inspect.Parameter("conformance_check", inspect.Parameter.KEYWORD_ONLY)
    # pytest reads fixture names from the signature: the factory's, plus the check parameter.
    test_conformance.__signature__ = inspect.Signature([check, *fixtures])  # type: ignore[attr-defined]
    marked: Callable[..., None] = pytest.mark.parametrize("conformance_check", cases)(
        test_conformance
    )
    return marked
