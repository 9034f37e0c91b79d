"""Connecting the recovery client (``protocol.py``) the way librdkafka would: TLS and SASL from
the same properties as the sink's producers.

Supported, with librdkafka's property names:

* ``security.protocol``: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL.
* TLS: ``ssl.ca.location`` (file, directory or ``probe``), ``ssl.ca.pem``,
  ``ssl.certificate.location`` / ``ssl.certificate.pem``, ``ssl.key.location`` /
  ``ssl.key.pem``, ``ssl.key.password``, ``enable.ssl.certificate.verification``,
  ``ssl.endpoint.identification.algorithm``.
* ``sasl.mechanism`` (or ``sasl.mechanisms``): PLAIN and SCRAM-SHA-256/512 (``sasl.username``,
  ``sasl.password``); OAUTHBEARER with a token from confluent-kafka's ``oauth_cb`` callable
  (given ``sasl.oauthbearer.config``, returning ``(token, expiry[, principal,
  extensions])``), from ``sasl.oauthbearer.method=oidc`` (client-credentials grant:
  ``sasl.oauthbearer.token.endpoint.url``, ``.client.id``, ``.client.secret``, ``.scope``,
  ``.extensions``; ``https.ca.location`` / ``https.ca.pem`` for the endpoint's TLS) or
  librdkafka's unsecured development token (``enable.sasl.oauthbearer.unsecure.jwt=true``
  with ``sasl.oauthbearer.config``).

Anything else — GSSAPI (Kerberos), PKCS#12 keystores, OpenSSL engines and providers, OIDC
JWT-bearer assertions or cloud metadata tokens — is reported by :func:`unsupported`, which the
sink calls when the job is built, so an exactly-once job that could not recover fails before
it runs rather than at its first restore. Secrets never appear in messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from strom.connectors.kafka.sink.protocol import (
    BrokerConnection,
    ProtocolError,
    UnsupportedSecurity,
)

__all__ = ["SUPPORTED", "connect", "servers", "unsupported"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
SUPPORTED = (
    "PLAINTEXT or SSL (CA, client certificate and key as files or PEM), SASL PLAIN, "
    "SCRAM-SHA-256/512 or OAUTHBEARER (oauth_cb, OIDC client credentials, or the unsecured "
    "development token)"
)
_UNSUPPORTED_SSL = {
    "ssl.keystore.location": "a PKCS#12 keystore (ssl.keystore.location)",
    "ssl.engine.location": "an OpenSSL engine (ssl.engine.location)",
    "ssl.engine.id": "an OpenSSL engine (ssl.engine.id)",
    "ssl.providers": "OpenSSL providers (ssl.providers)",
}
_CLIENT_CREDENTIALS = "client_credentials"


def _text(conf: Mapping[str, Any], name: str, default: str = "") -> str:
    value = conf.get(name)
    return default if value is None else str(value)


def _true(conf: Mapping[str, Any], name: str, default: bool) -> bool:
    value = conf.get(name)
    if value is None:
        return default
    return str(value).strip().lower() in ("true", "1", "yes")


def security_protocol(conf: Mapping[str, Any]) -> str:
    return _text(conf, "security.protocol", "plaintext").upper()


def mechanism(conf: Mapping[str, Any]) -> str:
    # librdkafka's default mechanism is GSSAPI; "sasl.mechanism" is its alias of the plural.
    return _text(conf, "sasl.mechanism", _text(conf, "sasl.mechanisms", "GSSAPI")).upper()


def servers(conf: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``bootstrap.servers`` as (host, port) pairs: scheme prefixes dropped, ``[v6]:port``
    understood, port 9092 when none is given."""
    out = []
    for item in str(conf["bootstrap.servers"]).split(","):
        item = item.strip().rsplit("://", 1)[-1]
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:  # a bare host, or a bare IPv6 address
            host, port = item, ""
        out.append((host or "localhost", int(port or 9092)))
    return out


def unsupported(conf: Mapping[str, Any]) -> str | None:
    """What in ``conf`` the recovery client cannot do (``None``: it can connect)."""
    protocol = security_protocol(conf)
    if protocol not in PROTOCOLS:
        return f"security.protocol {protocol}"
    if protocol in ("SSL", "SASL_SSL"):
        for name, what in _UNSUPPORTED_SSL.items():
            if conf.get(name):
                return what
    if not protocol.startswith("SASL"):
        return None
    mech = mechanism(conf)
    if mech == "GSSAPI":
        return "SASL mechanism GSSAPI (Kerberos)"
    if mech not in MECHANISMS:
        return f"SASL mechanism {mech}"
    if mech == "OAUTHBEARER":
        return _oauth_unsupported(conf)
    return None


