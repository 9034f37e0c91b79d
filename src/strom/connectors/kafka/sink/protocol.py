"""A minimal Kafka wire-protocol client: just enough to commit a transaction by id.

librdkafka can only finish a transaction from the producer that began it; a new producer with
the same transactional id *aborts* it (``init_transactions``). After a crash, the exactly-once
sink must instead *commit* the transactions its last completed checkpoint recorded. Kafka's
``EndTxn`` request does that from any client that knows the transactional id, producer id and
epoch — what Flink does through reflection on the Java producer. This module sends it:
``ApiVersions`` → (SASL) → ``FindCoordinator`` → ``EndTxn``, with non-flexible request
versions every broker since Kafka 2.x speaks.

Security: ``security.protocol`` PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL with the SASL
mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, configured by the same librdkafka
properties as the producer. Other mechanisms (GSSAPI, OAUTHBEARER) raise
:class:`UnsupportedSecurity`. Secrets are never put in messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["ERROR_NAMES", "BrokerConnection", "ProtocolError", "UnsupportedSecurity"]

API_END_TXN, API_FIND_COORDINATOR, API_VERSIONS = 26, 10, 18
API_SASL_HANDSHAKE, API_SASL_AUTHENTICATE = 17, 36
# Highest non-flexible version of each request this client encodes, and the lowest.
_OURS = {API_FIND_COORDINATOR: (1, 2), API_END_TXN: (0, 2), API_SASL_AUTHENTICATE: (0, 1)}

ERROR_NAMES = {
    0: "NONE",
    7: "REQUEST_TIMED_OUT",
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE",
    16: "NOT_COORDINATOR",
    47: "INVALID_PRODUCER_EPOCH",
    48: "INVALID_TXN_STATE",
    49: "INVALID_PRODUCER_ID_MAPPING",
    51: "CONCURRENT_TRANSACTIONS",
    53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    58: "SASL_AUTHENTICATION_FAILED",
    90: "PRODUCER_FENCED",
}


class ProtocolError(Exception):
    """The broker answered with an error code, or the connection failed."""

    def __init__(self, message: str, code: int = -1) -> None:
        super().__init__(message)
        self.code = code


class UnsupportedSecurity(ProtocolError):
    """The configured security protocol or SASL mechanism is not implemented here."""


def _string(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    data = s.encode()
    return struct.pack(">h", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.at : self.at + n].decode()
        self.at += n
        return text

    def blob(self) -> bytes:
        n = self.take(">i")
        if n < 0:
            return b""
        data = self.data[self.at : self.at + n]
        self.at += n
        return data


def _ssl_context(conf: Mapping[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
    if conf.get("ssl.ca.pem"):
        ctx.load_verify_locations(cadata=str(conf["ssl.ca.pem"]))
    if conf.get("ssl.certificate.location"):
        ctx.load_cert_chain(
            conf["ssl.certificate.location"],
            conf.get("ssl.key.location"),
            conf.get("ssl.key.password"),
        )
    if str(conf.get("enable.ssl.certificate.verification", "true")).lower() == "false":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif str(conf.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        ctx.check_hostname = False
    return ctx


class BrokerConnection:
    """One authenticated connection to one broker. Not thread-safe; use and close."""

    def __init__(self, host: str, port: int, conf: Mapping[str, Any], timeout: float) -> None:
        protocol = str(conf.get("security.protocol", "plaintext")).upper()
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise UnsupportedSecurity(f"security.protocol {protocol} is not supported")
        self._correlation = 0
        self._versions: dict[int, tuple[int, int]] = {}
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if protocol in ("SSL", "SASL_SSL"):
                sock = _ssl_context(conf).wrap_socket(sock, server_hostname=host)
            self._sock = sock
            self._versions = self._api_versions()
            if protocol.startswith("SASL"):
                self._authenticate(conf)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BrokerConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def find_coordinator(self, transactional_id: str) -> tuple[str, int]:
        r = _Reader(self._request(API_FIND_COORDINATOR, _string(transactional_id) + b"\x01"))
        r.take(">i")  # throttle time
        code = r.take(">h")
        message = r.string()
        r.take(">i")  # node id
        host, port = r.string(), r.take(">i")
        if code:
            raise ProtocolError(f"FindCoordinator: {_name(code)} {message or ''}".strip(), code)
        return str(host), int(port)

    def end_txn(self, transactional_id: str, producer_id: int, epoch: int, commit: bool) -> int:
        """Send EndTxn; returns the error code (0 = done)."""
        body = _string(transactional_id) + struct.pack(">qh?", producer_id, epoch, commit)
        r = _Reader(self._request(API_END_TXN, body))
        r.take(">i")
        code: int = r.take(">h")
        return code

    # -- plumbing ---------------------------------------------------------------------------

    def _version(self, api: int) -> int:
        low, high = _OURS[api]
        theirs = self._versions.get(api)
        if theirs is None or theirs[0] > high or theirs[1] < low:
            raise ProtocolError(f"the broker does not speak a version of API {api} we know")
        return min(high, theirs[1])

    def _request(self, api: int, body: bytes, version: int | None = None) -> bytes:
        self._correlation += 1
        ver = self._version(api) if version is None else version
        header = struct.pack(">hhi", api, ver, self._correlation) + _string("strom-kafka-sink")
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", self._read(4))
        data = self._read(size)
        (correlation,) = struct.unpack_from(">i", data)
        if correlation != self._correlation:
            raise ProtocolError("response out of order")
        return data[4:]

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
            raise ProtocolError(f"ApiVersions: {_name(code)}", code)
        out: dict[int, tuple[int, int]] = {}
        for _ in range(r.take(">i")):
            api, low, high = r.take(">h"), r.take(">h"), r.take(">h")
            out[api] = (low, high)
        return out

    def _authenticate(self, conf: Mapping[str, Any]) -> None:
        mechanism = str(conf.get("sasl.mechanism", conf.get("sasl.mechanisms", "GSSAPI")))
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise UnsupportedSecurity(f"SASL mechanism {mechanism} is not supported")
        r = _Reader(self._request(API_SASL_HANDSHAKE, _string(mechanism), version=1))
        code = r.take(">h")
        if code:
            raise ProtocolError(f"SaslHandshake {mechanism}: {_name(code)}", code)
        user = str(conf.get("sasl.username", ""))
        password = str(conf.get("sasl.password", ""))
        if mechanism == "PLAIN":
            self._sasl_round(b"\0" + user.encode() + b"\0" + password.encode())
            return
        _scram(self._sasl_round, mechanism, user, password)

    def _sasl_round(self, data: bytes) -> bytes:
        r = _Reader(self._request(API_SASL_AUTHENTICATE, struct.pack(">i", len(data)) + data))
        code = r.take(">h")
        message = r.string()
        answer = r.blob()
        if code:
            # The broker's message says why (unknown user, bad password) without echoing it.
            raise ProtocolError(f"SASL authentication failed: {message or _name(code)}", code)
        return answer


def _scram(send: Any, mechanism: str, user: str, password: str) -> None:
    """RFC 5802 SCRAM client exchange (no channel binding), as Kafka uses it."""
    algo = "sha256" if mechanism.endswith("256") else "sha512"
    name = user.replace("=", "=3D").replace(",", "=2C")
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={name},r={nonce}"
    server_first = send(f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    if not fields.get("r", "").startswith(nonce):
        raise ProtocolError("SCRAM: the server nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac(
        algo, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored = hashlib.new(algo, client_key).digest()
    final_bare = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(stored, auth_message, algo).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = send(f"{final_bare},p={base64.b64encode(proof).decode()}".encode()).decode()
    server_key = hmac.new(salted, b"Server Key", algo).digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, algo).digest()).decode()
    if dict(item.split("=", 1) for item in server_final.split(",")).get("v") != expected:
        raise ProtocolError("SCRAM: the server's signature does not verify")


def _name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error {code}")
