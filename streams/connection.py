"""How every client the project creates reaches the broker: addresses, kind, security.

A :class:`Connection` is built from a URL (``kafka://h:p,h:p`` for Apache
Kafka, ``tansu://h:p`` for the embedded Tansu broker), a ``host:port``
string or a list of them (Kafka), and optional :class:`Security`. Its
:meth:`~Connection.client` and :meth:`~Connection.producer` give the keyword
arguments of aiokafka's clients, so the device and skill SDKs, the CLI tools
and the worker all connect the same way.

Per-broker differences live here and nowhere else:

* Producers on Kafka use ``acks=all`` with idempotence (a retried send is
  written once). Tansu 0.6.0's in-memory engine answers ``InitProducerId``
  with an unknown error, so on Tansu producers use ``acks=all`` without it.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
from collections.abc import Sequence
from typing import Any

_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
KINDS = ("kafka", "tansu")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConnectionConfigError(ValueError):
    """A broker address or security option is invalid."""


@dataclasses.dataclass(frozen=True, slots=True)
class Security:
    """TLS and SASL settings shared by every client.

    ``cafile`` alone gives TLS with server verification; ``certfile`` and
    ``keyfile`` add a client certificate; ``sasl_mechanism`` (PLAIN,
    SCRAM-SHA-256 or SCRAM-SHA-512) with ``username`` and ``password``
    authenticates over TLS (``SASL_SSL``), or in the clear when ``cafile`` is
    empty (``SASL_PLAINTEXT``, for tests only).
    """

    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    sasl_mechanism: str = ""
    username: str = ""
    password: str = ""

    def __post_init__(self) -> None:
        if self.sasl_mechanism and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConnectionConfigError(
                f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}")
        if self.sasl_mechanism and not (self.username and self.password):
            raise ConnectionConfigError("SASL needs a username and a password")
        if bool(self.certfile) != bool(self.keyfile):
            raise ConnectionConfigError("a client certificate needs both certfile and keyfile")
        if self.certfile and not self.cafile:
            raise ConnectionConfigError("a client certificate needs the CA file (cafile)")

    @property
    def protocol(self) -> str:
        """Kafka's ``security.protocol`` for these settings."""
        if self.sasl_mechanism:
            return "SASL_SSL" if self.cafile else "SASL_PLAINTEXT"
        return "SSL" if self.cafile else "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context that verifies the broker against ``cafile``; None without TLS."""
        if not self.cafile:
            return None
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def kwargs(self) -> dict[str, Any]:
        """aiokafka keyword arguments for these settings."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        context = self.ssl_context()
        if context is not None:
            out["ssl_context"] = context
        if self.sasl_mechanism:
            out.update(sasl_mechanism=self.sasl_mechanism,
                       sasl_plain_username=self.username, sasl_plain_password=self.password)
        return out

    def redacted(self) -> dict[str, str]:
        """What may be logged: no password."""
        return {"protocol": self.protocol, "sasl_mechanism": self.sasl_mechanism,
                "username": self.username}


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """Broker addresses, the broker kind and the security every client uses."""

    hosts: tuple[str, ...]
    kind: str = "kafka"
    security: Security = dataclasses.field(default_factory=Security)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConnectionConfigError(f"broker kind must be one of {', '.join(KINDS)}")
        if not self.hosts or not all(_HOSTPORT.match(h) for h in self.hosts):
            raise ConnectionConfigError(f"bad broker addresses {list(self.hosts)!r}")

    @classmethod
    def parse(cls, url: str, security: Security | None = None) -> Connection:
        """Parse ``kafka://h:p[,h:p]``, ``tansu://h:p`` or a bare ``h:p[,h:p]``."""
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "kafka", url
        if scheme == "tcp":
            scheme = "kafka"
        if scheme not in KINDS:
            raise ConnectionConfigError(
                f"broker URL {url!r} must look like kafka://host:port[,host:port] "
                "or tansu://host:port")
        hosts = tuple(h.strip() for h in rest.rstrip("/").split(",") if h.strip())
        try:
            return cls(hosts, scheme, security or Security())
        except ConnectionConfigError:
            raise ConnectionConfigError(
                f"broker URL {url!r} must look like kafka://host:port[,host:port]") from None

    @classmethod
    def of(cls, target: BrokerTarget) -> Connection:
        """Accept what the SDKs accept: a Connection, a URL, or a list of ``host:port``."""
        if isinstance(target, Connection):
            return target
        if isinstance(target, str):
            return cls.parse(target)
        return cls(tuple(target))

    @property
    def tansu(self) -> bool:
        """Whether the broker is Tansu (gets Tansu's producer settings)."""
        return self.kind == "tansu"

    @property
    def url(self) -> str:
        """The URL, with the kind as its scheme."""
        return f"{self.kind}://" + ",".join(self.hosts)

    @property
    def bootstrap(self) -> list[str]:
        """The addresses as aiokafka wants them."""
        return list(self.hosts)

    def client(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of any aiokafka client (consumer, admin) on this connection."""
        return {"bootstrap_servers": self.bootstrap, **self.security.kwargs(), **extra}

    def producer(self, **extra: Any) -> dict[str, Any]:
        """Producer keyword arguments: ``acks=all``, idempotent where the broker allows."""
        settings = self.client(acks="all", enable_idempotence=not self.tansu)
        settings.update(extra)
        return settings


#: What the SDKs accept as a broker: a Connection, a URL, or ``host:port`` addresses.
BrokerTarget = str | Sequence[str] | Connection
