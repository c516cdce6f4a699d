"""TLS contexts and TLS settings: modern defaults, and errors that name the key."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from skyrelay.config import ConfigError, TlsSettings, parse_config
from skyrelay.runtime.tls import client_context, server_context, shard_client_ssl
from tests.support.tlsfiles import make_ca, make_server_cert


def test_server_context_is_tls12_or_newer(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    files = make_server_cert(ca, tmp_path, "srv")
    context = server_context(str(files.cert), str(files.key), "edges[0]")
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.protocol is ssl.PROTOCOL_TLS_SERVER


def test_client_context_verifies_against_the_configured_ca(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    context = client_context(TlsSettings(ca=str(ca.path)))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1  # that CA only, not the system's store


def test_missing_files_name_the_key(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    files = make_server_cert(ca, tmp_path, "srv")
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"edges\[1\]\.tls_cert: cannot read .*nope\.pem"):
        server_context(missing, str(files.key), "edges[1]")
    with pytest.raises(ConfigError, match=r"shards\[0\]\.tls_key: cannot read"):
        server_context(str(files.cert), missing, "shards[0]")
    with pytest.raises(ConfigError, match=r"shards\[0\]\.tls_key: cannot read"):
        server_context(str(files.cert), str(tmp_path), "shards[0]")  # a directory
    with pytest.raises(ConfigError, match=r"tls\.ca: cannot read"):
        client_context(TlsSettings(ca=missing))


def test_bad_files_name_the_key(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    files = make_server_cert(ca, tmp_path, "srv")
    other = make_server_cert(ca, tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"edges\[0\]\.tls_cert: not a PEM certificate"):
        server_context(str(garbage), str(files.key), "edges[0]")
    with pytest.raises(ConfigError, match=r"edges\[0\]\.tls_key: .*matching tls_cert"):
        server_context(str(files.cert), str(other.key), "edges[0]")
    with pytest.raises(ConfigError, match=r"tls\.ca: not a PEM"):
        client_context(TlsSettings(ca=str(garbage)))


def test_plain_clusters_keep_aiohttp_defaults() -> None:
    config = parse_config({"shards": [{"id": "o0", "url": "http://127.0.0.1:9100"}]}, env={})
    assert shard_client_ssl(config) is True


SHARD = {"id": "o0", "url": "https://127.0.0.1:9100", "tls_cert": "c.pem", "tls_key": "k.pem"}


def test_tls_settings_are_parsed() -> None:
    config = parse_config(
        {
            "shards": [SHARD],
            "edges": [{"id": "e0", "tls_cert": "e.pem", "tls_key": "ek.pem"}],
            "tls": {"ca": "ca.pem", "require": True},
        },
        env={},
    )
    assert config.shards[0].tls and config.shards[0].tls_cert == "c.pem"
    assert config.edges[0].tls_key == "ek.pem"
    assert config.tls == TlsSettings(ca="ca.pem", require=True)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"shards": [{"id": "o0", "url": "https://h:1"}]}, r"shards\[0\]\.tls_cert: required"),
        ({"shards": [{**SHARD, "url": "http://h:1"}]}, r"shards\[0\]\.url: expected https"),
        ({"shards": [{**SHARD, "tls_key": ""}]}, r"shards\[0\]\.tls_key: set both"),
        (
            {"shards": [SHARD], "edges": [{"id": "e0", "tls_key": "k"}]},
            r"edges\[0\]\.tls_cert: set both",
        ),
        (
            {"shards": [SHARD, {"id": "o1", "url": "http://h:2"}], "tls": {"require": True}},
            r"shards\[1\]\.url: tls\.require is set",
        ),
        ({"shards": [SHARD], "tls": {"verify": False}}, r"tls\.verify: unknown setting"),
        ({"shards": [SHARD], "tls": {"require": "yes"}}, r"tls\.require: expected true"),
    ],
)
def test_bad_tls_settings_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_config(data, env={})
