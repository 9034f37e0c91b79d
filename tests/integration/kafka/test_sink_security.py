"""The exactly-once sink's recovery client (``sink/protocol.py``, ``sink/security.py``,
``sink/committer.py``) against a loopback stand-in broker (``sink_helpers.FakeBroker``).

Neither test broker can check SASL here: noida-db has none, and Tansu 0.6 offers SCRAM and
OAUTHBEARER only with users and token validation this suite cannot set up. So the stand-in
checks the bytes: PLAIN, SCRAM (a real server-side verification), the OAUTHBEARER token
sources librdkafka knows, TLS (server and client certificates), and how the committer reads
EndTxn answers. No test here starts a real broker.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sink_helpers import FakeBroker, scram_server

from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink import KafkaSink, KafkaTransaction
from strom.connectors.kafka.sink.committer import Committer, abort_lineage
from strom.connectors.kafka.sink.security import servers, unsecured_jwt
from strom.errors import InvalidJobError

SECRET = "pw-very-secret-4711"
TXN = KafkaTransaction("job-0-3", lineage=0, seq=3, producer_id=1234, epoch=2, records=7)


def commit(broker: FakeBroker, **props: Any) -> None:
    conf = {"bootstrap.servers": broker.bootstrap, **props}
    Committer(conf, 30.0, "Kafka sink test[0]").commit(TXN)


@contextmanager
def fails_fast(match: str | None = None) -> Iterator[pytest.ExceptionInfo[KafkaSinkError]]:
    """A refusal that retrying cannot cure fails at once, not after the 30 s commit timeout."""
    started = time.monotonic()
    with pytest.raises(KafkaSinkError, match=match) as info:
        yield info
    assert time.monotonic() - started < 10


def ok(_state: dict[str, Any], _data: bytes) -> tuple[int, str | None, bytes]:
    return 0, None, b""


# -- SASL -----------------------------------------------------------------------------------


def test_plain_sends_user_and_password_then_commits() -> None:
    with FakeBroker(sasl={"PLAIN": ok}) as broker:
        commit(
            broker,
            **{
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "alice",
                "sasl.password": SECRET,
            },
        )
    assert broker.sasl_received == [b"\0alice\0" + SECRET.encode()]
    assert broker.end_txns == [("job-0-3", 1234, 2, True)]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_exchange_verifies_on_both_sides(mechanism: str) -> None:
    props = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,  # librdkafka's own spelling
        "sasl.username": "alice",
        "sasl.password": SECRET,
    }
    with FakeBroker(sasl={mechanism: scram_server("alice", SECRET, mechanism)}) as broker:
        commit(broker, **props)
        assert broker.end_txns == [("job-0-3", 1234, 2, True)]
        with fails_fast("invalid credentials") as info:
            commit(broker, **{**props, "sasl.password": "wrong-" + SECRET})
    assert SECRET not in str(info.value)
    assert len(broker.end_txns) == 1  # nothing is committed without authentication


def test_unknown_mechanism_on_the_broker_names_what_it_offers() -> None:
    with FakeBroker(sasl={"SCRAM-SHA-512": ok}) as broker, fails_fast() as info:
        commit(
            broker,
            **{
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "u",
                "sasl.password": SECRET,
            },
        )
    assert "UNSUPPORTED_SASL_MECHANISM" in str(info.value)
    assert "SCRAM-SHA-512" in str(info.value)


def test_oauthbearer_token_from_oauth_cb_with_extensions() -> None:
    asked: list[Any] = []

    def oauth_cb(config: Any) -> tuple[str, float, str, dict[str, str]]:
        asked.append(config)
        return "tok.en.x", 4e9, "alice", {"logicalCluster": "lkc-1", "poolId": "p"}

    with FakeBroker(sasl={"OAUTHBEARER": ok}) as broker:
        commit(
            broker,
            **{
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER",
                "sasl.oauthbearer.config": "scope=kafka",
                "oauth_cb": oauth_cb,
            },
        )
    assert asked == ["scope=kafka"]
    # RFC 7628 as librdkafka builds it: gs2 header, auth, one kvpair per extension, final ^A
    assert broker.sasl_received == [
        b"n,,\x01auth=Bearer tok.en.x\x01logicalCluster=lkc-1\x01poolId=p\x01\x01"
    ]
    assert len(broker.end_txns) == 1


def test_oauthbearer_unsecured_jwt_like_librdkafka() -> None:
    config = "principal=alice scope=read,write,read lifeSeconds=60 extension_traceId=abc"
    with FakeBroker(sasl={"OAUTHBEARER": ok}) as broker:
        commit(
            broker,
            **{
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER",
                "enable.sasl.oauthbearer.unsecure.jwt": "true",
                "sasl.oauthbearer.config": config,
            },
        )
    (sent,) = broker.sasl_received
    assert sent.startswith(b"n,,\x01auth=Bearer ")
    assert sent.endswith(b"\x01traceId=abc\x01\x01")
    token = sent.split(b"auth=Bearer ")[1].split(b"\x01")[0].decode()
    header, claims, signature = token.split(".")
    assert signature == ""
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "none"}
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert body["sub"] == "alice"
    assert body["scope"] == ["read", "write"]
    assert body["exp"] - body["iat"] == pytest.approx(60)
    # the same token bytes librdkafka's builder produces for a given clock
    token2, ext = unsecured_jwt("principal=bob principalClaimName=user", now=1549251467.546)
    assert ext == {}
    assert base64.urlsafe_b64decode(token2.split(".")[1] + "==") == (
        b'{"user":"bob","iat":1549251467.546,"exp":1549255067.546}'
    )


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            seen.append({"auth": self.headers["Authorization"], "form": form})
            body = json.dumps({"access_token": "oidc-token", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", seen
    finally:
        server.shutdown()
        server.server_close()


def test_oauthbearer_oidc_client_credentials(
    token_endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = token_endpoint
    with FakeBroker(sasl={"OAUTHBEARER": ok}) as broker:
        commit(
            broker,
            **{
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER",
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": url,
                "sasl.oauthbearer.client.id": "job-client",
                "sasl.oauthbearer.client.secret": SECRET,
                "sasl.oauthbearer.scope": "kafka write",
                "sasl.oauthbearer.extensions": "logicalCluster=lkc-9",
            },
        )
    (request,) = seen
    assert request["auth"] == "Basic " + base64.b64encode(f"job-client:{SECRET}".encode()).decode()
    assert request["form"] == {"grant_type": ["client_credentials"], "scope": ["kafka write"]}
    assert broker.sasl_received == [
        b"n,,\x01auth=Bearer oidc-token\x01logicalCluster=lkc-9\x01\x01"
    ]


def test_oauthbearer_rejection_reports_the_broker_status_not_the_token() -> None:
    def reject(state: dict[str, Any], data: bytes) -> tuple[int, str | None, bytes]:
        if data == b"\x01":
            return 58, "Authentication failed: invalid token", b""
        return 0, None, b'{"status":"invalid_token"}'

    with FakeBroker(sasl={"OAUTHBEARER": reject}) as broker, fails_fast() as info:
        commit(
            broker,
            **{
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER",
                "oauth_cb": lambda _cfg: (SECRET, 4e9),
            },
        )
    text = str(info.value)
    assert "invalid_token" in text
    assert SECRET not in text
    assert broker.sasl_received[-1] == b"\x01"  # the client acknowledged the error challenge
    assert broker.end_txns == []


# -- TLS ------------------------------------------------------------------------------------


def _certificate(name: str, issuer: Any = None) -> tuple[bytes, bytes, Any]:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_name, signer_key = (subject, key) if issuer is None else issuer
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(signer_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, key_pem, (subject, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all by that CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca_pem, _ca_key, ca = _certificate("strom test CA")
    server_pem, server_key, _ = _certificate("127.0.0.1", issuer=ca)
    client_pem, client_key, _ = _certificate("sink-client", issuer=ca)
    files = {
        "ca": ca_pem,
        "server": server_pem,
        "server_key": server_key,
        "client": client_pem,
        "client_key": client_key,
    }
    out: dict[str, Any] = {}
    for name, data in files.items():
        path = folder / f"{name}.pem"
        path.write_bytes(data)
        out[name] = path
        out[f"{name}_pem"] = data.decode()
    return out


def server_tls(pki: dict[str, Any], client_certificates: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server"], pki["server_key"])
    if client_certificates:
        ctx.load_verify_locations(cafile=pki["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_ssl_verifies_the_broker_against_the_configured_ca(pki: dict[str, Any]) -> None:
    with FakeBroker(ssl_context=server_tls(pki)) as broker:
        commit(broker, **{"security.protocol": "SSL", "ssl.ca.location": str(pki["ca"])})
        commit(broker, **{"security.protocol": "ssl", "ssl.ca.pem": pki["ca_pem"]})
        assert len(broker.end_txns) == 2
        # a CA that did not sign the broker's certificate: refused, nothing committed
        with fails_fast("CERTIFICATE_VERIFY_FAILED"):
            commit(broker, **{"security.protocol": "SSL", "ssl.ca.location": str(pki["client"])})
        # verification off (librdkafka's enable.ssl.certificate.verification=false)
        commit(
            broker,
            **{"security.protocol": "SSL", "enable.ssl.certificate.verification": "false"},
        )
    assert len(broker.end_txns) == 3


def test_sasl_ssl_with_client_certificate_as_pem(pki: dict[str, Any]) -> None:
    tls = server_tls(pki, client_certificates=True)
    mechanism = "SCRAM-SHA-256"
    with FakeBroker(ssl_context=tls, sasl={mechanism: scram_server("u", SECRET, mechanism)}) as b:
        commit(
            b,
            **{
                "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(pki["ca"]),
                "ssl.certificate.pem": pki["client_pem"],
                "ssl.key.pem": pki["client_key_pem"],
                "sasl.mechanism": mechanism,
                "sasl.username": "u",
                "sasl.password": SECRET,
            },
        )
        assert b.end_txns == [("job-0-3", 1234, 2, True)]
        # without a client certificate the broker refuses the handshake
        with fails_fast():
            commit(
                b,
                **{
                    "security.protocol": "SASL_SSL",
                    "ssl.ca.location": str(pki["ca"]),
                    "sasl.mechanism": mechanism,
                    "sasl.username": "u",
                    "sasl.password": SECRET,
                },
            )
    assert len(b.end_txns) == 1


# -- how the committer reads EndTxn answers ------------------------------------------------


def test_transient_answers_are_retried_then_the_commit_succeeds() -> None:
    with FakeBroker(end_txn_codes=[51, 15, 0]) as broker:  # CONCURRENT_TRANSACTIONS, ...
        commit(broker)
    assert [t[3] for t in broker.end_txns] == [True, True, True]


@pytest.mark.parametrize(
    ("code", "name"), [(90, "PRODUCER_FENCED"), (47, "INVALID_PRODUCER_EPOCH")]
)
def test_a_fenced_pending_transaction_is_reported_lost(code: int, name: str) -> None:
    # Kafka bumps the epoch when it aborts a transaction on timeout: committing the recorded
    # epoch then answers PRODUCER_FENCED — the records are gone, which must not pass quietly.
    with FakeBroker(end_txn_codes=[code]) as broker, fails_fast() as info:
        commit(broker)
    assert name in str(info.value)
    assert "7 records are lost" in str(info.value)


def test_an_expired_transactional_id_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="strom.connectors.kafka.sink")
    with FakeBroker(end_txn_codes=[49]) as broker:
        commit(broker)
    assert "INVALID_PRODUCER_ID_MAPPING" in caplog.text


def test_one_connection_when_the_bootstrap_server_is_the_coordinator() -> None:
    with FakeBroker() as coordinator:
        with FakeBroker() as here:
            commit(here)
            assert here.connections == 1
            assert [api for api, _v in here.requests] == [18, 10, 26]
        with FakeBroker(coordinator=("127.0.0.1", coordinator.port)) as elsewhere:
            commit(elsewhere)
            assert [api for api, _v in elsewhere.requests] == [18, 10]
        assert coordinator.end_txns == [("job-0-3", 1234, 2, True)]


@pytest.mark.parametrize(("versions", "used"), [((0, 4), 4), ((0, 1), 1), ((0, 2), 1)])
def test_the_lingering_probe_walks_up_to_a_never_used_id(
    versions: tuple[int, int], used: int
) -> None:
    # ids 0-2 were used (1 still open: the coordinator answers CONCURRENT_TRANSACTIONS while
    # it aborts it), 3 was never used (epoch 0): the probe stops there
    answers = {
        "job-0-0": [(0, 1)],
        "job-0-1": [(51, -1), (51, -1), (0, 2)],
        "job-0-2": [(0, 5)],
        "job-0-3": [(0, 0)],
    }
    with FakeBroker(init_producer_id=answers, init_producer_id_versions=versions) as broker:
        conf = {"bootstrap.servers": broker.bootstrap}
        assert abort_lineage(conf, "job", 0, 0, 10.0, "test") == 3
    assert [tid for tid, _v in broker.initialized] == [
        "job-0-0",
        "job-0-1",
        "job-0-1",
        "job-0-1",
        "job-0-2",
        "job-0-3",
    ]
    assert {v for _tid, v in broker.initialized} == {used}  # flexible v3+ where offered
    assert broker.connections == 1  # one connection for the whole probe


def test_bootstrap_server_lists() -> None:
    conf = {"bootstrap.servers": "SASL_SSL://b1:9093, b2,[::1]:9094,127.0.0.1:9095"}
    assert servers(conf) == [("b1", 9093), ("b2", 9092), ("::1", 9094), ("127.0.0.1", 9095)]


# -- what cannot be recovered fails when the job is built ------------------------------------


def eo_sink(**props: Any) -> KafkaSink[str]:
    return KafkaSink(
        "127.0.0.1:9",
        "t",
        delivery_guarantee="exactly_once",
        transactional_id_prefix="p",
        properties=props,
    )


@pytest.mark.parametrize(
    ("props", "named"),
    [
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI"}, "GSSAPI (Kerberos)"),
        ({"security.protocol": "SASL_PLAINTEXT"}, "GSSAPI"),  # librdkafka's default mechanism
        (
            {"security.protocol": "SSL", "ssl.keystore.location": "/k.p12"},
            "ssl.keystore.location",
        ),
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}, "token source"),
        (
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "OAUTHBEARER",
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": "https://idp/token",
                "sasl.oauthbearer.grant.type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            },
            "jwt-bearer",
        ),
    ],
)
def test_unsupported_security_fails_an_exactly_once_job_at_build_time(
    props: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidJobError) as info:
        eo_sink(**props, **{"sasl.password": SECRET})
    text = str(info.value)
    assert named in text
    assert "at_least_once" in text  # the alternative is named
    assert SECRET not in text
    # the guarantees that never recover anything are not affected
    KafkaSink("127.0.0.1:9", "t", properties=props)


def test_supported_security_builds() -> None:
    eo_sink(**{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"})
    eo_sink(
        **{
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": lambda _cfg: ("t", 1.0),
        }
    )
    eo_sink(
        **{
            "security.protocol": "SSL",
            "ssl.certificate.location": "/c.pem",
            "ssl.key.location": "/k.pem",
        }
    )


def test_unsupported_security_at_recovery_of_a_lowered_guarantee_names_the_mechanism(
    tmp_path: Path,
) -> None:
    # An at-least-once sink restored from an exactly-once checkpoint still owes its commits;
    # it is built without the check (it usually recovers nothing), so the restore says why.
    from strom.testing import SinkWriterHarness

    sink: KafkaSink[str] = KafkaSink(
        "127.0.0.1:9",
        "t",
        properties={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "GSSAPI"},
    )
    with pytest.raises(KafkaSinkError, match="GSSAPI"):
        SinkWriterHarness(sink, restored_state=[[(1, TXN)]])
