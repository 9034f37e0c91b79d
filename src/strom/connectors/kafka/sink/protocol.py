"""A minimal Kafka wire-protocol client: just enough to commit a transaction by id.

librdkafka can only finish a transaction from the producer that began it; a new producer with
the same transactional id *aborts* it (``init_transactions``). After a crash, the exactly-once
sink must instead *commit* the transactions its last completed checkpoint recorded. Kafka's
``EndTxn`` request does that from any client that knows the transactional id, producer id and
epoch — what Flink does through reflection on the Java producer. This module encodes the few
requests involved — ``ApiVersions``, ``SaslHandshake``, ``SaslAuthenticate``,
``FindCoordinator``, ``EndTxn`` and, for the probe that aborts lingering transactions,
``InitProducerId`` — in non-flexible versions every broker since Kafka 2.x speaks (for
``InitProducerId`` the flexible versions 3-4 where the broker has them).
``security.py`` opens connections (TLS, SASL) with the producer's properties.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["ERROR_NAMES", "BrokerConnection", "ProtocolError", "UnsupportedSecurity"]

API_END_TXN, API_FIND_COORDINATOR, API_VERSIONS = 26, 10, 18
API_INIT_PRODUCER_ID, API_SASL_HANDSHAKE, API_SASL_AUTHENTICATE = 22, 17, 36
# Lowest and highest non-flexible version of each request this client encodes.
_OURS = {
    API_FIND_COORDINATOR: (1, 2),
    API_END_TXN: (0, 2),
    API_SASL_HANDSHAKE: (1, 1),
    API_SASL_AUTHENTICATE: (0, 1),
}
_CLIENT_ID = "strom-kafka-sink"
_FIND_TRANSACTION_COORDINATOR = 1  # FindCoordinator key type

ERROR_NAMES = {
    -1: "UNKNOWN_SERVER_ERROR",
    0: "NONE",
    7: "REQUEST_TIMED_OUT",
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE",
    16: "NOT_COORDINATOR",
    33: "UNSUPPORTED_SASL_MECHANISM",
    34: "ILLEGAL_SASL_STATE",
    35: "UNSUPPORTED_VERSION",
    47: "INVALID_PRODUCER_EPOCH",
    50: "INVALID_TRANSACTION_TIMEOUT",
    48: "INVALID_TXN_STATE",
    49: "INVALID_PRODUCER_ID_MAPPING",
    51: "CONCURRENT_TRANSACTIONS",
    53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    58: "SASL_AUTHENTICATION_FAILED",
    90: "PRODUCER_FENCED",
}


class ProtocolError(Exception):
    """The broker answered with an error code (``code``), or there was no usable answer
    (``code`` None: connection failed, closed, out of order)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class UnsupportedSecurity(ProtocolError):
    """The configured security protocol or SASL mechanism is not implemented here."""


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error {code}")


