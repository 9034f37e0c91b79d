"""Socket sink: serialized records sent to a TCP server (Flink's ``SocketClientSink``).

Guarantee: **at-least-once**, within what TCP can tell. Records are buffered and sent on every
``flush`` (each checkpoint and the end of input), so a checkpoint completes only after its
records were handed to the network. When a send fails the writer reconnects and sends the whole
unsent buffer again; bytes of that buffer that got through before the failure therefore arrive
twice (the batch in flight is duplicated, never dropped). Each resend starts on a fresh
connection at a record boundary, so the receiver sees whole records. When ``max_retries``
reconnects have failed the writer raises ``ConnectorError`` and the job fails; nothing is
silently dropped.

A plain socket has no acknowledgements: bytes the kernel accepted are "sent" although the peer
may crash before reading them. The writer checks before each send whether the peer has closed or
reset the connection and then reconnects first, which catches a server restart between flushes,
but a peer crashing with unread data in its buffers loses that data, as with Flink.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext
from strom.connectors.base.retry import ConstantBackoff, RetriesExhausted, RetryPolicy
from strom.connectors.socket._common import check_address, check_retries, check_seconds, endpoint
from strom.errors import ConnectorError
from strom.formats import SerializationError, SerializationSchema

__all__ = ["SocketSink"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# Without auto_flush, records are sent once this much is buffered (and on every flush): bounds
# memory between checkpoints and keeps syscalls few, like Flink's buffered output stream.
_SEND_THRESHOLD = 1 << 16


class SocketSink(Sink[T], Generic[T]):
    """Writes each record, serialized by ``serialization_schema``, to a TCP server.
    Guarantee: at-least-once.

    Args:
        host: server name or address.
        port: server port, ``0 < port < 65536``.
        serialization_schema: turns records into bytes (``serialize_batch`` is used when the
            schema has it, ``serialize`` otherwise).
        max_retries: reconnect-and-resend attempts per failed send (or failed connect); -1
            retries forever.
        retry_delay: seconds to wait before each retry.
        auto_flush: send after every batch instead of buffering until ``flush``.
        delimiter: bytes appended to every record (e.g. ``b"\\n"``); ``None`` appends nothing,
            as in Flink, so the schema must frame records itself.
        connect_timeout: seconds one connection attempt may take.
        send_timeout: seconds one send may block on a server that does not read (``None``:
            no limit); a timed-out send counts as a failure and is retried.

    Every subtask opens its own connection.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_LEAST_ONCE}
    )

    def __init__(
        self,
        host: str,
        port: int,
        serialization_schema: SerializationSchema[T],
        max_retries: int = 3,
        retry_delay: float = 0.5,
        auto_flush: bool = False,
        delimiter: bytes | None = None,
        *,
        connect_timeout: float = 5.0,
        send_timeout: float | None = 60.0,
    ) -> None:
        check_address(host, port)
        if not callable(getattr(serialization_schema, "serialize", None)) and not callable(
            getattr(serialization_schema, "serialize_batch", None)
        ):
            raise TypeError(
                "serialization_schema must have serialize() or serialize_batch(), got "
                f"{type(serialization_schema).__name__}"
            )
        if delimiter is not None:
            if not isinstance(delimiter, bytes | bytearray):
                raise TypeError(
                    f"delimiter must be bytes (e.g. b'\\n') or None, got {type(delimiter).__name__}"
                )
            if not delimiter:
                raise ValueError("delimiter must not be empty; use None for no delimiter")
        self.host = host
        self.port = port
        self.serialization_schema = serialization_schema
        self.max_retries = check_retries("max_retries", max_retries)
        self.retry_delay = check_seconds("retry_delay", retry_delay, allow_zero=True)
        self.auto_flush = bool(auto_flush)
        self.delimiter = bytes(delimiter) if delimiter is not None else None
        self.connect_timeout = check_seconds("connect_timeout", connect_timeout, allow_zero=False)
        self.send_timeout = (
            None
            if send_timeout is None
            else check_seconds("send_timeout", send_timeout, allow_zero=False)
        )

    def create_writer(self, ctx: WriterContext) -> SinkWriter[T]:
        return _SocketWriter(self, ctx)

    def describe(self) -> str:
        return f"Socket Sink {endpoint(self.host, self.port)}"


def _peer_gone(sock: socket.socket, timeout: float | None) -> bool:
    """True if the peer closed or reset the connection (checked without blocking).

    A send into a connection the peer already closed succeeds locally and the data is lost when
    the peer answers with a reset; looking first turns that loss into a reconnect.
    """
    # A socket with a timeout waits for readability before recv, hence non-blocking mode for
    # the peek and the send timeout restored afterwards.
    sock.setblocking(False)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: the connection is alive as far as we can tell
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)
    # b"" is EOF. Bytes the server sent us are ignored; they do not mean it is gone.
    return not data


