"""Kafka client security from the environment: validation, aiokafka options, Faust credentials.

A refused login and a failed TLS handshake against the real secured broker are covered in
tests/integration/test_secured_kafka.py."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from processor.errors import ConfigError
from processor.kafka_security import KafkaSecurity, check_credentials


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate and its key (PEM), made by openssl; also usable as a CA."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=msgkpi-test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return {"cert": str(cert), "key": str(key)}


def sasl_ssl_env(tmp_path: Path, ca_file: str, **extra: str) -> dict[str, str]:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    return {"MSGKPI_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "MSGKPI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "MSGKPI_KAFKA_SASL_USERNAME": "msgkpi",
            "MSGKPI_KAFKA_SASL_PASSWORD_FILE": str(password),
            "MSGKPI_KAFKA_SSL_CA_FILE": ca_file, **extra}


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    security = KafkaSecurity.from_env({})
    assert security.aiokafka_options() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None
    assert security.ssl_context() is None


def test_sasl_ssl_reads_the_password_file_and_verifies_the_broker(
        tmp_path: Path, tls_files: dict[str, str]) -> None:
    security = KafkaSecurity.from_env(sasl_ssl_env(tmp_path, tls_files["cert"]))
    options = security.aiokafka_options()
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "msgkpi", "sasl_plain_password": "s3cret"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_faust_gets_the_same_client_settings_as_aiokafka(
        tmp_path: Path, tls_files: dict[str, str]) -> None:
    security = KafkaSecurity.from_env(sasl_ssl_env(tmp_path, tls_files["cert"]))
    credentials = security.faust_credentials()
    assert isinstance(credentials, SASLCredentials)
    faust_options = dict(credentials_to_aiokafka_auth(credentials))
    ours = security.aiokafka_options()
    assert isinstance(faust_options.pop("ssl_context"), ssl.SSLContext)
    ours.pop("ssl_context")
    assert faust_options == ours


def test_sasl_plaintext_has_no_tls() -> None:
    security = KafkaSecurity.from_env({"MSGKPI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                       "MSGKPI_KAFKA_SASL_USERNAME": "u",
                                       "MSGKPI_KAFKA_SASL_PASSWORD": "p"})
    assert "ssl_context" not in security.aiokafka_options()
    faust_options = credentials_to_aiokafka_auth(security.faust_credentials())
    assert faust_options["security_protocol"] == "SASL_PLAINTEXT"
    assert faust_options["sasl_mechanism"] == "PLAIN"


def test_ssl_with_a_client_certificate(tls_files: dict[str, str]) -> None:
    security = KafkaSecurity.from_env({"MSGKPI_KAFKA_SECURITY_PROTOCOL": "SSL",
                                       "MSGKPI_KAFKA_SSL_CA_FILE": tls_files["cert"],
                                       "MSGKPI_KAFKA_SSL_CERT_FILE": tls_files["cert"],
                                       "MSGKPI_KAFKA_SSL_KEY_FILE": tls_files["key"]})
    assert set(security.aiokafka_options()) == {"security_protocol", "ssl_context"}
    credentials = security.faust_credentials()
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


@pytest.mark.parametrize(("env", "variable"), [
    ({"MSGKPI_KAFKA_SECURITY_PROTOCOL": "TLS"}, "MSGKPI_KAFKA_SECURITY_PROTOCOL"),
    ({"MSGKPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MSGKPI_KAFKA_SASL_MECHANISM": "GSSAPI",
      "MSGKPI_KAFKA_SASL_USERNAME": "u", "MSGKPI_KAFKA_SASL_PASSWORD": "p"},
     "MSGKPI_KAFKA_SASL_MECHANISM"),
    ({"MSGKPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MSGKPI_KAFKA_SASL_PASSWORD": "p"},
     "MSGKPI_KAFKA_SASL_USERNAME"),
    ({"MSGKPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MSGKPI_KAFKA_SASL_USERNAME": "u"},
     "MSGKPI_KAFKA_SASL_PASSWORD"),
    ({"MSGKPI_KAFKA_SASL_PASSWORD": "p", "MSGKPI_KAFKA_SASL_PASSWORD_FILE": "/etc/hostname"},
     "MSGKPI_KAFKA_SASL_PASSWORD"),
    ({"MSGKPI_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"},
     "MSGKPI_KAFKA_SASL_PASSWORD_FILE"),
    ({"MSGKPI_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "MSGKPI_KAFKA_SSL_CA_FILE"),
    ({"MSGKPI_KAFKA_SSL_CERT_FILE": "/etc/hostname"}, "MSGKPI_KAFKA_SSL_CERT_FILE"),
])
def test_a_wrong_setting_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        KafkaSecurity.from_env(env)
    assert raised.value.key == variable


def test_the_password_never_shows_in_repr_or_description(tmp_path: Path,
                                                         tls_files: dict[str, str]) -> None:
    security = KafkaSecurity.from_env(sasl_ssl_env(tmp_path, tls_files["cert"]))
    assert "s3cret" not in repr(security)
    assert security.describe() == "SASL_SSL SCRAM-SHA-512 as 'msgkpi'"


async def test_a_broker_that_does_not_answer_is_left_to_the_caller(
        tmp_path: Path, tls_files: dict[str, str]) -> None:
    security = KafkaSecurity.from_env(sasl_ssl_env(tmp_path, tls_files["cert"]))
    started = time.monotonic()
    await check_credentials("127.0.0.1:1", security, timeout_s=2.0)
    assert time.monotonic() - started < 3.0