def _string(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _compact_string(s: str) -> bytes:
    data = s.encode()
    return _uvarint(len(data) + 1) + data


_NO_TAGS = b"\x00"  # an empty tagged-field section (flexible versions)


def _bytes(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.at : self.at + n].decode()
        self.at += n
        return text

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.at += self.uvarint()  # size, then the data

    def blob(self) -> bytes:
        n = self.take(">i")
        if n < 0:
            return b""
        data = self.data[self.at : self.at + n]
        self.at += n
        return data


class BrokerConnection:
    """One connection to one broker over a connected (and, for TLS, wrapped) socket; asks the
    broker's API versions first. Not thread-safe; use and close."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._correlation = 0
        self._versions: dict[int, tuple[int, int]] = {}
        self._versions = self._api_versions()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BrokerConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def find_coordinator(self, transactional_id: str) -> tuple[str, int]:
        body = _string(transactional_id) + struct.pack(">b", _FIND_TRANSACTION_COORDINATOR)
        r = _Reader(self._request(API_FIND_COORDINATOR, body))
        r.take(">i")  # throttle time
        code = r.take(">h")
        message = r.string()
        r.take(">i")  # node id
        host, port = r.string(), r.take(">i")
        if code:
            text = f"FindCoordinator: {error_name(code)} {message or ''}".strip()
            raise ProtocolError(text, code)
        return str(host), int(port)

    def end_txn(self, transactional_id: str, producer_id: int, epoch: int, commit: bool) -> int:
        """Send EndTxn; returns the error code (0 = done)."""
        body = _string(transactional_id) + struct.pack(">qh?", producer_id, epoch, commit)
        r = _Reader(self._request(API_END_TXN, body))
        r.take(">i")  # throttle time
        code: int = r.take(">h")
        return code

    def init_producer_id(
        self, transactional_id: str, transaction_timeout_ms: int
    ) -> tuple[int, int, int]:
        """Send InitProducerId — what ``init_transactions`` sends: it aborts a transaction left
        open under the id and bumps the epoch. Returns (error code, producer id, epoch).

        Versions 3-4 (flexible; some brokers answer nothing else correctly) when the broker
        has them, else 0-1."""
        low, high = self._versions.get(API_INIT_PRODUCER_ID, (0, -1))
        if high >= 3 and low <= 4:
            version = min(high, 4)
            body = (
                _compact_string(transactional_id)
                + struct.pack(">iqh", transaction_timeout_ms, -1, -1)
                + _NO_TAGS
            )
            r = _Reader(self._request(API_INIT_PRODUCER_ID, body, version, flexible=True))
        elif low <= 1 <= high or low == high == 0:
            body = _string(transactional_id) + struct.pack(">i", transaction_timeout_ms)
            r = _Reader(self._request(API_INIT_PRODUCER_ID, body, min(high, 1)))
        else:
            raise ProtocolError("the broker speaks no version of InitProducerId we know")
        r.take(">i")  # throttle time
        code: int = r.take(">h")
        producer_id: int = r.take(">q")
        epoch: int = r.take(">h")
        return code, producer_id, epoch

    def sasl_handshake(self, mechanism: str) -> None:
        r = _Reader(self._request(API_SASL_HANDSHAKE, _string(mechanism)))
        code = r.take(">h")
        if code:
            enabled = [r.string() for _ in range(max(0, r.take(">i")))]
            raise ProtocolError(
                f"SaslHandshake {mechanism}: {error_name(code)} (the broker offers "
                f"{', '.join(str(m) for m in enabled) or 'nothing'})",
                code,
            )

    def sasl_authenticate(self, data: bytes) -> bytes:
        """One SASL round; returns the server's bytes."""
        r = _Reader(self._request(API_SASL_AUTHENTICATE, _bytes(data)))
        code = r.take(">h")
        message = r.string()
        answer = r.blob()
        if code:
            # The broker's message says why (unknown user, bad password) without echoing it.
            raise ProtocolError(f"SASL authentication failed: {message or error_name(code)}", code)
        return answer

    # -- plumbing ---------------------------------------------------------------------------

    def _version(self, api: int) -> int:
        low, high = _OURS[api]
        theirs = self._versions.get(api)
        if theirs is None or theirs[0] > high or theirs[1] < low:
            raise ProtocolError(f"the broker does not speak a version of API {api} we know")
        return min(high, theirs[1])

    def _request(
        self, api: int, body: bytes, version: int | None = None, *, flexible: bool = False
    ) -> bytes:
        self._correlation += 1
        ver = self._version(api) if version is None else version
        header = struct.pack(">hhi", api, ver, self._correlation) + _string(_CLIENT_ID)
        if flexible:
            header += _NO_TAGS  # request header v2
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", self._read(4))
        data = self._read(size)
        (correlation,) = struct.unpack_from(">i", data)
        if correlation != self._correlation:
            raise ProtocolError("response out of order")
        if not flexible:
            return data[4:]
        r = _Reader(data)
        r.at = 4
        r.skip_tags()  # response header v1
        return data[r.at :]

    def _read(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self._sock.recv(n - len(chunks))
            if not chunk:
                raise ProtocolError("the broker closed the connection")
            chunks += chunk
        return bytes(chunks)

    def _api_versions(self) -> dict[int, tuple[int, int]]:
        r = _Reader(self._request(API_VERSIONS, b"", version=0))
        code = r.take(">h")
        if code:
            raise ProtocolError(f"ApiVersions: {error_name(code)}", code)
        out: dict[int, tuple[int, int]] = {}
        for _ in range(r.take(">i")):
            api, low, high = r.take(">h"), r.take(">h"), r.take(">h")
            out[api] = (low, high)
        return out
