"""How msgkpi's Kafka clients reach a secured cluster: TLS, SASL (PLAIN or SCRAM), files.

One typed value, `KafkaSecurity`, is built from the environment once (`from_env`) and turned
into what each client needs: keyword arguments for aiokafka (`aiokafka_options`) and Faust's
`broker_credentials` (`faust_credentials`). `check_credentials` tells a wrong password or an
untrusted certificate apart from a broker that is merely down, so every command can stop with
one line naming the cause.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from processor.errors import ConfigError, MsgkpiError

__all__ = [
    "EXIT_KAFKA_AUTH",
    "MECHANISMS",
    "PROTOCOLS",
    "KafkaAuthFailed",
    "KafkaSecurity",
    "check_credentials",
]

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
EXIT_KAFKA_AUTH: Final = 77
"""Exit status (EX_NOPERM) of a command whose Kafka credentials or certificates were refused."""


class KafkaAuthFailed(MsgkpiError):
    """Kafka refused the credentials, or the TLS handshake failed; retrying will not help."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Security settings shared by every Kafka client of one process."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError("MSGKPI_KAFKA_SECURITY_PROTOCOL",
                              f"must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.uses_sasl:
            self._check_sasl()
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("MSGKPI_KAFKA_SSL_CERT_FILE",
                              "a client certificate needs its key (MSGKPI_KAFKA_SSL_KEY_FILE) "
                              "and the other way round")

    def _check_sasl(self) -> None:
        if self.sasl_mechanism not in MECHANISMS:
            raise ConfigError("MSGKPI_KAFKA_SASL_MECHANISM",
                              f"must be one of {', '.join(MECHANISMS)}, "
                              f"got {self.sasl_mechanism!r}")
        if not self.username:
            raise ConfigError("MSGKPI_KAFKA_SASL_USERNAME",
                              f"is required with {self.protocol}")
        if not self.password:
            raise ConfigError("MSGKPI_KAFKA_SASL_PASSWORD",
                              f"is required with {self.protocol} (or MSGKPI_KAFKA_SASL_"
                              "PASSWORD_FILE)")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        """Read MSGKPI_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_*; raise `ConfigError`."""
        return cls(
            protocol=env.get("MSGKPI_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper() or "PLAINTEXT",
            sasl_mechanism=env.get("MSGKPI_KAFKA_SASL_MECHANISM", "PLAIN").upper() or "PLAIN",
            username=_value_or_file(env, "MSGKPI_KAFKA_SASL_USERNAME"),
            password=_value_or_file(env, "MSGKPI_KAFKA_SASL_PASSWORD"),
            ca_file=_existing_file(env, "MSGKPI_KAFKA_SSL_CA_FILE"),
            cert_file=_existing_file(env, "MSGKPI_KAFKA_SSL_CERT_FILE"),
            key_file=_existing_file(env, "MSGKPI_KAFKA_SSL_KEY_FILE"),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (the system's CAs, or only `ca_file`), or None."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def faust_credentials(self) -> Any:
        """Faust's `broker_credentials`: None for PLAINTEXT."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.protocol == "SSL":
            return SSLCredentials(self.ssl_context())
        if self.uses_sasl:
            return SASLCredentials(username=self.username, password=self.password,
                                   ssl_context=self.ssl_context(),
                                   mechanism=self.sasl_mechanism)
        return None

    def describe(self) -> str:
        """For logs: protocol, mechanism and user, never the password."""
        if self.uses_sasl:
            return f"{self.protocol} {self.sasl_mechanism} as {self.username!r}"
        return self.protocol


def _value_or_file(env: Mapping[str, str], name: str) -> str | None:
    """NAME, or the content of the file NAME_FILE names (a mounted secret), stripped of the
    trailing newline; setting both is an error."""
    value, path = env.get(name) or None, env.get(f"{name}_FILE") or None
    if value is not None and path is not None:
        raise ConfigError(name, f"set either {name} or {name}_FILE, not both")
    if path is None:
        return value
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{name}_FILE", f"cannot read {path}: {exc.strerror or exc}") from None


def _existing_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name) or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(name, f"no such file: {path}")
    return path


async def check_credentials(bootstrap: str, security: KafkaSecurity,
                            timeout_s: float = 10.0) -> None:
    """Connect once to the first bootstrap server and authenticate; raise `KafkaAuthFailed`
    (one line naming user, bootstrap and cause) when the broker refuses the credentials or
    the TLS handshake fails. A broker that does not answer is not an error here: the callers
    have their own handling (retry, or exit 69) for that."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        KafkaError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    if security.protocol == "PLAINTEXT":
        return
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        async with asyncio.timeout(timeout_s):
            connection = await create_conn(host, int(port), client_id="msgkpi-auth-check",
                                           request_timeout_ms=int(timeout_s * 1000),
                                           **security.aiokafka_options())
    except (SaslAuthenticationFailed, AuthenticationFailedError,
            UnsupportedSaslMechanismError) as exc:
        raise KafkaAuthFailed(_auth_message(bootstrap, security, exc)) from None
    except ssl.SSLError as exc:
        raise KafkaAuthFailed(
            f"TLS handshake with Kafka at bootstrap {bootstrap} failed: {exc.reason or exc} "
            "(check MSGKPI_KAFKA_SSL_CA_FILE and the broker's certificate)") from None
    except (TimeoutError, OSError, KafkaError):
        return
    connection.close()


def _auth_message(bootstrap: str, security: KafkaSecurity, exc: Exception) -> str:
    detail = str(exc).split("\n")[0].strip() or type(exc).__name__
    return (f"Kafka authentication failed for user {security.username!r} at bootstrap "
            f"{bootstrap} ({security.protocol} {security.sasl_mechanism}): {detail}")
