"""Socket text source: lines read from a TCP server (Flink's ``socketTextStream``).

Guarantee: **at-most-once**. A socket cannot be replayed: once bytes are read from it, the
server will not send them again, and the server does not know which lines a checkpoint covered.
After a failure and restore the source simply connects anew and reads what the server sends from
then on, so lines that were in flight are lost and none is read twice. The reader's state is
empty (``snapshot_state`` returns ``[]``).

Semantics follow Flink: connect, split the byte stream on ``delimiter``, emit decoded lines; when
the server closes the connection, reconnect after ``retry_delay`` while retries remain
(``max_retry=0``: end at once, ``-1``: retry forever, ``n``: at most *n* reconnects over the
reader's life, failed connection attempts included). A reader that never managed to connect fails
with ``ConnectionError`` once retries run out; one that did connect simply finishes.

The reader never blocks longer than ``ctx.max_poll_wait``: name resolution runs on a helper
thread, connecting and reading are non-blocking and driven from ``poll``, and ``wakeup``/
``close`` interrupt a waiting ``poll`` through a self-pipe. The reader is in ``_reader.py``, its
line splitting and decoding in ``_lines.py``.
"""

from __future__ import annotations

import codecs
from typing import ClassVar

from strom.connectors.base import DeliveryGuarantee, ReaderContext, Source, SourceReader
from strom.connectors.socket._common import check_address, check_retries, check_seconds, endpoint
from strom.connectors.socket._reader import SocketTextReader

__all__ = ["SocketTextSource"]


class SocketTextSource(Source[str]):
    """Reads delimiter-separated text lines from a TCP server. Guarantee: at-most-once.

    Args:
        host: server name or address.
        port: server port, ``0 < port < 65536``.
        delimiter: line separator, one or more characters. With ``"\\n"`` a trailing ``"\\r"``
            is stripped too, so CRLF lines work.
        max_retry: reconnects allowed after the connection ends or an attempt fails: 0 ends
            the stream when the server closes; -1 retries forever.
        retry_delay: seconds to wait before each reconnect.
        encoding: text encoding of the stream; it must be ASCII-compatible (lines are split on
            the encoded delimiter bytes, which is only sound for such encodings).
        connect_timeout: seconds one connection attempt may take.

    The source is not parallel (``max_parallelism = 1``): every subtask would open its own
    connection and most servers would send each of them everything.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_MOST_ONCE}
    )
    bounded = False
    max_parallelism = 1

    def __init__(
        self,
        host: str,
        port: int,
        delimiter: str = "\n",
        max_retry: int = 0,
        retry_delay: float = 1.0,
        encoding: str = "utf-8",
        connect_timeout: float = 5.0,
    ) -> None:
        check_address(host, port)
        if not isinstance(delimiter, str) or not delimiter:
            raise ValueError(f"delimiter must be a non-empty string, got {delimiter!r}")
        codecs.lookup(encoding)  # an unknown encoding fails when the job is built
        probe = "line\r\n" + delimiter
        if probe.encode(encoding) != probe.encode("utf-8") or not delimiter.encode(encoding):
            # UTF-16/32 add BOMs and let delimiter bytes match across character boundaries.
            raise ValueError(
                f"encoding {encoding!r} is not ASCII-compatible for delimiter {delimiter!r}; "
                "lines are split on bytes, use e.g. utf-8 or latin-1"
            )
        self.host = host
        self.port = port
        self.delimiter = delimiter
        self.max_retry = check_retries("max_retry", max_retry)
        self.retry_delay = check_seconds("retry_delay", retry_delay, allow_zero=True)
        self.encoding = encoding
        self.connect_timeout = check_seconds("connect_timeout", connect_timeout, allow_zero=False)

    def create_reader(self, ctx: ReaderContext) -> SourceReader[str]:
        return SocketTextReader(self, ctx)

    def describe(self) -> str:
        return f"Socket Stream {endpoint(self.host, self.port)}"
