"""Print and logging sinks (seed §2.1). At-least-once: output is flushed on checkpoints.

Flink's print sink prefixes ``N> `` (the 1-based subtask index) when it runs with parallelism
> 1 and ``identifier:`` when given an identifier; this one does the same. Printing every record
is for development: ``sample`` prints a deterministic pseudo-random fraction, and
``LoggingSink`` sends records through ``logging`` so production log handling applies.
"""

from __future__ import annotations

import logging
import random
import sys
from typing import Any, ClassVar, TextIO

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext


def _check_sample(sample: float | None) -> float | None:
    if sample is not None and not (0.0 < sample <= 1.0):
        raise ValueError(f"sample must be in (0, 1], got {sample!r}")
    return sample


class _Sampler:
    """Keeps each record with probability ``rate``; seeded per subtask so runs repeat."""

    def __init__(self, rate: float | None, subtask: int) -> None:
        self.rate = rate
        self._rng = random.Random(0x5EED + subtask)

    def pick(self, values: list[Any]) -> list[Any]:
        rate = self.rate
        if rate is None or rate >= 1.0:
            return values
        r = self._rng.random
        return [v for v in values if r() < rate]


class PrintSink(Sink[Any]):
    """Writes ``str(record)`` lines to stdout (or stderr)."""

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_LEAST_ONCE}
    )

    def __init__(
        self, identifier: str | None = None, *, stderr: bool = False, sample: float | None = None
    ) -> None:
        self.identifier = identifier
        self.stderr = stderr
        self.sample = _check_sample(sample)

    def create_writer(self, ctx: WriterContext) -> SinkWriter[Any]:
        prefix = ""
        if self.identifier:
            prefix = f"{self.identifier}:"
        if ctx.parallelism > 1:
            prefix += f"{ctx.subtask_index + 1}> "
        elif self.identifier:
            prefix += " "
        return _PrintWriter(prefix, self.stderr, _Sampler(self.sample, ctx.subtask_index))

    def describe(self) -> str:
        return "Print to Std. Err" if self.stderr else "Print to Std. Out"


class _PrintWriter(SinkWriter[Any]):
    def __init__(self, prefix: str, stderr: bool, sampler: _Sampler) -> None:
        self._prefix = prefix
        self._stderr = stderr
        self._sampler = sampler

    def _stream(self) -> TextIO:
        # looked up on every write so redirection (pytest's capsys, contextlib) is honoured
        return sys.stderr if self._stderr else sys.stdout

    def write(self, values: list[Any], timestamps: list[int] | None) -> None:
        picked = self._sampler.pick(values)
        if picked:
            p = self._prefix
            self._stream().write("".join(f"{p}{v}\n" for v in picked))

    def flush(self, end_of_input: bool) -> None:
        self._stream().flush()


class LoggingSink(Sink[Any]):
    """Logs each (sampled) record at ``level`` on logger ``logger``."""

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_LEAST_ONCE}
    )

    def __init__(
        self, logger: str = "strom.sink", *, level: int | str = "INFO", sample: float | None = None
    ) -> None:
        self.logger = logger
        lvl = logging.getLevelName(level) if isinstance(level, str) else level
        if not isinstance(lvl, int):
            raise ValueError(f"unknown log level {level!r}")
        self.level = lvl
        self.sample = _check_sample(sample)

    def create_writer(self, ctx: WriterContext) -> SinkWriter[Any]:
        return _LogWriter(
            logging.getLogger(self.logger),
            self.level,
            ctx.subtask_index,
            _Sampler(self.sample, ctx.subtask_index),
        )

    def describe(self) -> str:
        return f"Log ({self.logger})"


class _LogWriter(SinkWriter[Any]):
    def __init__(self, logger: logging.Logger, level: int, subtask: int, sampler: _Sampler) -> None:
        self._logger = logger
        self._level = level
        self._subtask = subtask + 1
        self._sampler = sampler

    def write(self, values: list[Any], timestamps: list[int] | None) -> None:
        if not self._logger.isEnabledFor(self._level):
            return
        for v in self._sampler.pick(values):
            self._logger.log(self._level, "%d> %s", self._subtask, v)
