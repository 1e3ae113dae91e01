"""How a client reaches a quorate cluster: endpoints, TLS, session ids,
errors, and the key-value calls every client shares.

Shared by ``quorate.client.aio.AsyncClient`` and
``quorate.client.bft.BftClient`` (which the first delegates to against a
Byzantine fault tolerant cluster), so neither imports the other's module to
get them.
"""

from __future__ import annotations

import abc
import secrets
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

from quorate.errors import ConfigError, QuorateError
from quorate.runtime.aio.cluster import DEFAULT_CLUSTER_DIR, cluster_contact
from quorate.runtime.aio.config import Address, format_address, parse_address
from quorate.runtime.aio.tls import TlsConfig
from quorate.state.kv import Cas, Delete, Get, List, Op, Put, Result

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_DEADLINE_S = 15.0
RETRY_PAUSE_INITIAL_S = 0.02
RETRY_PAUSE_MAX_S = 0.5
CLIENT_ID_BITS = 63
READ_CHUNK_BYTES = 256 * 1024


class ClientError(QuorateError, RuntimeError):
    """The cluster refused the operation (not a timeout: that is ``TimeoutError``)."""


class ClusterUnreachable(QuorateError, ConnectionError):
    """No endpoint of the cluster answered (nothing listening, or every
    connection failed); the message lists the endpoints and what to check."""


def unreachable_message(endpoints: Sequence[Address], detail: str = "") -> str:
    """The one line a person reads when no node answered."""
    listed = ",".join(format_address(a) for a in endpoints)
    return (
        f"no node of the cluster at {listed} answered{detail} "
        "(is it running? `quorate cluster status`)"
    )


def client_tls(tls: TlsConfig | str | Path, tls_name: str = "client") -> TlsConfig:
    """``tls`` as a ``TlsConfig`` whose files exist; ``ConfigError`` naming
    the missing file and where a local cluster keeps its certificates."""
    if isinstance(tls, TlsConfig):
        config = tls
    else:
        directory = Path(tls)
        config = TlsConfig.from_directory(directory, tls_name)
        if not directory.is_dir():
            raise ConfigError(f"TLS directory {directory} does not exist; {_certs_hint(tls_name)}")
    for label, path in (
        ("CA certificate", config.ca_file),
        (f"certificate of {tls_name!r}", config.cert_file),
        (f"private key of {tls_name!r}", config.key_file),
    ):
        if not Path(path).is_file():
            raise ConfigError(f"TLS {label} not found: {path}; {_certs_hint(tls_name)}")
    return config


def _certs_hint(tls_name: str) -> str:
    local = DEFAULT_CLUSTER_DIR / "certs"
    if (local / "ca.crt").is_file():
        return (
            f"the local cluster keeps its certificates in {local} "
            "(a client given no endpoints finds them itself)"
        )
    return (
        "'quorate cluster up' writes a cluster's certificates to quorate-cluster/certs; "
        f"or make them with 'quorate certs init --dir DIR' and 'quorate certs issue {tls_name} --dir DIR'"
    )


def client_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The client's TLS context: the cluster CA verifies every node, any node
    name is accepted (the per-node name check is a peer's concern, and the
    BFT client reads the name itself); ``ConfigError`` on unreadable files."""
    try:
        context = tls.client_context()
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the TLS files {tls.cert_file} / {tls.key_file} / {tls.ca_file}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    context.check_hostname = False
    return context


def resolve_contact(
    endpoints: Iterable[str | Address] | None,
    cluster: str | Path | None,
    tls: TlsConfig | str | Path | None,
    tls_name: str,
    insecure: bool,
) -> tuple[list[Address], TlsConfig | None, str | None]:
    """(endpoints, TLS files or ``None`` for plain TCP, the protocol if
    known): the ones given, the rest from the cluster directory ``cluster``
    (default ``./quorate-cluster``, read only when no endpoints are given)."""
    protocol: str | None = None
    if endpoints is None or cluster is not None:
        contact = cluster_contact(DEFAULT_CLUSTER_DIR if cluster is None else cluster)
        protocol = contact.protocol
        if endpoints is None:
            endpoints = contact.endpoints
        if tls is None and not insecure:
            if contact.tls_dir is None:
                insecure = True
            else:
                tls = contact.tls_dir
    addresses = [e if isinstance(e, tuple) else parse_address(e, "endpoint") for e in endpoints]
    if not addresses:
        raise ConfigError("give at least one endpoint (host:port)")
    if tls is None and not insecure:
        raise ConfigError(
            "no TLS settings: give the cluster's certificate directory (quorate cluster up "
            "writes quorate-cluster/certs) or choose insecure plain TCP"
        )
    if tls is not None and insecure:
        raise ConfigError("choose TLS or insecure, not both")
    return addresses, None if tls is None else client_tls(tls, tls_name), protocol


def new_client_id() -> int:
    """A random session id in [1, 2**63)."""
    return secrets.randbits(CLIENT_ID_BITS) or 1


class KeyValueApi(abc.ABC):
    """The key-value calls, on top of a client's ``execute`` (one operation,
    its ``Result``) and ``namespace``; shared by ``AsyncClient`` and
    ``quorate.client.bft.BftClient``."""

    namespace: str

    @abc.abstractmethod
    async def execute(self, op: Op) -> Result:
        """Run one operation; its result."""

    async def put(
        self, key: str, value: str, *, namespace: str | None = None, ttl_s: float | None = None
    ) -> None:
        result = await self.execute(Put(key, value, self._ns(namespace), ttl_s))
        if not result.ok:
            raise ClientError(result.error or "the write was refused")

    async def get(self, key: str, *, namespace: str | None = None) -> str | None:
        return (await self.execute(Get(key, self._ns(namespace)))).value

    async def delete(self, key: str, *, namespace: str | None = None) -> bool:
        """True if the key existed."""
        return (await self.execute(Delete(key, self._ns(namespace)))).ok

    async def cas(
        self, key: str, expected: str | None, new: str, *, namespace: str | None = None
    ) -> tuple[bool, str | None]:
        """Set ``key`` to ``new`` iff it holds ``expected`` (``None``: absent).
        Returns ``(swapped, current value when not swapped)``."""
        result = await self.execute(Cas(key, expected, new, self._ns(namespace)))
        return result.ok, None if result.ok else result.value

    async def list(
        self, prefix: str = "", *, namespace: str | None = None, limit: int = 1000
    ) -> list[tuple[str, str]]:
        result = await self.execute(List(prefix, self._ns(namespace), limit))
        return list(result.items or [])

    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else namespace


def parse_endpoints(text: str | Sequence[str]) -> list[Address]:
    """``"h:p,h:p"`` or a list of ``"h:p"`` → addresses; ``ConfigError`` on a bad one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = [parse_address(item.strip(), "endpoint") for item in items if item.strip()]
    if not out:
        raise ConfigError("give at least one endpoint, e.g. --endpoints 127.0.0.1:7001")
    return out
