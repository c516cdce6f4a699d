"""TLS contexts for every listener and every link between processes, built in one place so
they all share the same defaults: TLS 1.2 or newer, the ssl module's modern ciphers,
certificates and host names verified on the client side.

Files are read once, at start-up; a file that is missing, unreadable or not what it should be
is a ``ConfigError`` naming the config key, so the process stops with a clear message.
"""

from __future__ import annotations

import ssl

from skyrelay.config import ClusterConfig, ConfigError, TlsSettings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def _readable(path: str, key: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def _no_password() -> bytes:
    # An encrypted key would make OpenSSL prompt on the terminal; fail instead.
    return b""


def server_context(
    cert: str, key: str, entry: str, clients: TlsSettings | None = None
) -> ssl.SSLContext:
    """The context a listener serves TLS with; ``entry`` (e.g. ``edges[0]``) names the keys
    in errors. With ``clients`` (a shard's listener), a client certificate is asked for and,
    when one is shown, verified against ``tls.ca`` (or the system's store): links need one,
    health checks and scrapes do not."""
    _readable(cert, f"{entry}.tls_cert")
    _readable(key, f"{entry}.tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    try:
        ssl.create_default_context(cafile=cert)
    except ssl.SSLError as exc:
        raise ConfigError(f"{entry}.tls_cert: not a PEM certificate: {cert} ({exc})") from None
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{entry}.tls_key: not an unencrypted PEM key matching tls_cert: {key} ({exc})"
        ) from None
    if clients is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        if clients.ca:
            _readable(clients.ca, "tls.ca")
            context.load_verify_locations(cafile=clients.ca)
        else:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context links and health checks connect to https:// shard URLs with: the server's
    certificate must chain to ``tls.ca`` (or the system's trust store) and name its host."""
    if settings.ca:
        _readable(settings.ca, "tls.ca")
    try:
        context = ssl.create_default_context(cafile=settings.ca or None)
    except ssl.SSLError as exc:
        raise ConfigError(f"tls.ca: not a PEM certificate bundle: {settings.ca} ({exc})") from None
    context.minimum_version = MINIMUM_VERSION
    return context


def shard_client_ssl(config: ClusterConfig, cert: str = "", key: str = "") -> ssl.SSLContext | bool:
    """What links to the shards pass to aiohttp: a verifying context when any shard (or a
    configured CA) asks for TLS, showing this process's own certificate (``cert``, ``key``)
    as its client certificate where it has one; else aiohttp's default."""
    if config.tls.ca or any(shard.tls for shard in config.shards):
        context = client_context(config.tls)
        if cert and key:
            context.load_cert_chain(cert, key, password=_no_password)
        return context
    return True