class _SocketWriter(SinkWriter[T]):
    def __init__(self, sink: SocketSink[T], ctx: WriterContext) -> None:
        self._host = sink.host
        self._port = sink.port
        self._where = endpoint(sink.host, sink.port)
        self._schema = sink.serialization_schema
        self._delim = sink.delimiter
        self._auto_flush = sink.auto_flush
        self._connect_timeout = sink.connect_timeout
        self._send_timeout = sink.send_timeout
        self._policy = RetryPolicy(
            max_attempts=None if sink.max_retries < 0 else sink.max_retries + 1,
            backoff=ConstantBackoff(sink.retry_delay),
        )
        self._reconnects = ctx.metrics.counter("reconnects")
        self._bytes_out = ctx.metrics.counter("bytes_out")
        self._buf = bytearray()
        self._sock: socket.socket | None = None
        self._ever_connected = False

    def open(self, restored_state: list[Any] | None) -> None:
        open_schema = getattr(self._schema, "open", None)
        if callable(open_schema):
            open_schema()
        # Connect up front, so that a wrong address fails the job at start rather than at the
        # first checkpoint.
        try:
            self._policy.call(self._ensure_connected, on_retry=self._on_retry)
        except RetriesExhausted as exc:
            raise ConnectorError(
                f"socket sink cannot connect to {self._where} after {self._attempts(exc)}: "
                f"{type(exc.last_error).__name__}: {exc.last_error}"
            ) from exc.last_error

    def write(self, values: list[T], timestamps: list[int] | None) -> None:
        if not values:
            return
        payloads = self._serialize(values)
        buf, delim = self._buf, self._delim
        if delim is None:
            buf += b"".join(payloads)
        else:
            buf += delim.join(payloads)
            buf += delim
        if self._auto_flush or len(buf) >= _SEND_THRESHOLD:
            self._send_buffer()

    def flush(self, end_of_input: bool) -> None:
        if self._buf:
            self._send_buffer()

    def close(self) -> None:
        # Whatever is still buffered was never covered by a checkpoint (flush would have sent
        # it), so the restore replays it; sending here could block a failing task.
        self._buf.clear()
        self._drop_socket()

    # -- internals ------------------------------------------------------------------------------

    def _serialize(self, values: list[T]) -> list[bytes]:
        schema = self._schema
        try:
            batch = getattr(schema, "serialize_batch", None)
            if callable(batch):
                payloads: list[bytes] = batch(values)
                return payloads
            return [schema.serialize(v) for v in values]
        except SerializationError as err:
            if err.origin is None:
                err.origin = f"socket sink {self._where}"
            raise

    def _send_buffer(self) -> None:
        size = len(self._buf)
        try:
            self._policy.call(self._send_once, on_retry=self._on_retry)
        except RetriesExhausted as exc:
            raise ConnectorError(
                f"socket sink could not send {size} bytes to {self._where} after "
                f"{self._attempts(exc)}: {type(exc.last_error).__name__}: {exc.last_error}"
            ) from exc.last_error
        self._buf.clear()

    def _send_once(self) -> None:
        sock = self._ensure_connected()
        try:
            # sendall does not say how much got through before a failure, so a retry resends
            # the whole buffer: duplicates of the batch in flight, never a gap.
            sock.sendall(self._buf)
        except OSError:
            self._drop_socket()
            raise
        self._bytes_out.inc(len(self._buf))

    def _ensure_connected(self) -> socket.socket:
        sock = self._sock
        if sock is not None:
            if not _peer_gone(sock, self._send_timeout):
                return sock
            log.warning("socket sink: %s closed the connection; reconnecting", self._where)
            self._drop_socket()
        if self._ever_connected:
            self._reconnects.inc()
        sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
        try:
            # With auto_flush every batch is sent at once; Nagle would hold it back waiting
            # for the previous ACK. Keepalive notices a peer that vanished without a FIN.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        sock.settimeout(self._send_timeout)
        self._sock = sock
        self._ever_connected = True
        return sock

    def _on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        log.warning(
            "socket sink: attempt %d on %s failed (%s: %s); retrying in %g s",
            attempt,
            self._where,
            type(error).__name__,
            error,
            delay,
        )

    @staticmethod
    def _attempts(exc: RetriesExhausted) -> str:
        return f"{exc.attempts} attempt{'s' if exc.attempts != 1 else ''}"

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