def _oauth_unsupported(conf: Mapping[str, Any]) -> str | None:
    if callable(conf.get("oauth_cb")):
        return None
    method = _text(conf, "sasl.oauthbearer.method", "default").lower()
    if method == "oidc":
        grant = _text(conf, "sasl.oauthbearer.grant.type", _CLIENT_CREDENTIALS)
        if grant != _CLIENT_CREDENTIALS:
            return f"OAUTHBEARER OIDC grant type {grant}"
        metadata = _text(conf, "sasl.oauthbearer.metadata.authentication.type", "none").lower()
        if metadata != "none":
            return f"OAUTHBEARER tokens from {metadata} metadata"
        if not conf.get("sasl.oauthbearer.token.endpoint.url"):
            return "OAUTHBEARER OIDC without sasl.oauthbearer.token.endpoint.url"
        return None
    if _true(conf, "enable.sasl.oauthbearer.unsecure.jwt", False):
        return None
    return (
        "SASL mechanism OAUTHBEARER without a token source (oauth_cb, "
        "sasl.oauthbearer.method=oidc or enable.sasl.oauthbearer.unsecure.jwt)"
    )


# -- connecting -----------------------------------------------------------------------------


def connect(host: str, port: int, conf: Mapping[str, Any], timeout: float) -> BrokerConnection:
    """A connection to ``host:port`` with TLS and SASL as ``conf`` says."""
    problem = unsupported(conf)
    if problem is not None:
        raise UnsupportedSecurity(f"{problem} is not supported")
    protocol = security_protocol(conf)
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if protocol in ("SSL", "SASL_SSL"):
            sock = ssl_context(conf).wrap_socket(sock, server_hostname=host)
        conn = BrokerConnection(sock)
    except BaseException:
        sock.close()
        raise
    try:
        if protocol.startswith("SASL"):
            authenticate(conn, conf, timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def ssl_context(conf: Mapping[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    _load_ca(ctx, _text(conf, "ssl.ca.location"), _text(conf, "ssl.ca.pem"))
    cert_file, key_file = _text(conf, "ssl.certificate.location"), _text(conf, "ssl.key.location")
    cert_pem, key_pem = _text(conf, "ssl.certificate.pem"), _text(conf, "ssl.key.pem")
    password = conf.get("ssl.key.password")
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None, password)
    elif cert_pem:
        _load_pem_chain(ctx, cert_pem, key_pem, password)
    if not _true(conf, "enable.ssl.certificate.verification", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif _text(conf, "ssl.endpoint.identification.algorithm", "https").lower() == "none":
        ctx.check_hostname = False
    return ctx


def _load_ca(ctx: ssl.SSLContext, location: str, pem: str) -> None:
    if location and location != "probe":  # "probe": the system's CAs, loaded already
        if os.path.isdir(location):
            ctx.load_verify_locations(capath=location)
        else:
            ctx.load_verify_locations(cafile=location)
    if pem:
        ctx.load_verify_locations(cadata=pem)


def _load_pem_chain(ctx: ssl.SSLContext, cert: str, key: str, password: Any) -> None:
    # Python loads client certificates from files only: a private directory, removed at once.
    folder = tempfile.mkdtemp(prefix="strom-kafka-tls-")
    try:
        path = os.path.join(folder, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(cert.strip() + "\n" + (key.strip() + "\n" if key else ""))
        ctx.load_cert_chain(path, None, password)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- SASL -------------------------------------------------------------------------------------


def authenticate(conn: BrokerConnection, conf: Mapping[str, Any], timeout: float) -> None:
    mech = mechanism(conf)
    conn.sasl_handshake(mech)
    if mech == "PLAIN":
        user, password = _text(conf, "sasl.username"), _text(conf, "sasl.password")
        conn.sasl_authenticate(b"\0" + user.encode() + b"\0" + password.encode())
    elif mech.startswith("SCRAM-"):
        scram(
            conn.sasl_authenticate, mech, _text(conf, "sasl.username"), _text(conf, "sasl.password")
        )
    else:
        token, extensions = oauth_token(conf, timeout)
        oauthbearer(conn.sasl_authenticate, token, extensions)


def scram(send: Callable[[bytes], bytes], mech: str, user: str, password: str) -> None:
    """RFC 5802 SCRAM client exchange (no channel binding), as Kafka uses it."""
    algo = "sha256" if mech.endswith("256") else "sha512"
    name = user.replace("=", "=3D").replace(",", "=2C")
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={name},r={nonce}"
    server_first = send(f"n,,{first_bare}".encode()).decode()
    fields = _scram_fields(server_first)
    if not fields.get("r", "").startswith(nonce) or "s" not in fields or "i" not in fields:
        raise ProtocolError("SCRAM: the server's first message is malformed")
    salted = hashlib.pbkdf2_hmac(
        algo, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored = hashlib.new(algo, client_key).digest()
    final_bare = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(stored, auth_message, algo).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = _scram_fields(
        send(f"{final_bare},p={base64.b64encode(proof).decode()}".encode()).decode()
    )
    if "e" in final:
        raise ProtocolError(f"SCRAM: the server refused: {final['e']}")
    server_key = hmac.new(salted, b"Server Key", algo).digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, algo).digest()).decode()
    if final.get("v") != expected:
        raise ProtocolError("SCRAM: the server's signature does not verify")


def _scram_fields(message: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in message.split(",") if "=" in item)


def oauthbearer(send: Callable[[bytes], bytes], token: str, extensions: Mapping[str, str]) -> None:
    """RFC 7628 client response, as librdkafka builds it: ``n,,^Aauth=Bearer <token>^A``,
    one ``key=value^A`` per extension, a final ``^A``."""
    pairs = "".join(f"{k}={v}\x01" for k, v in extensions.items())
    answer = send(f"n,,\x01auth=Bearer {token}\x01{pairs}\x01".encode())
    if answer:
        # The server's error challenge (JSON, no token in it): acknowledging it ends the
        # exchange, and the broker then fails it with its own message.
        detail = answer.decode(errors="replace")
        try:
            send(b"\x01")
        except ProtocolError as exc:
            raise ProtocolError(
                f"SASL OAUTHBEARER authentication failed: {detail} ({exc})", exc.code
            ) from None
        raise ProtocolError(f"SASL OAUTHBEARER authentication failed: {detail}")


def oauth_token(conf: Mapping[str, Any], timeout: float) -> tuple[str, dict[str, str]]:
    """The bearer token and SASL extensions, from the source librdkafka would use."""
    callback = conf.get("oauth_cb")
    if callable(callback):
        answer = callback(conf.get("sasl.oauthbearer.config"))
        token = str(answer[0])
        extra = answer[3] if len(answer) > 3 and answer[3] else {}
        return token, {str(k): str(v) for k, v in dict(extra).items()}
    if _text(conf, "sasl.oauthbearer.method", "default").lower() == "oidc":
        return _oidc_token(conf, timeout), _extensions(_text(conf, "sasl.oauthbearer.extensions"))
    return unsecured_jwt(_text(conf, "sasl.oauthbearer.config"))


def _extensions(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _oidc_token(conf: Mapping[str, Any], timeout: float) -> str:
    url = _text(conf, "sasl.oauthbearer.token.endpoint.url")
    client = _text(conf, "sasl.oauthbearer.client.id")
    secret = _text(conf, "sasl.oauthbearer.client.secret")
    fields = {"grant_type": _CLIENT_CREDENTIALS}
    scope = _text(conf, "sasl.oauthbearer.scope")
    if scope:
        fields["scope"] = scope
    basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(fields).encode(),
        method="POST",
        headers={
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {basic}",
        },
    )
    context = None
    if url.lower().startswith("https:"):
        context = ssl.create_default_context()
        _load_ca(context, _text(conf, "https.ca.location"), _text(conf, "https.ca.pem"))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:
        # HTTPError's text is status and reason; neither the secret nor the token is in it.
        raise ProtocolError(f"OAUTHBEARER: no token from {url}: {exc}") from None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ProtocolError(f"OAUTHBEARER: the answer of {url} has no access_token")
    return token


def unsecured_jwt(config: str, now: float | None = None) -> tuple[str, dict[str, str]]:
    """librdkafka's unsecured development token from ``sasl.oauthbearer.config``
    (``principal=... [principalClaimName=...] [scope=a,b] [scopeClaimName=...]
    [lifeSeconds=...] [extension_<name>=...]``): an ``alg: none`` JWS, as librdkafka builds
    it."""
    values: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for item in config.split():
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise UnsupportedSecurity(f"sasl.oauthbearer.config: cannot read {key!r}")
        if key.startswith("extension_"):
            extensions[key[len("extension_") :]] = value
        else:
            values[key] = value
    principal = values.get("principal")
    if not principal:
        raise UnsupportedSecurity("sasl.oauthbearer.config has no principal=<value>")
    issued = time.time() if now is None else now
    life = int(values.get("lifeSeconds", "3600"))
    claims = (
        f'{{"{values.get("principalClaimName", "sub")}":"{principal}",'
        f'"iat":{issued:.3f},"exp":{issued + life:.3f}'
    )
    scopes = [s for s in dict.fromkeys(values.get("scope", "").split(",")) if s]
    if scopes:
        listed = ",".join(f'"{s}"' for s in scopes)
        claims += f',"{values.get("scopeClaimName", "scope")}":[{listed}]'
    claims += "}"
    body = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{body}.", extensions
