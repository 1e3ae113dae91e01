"""TLS 1.3 with mutual authentication between the nodes of one cluster.

Theory of operation: every node holds a certificate signed by the cluster CA
(``quorate certs init`` / ``quorate certs issue``) whose CN and SAN DNS name are
its node name ``n<id>``. Both ends of a connection require the other's
certificate (``CERT_REQUIRED``) and accept only TLS 1.3.

- The dialer names the peer it wants (``server_hostname="n<id>"``), so the
  ``ssl`` module's hostname check refuses any other node's certificate.
- The acceptor learns who dialed from the dialer's first frame (``Hello``) and
  checks that the client certificate names that node (``certificate_names``);
  the transport refuses and counts a mismatch.
- Clients (``role="client"``) need a certificate from the same CA; any name.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorate.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Paths of the cluster CA certificate and this party's certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def from_directory(cls, directory: str | Path, name: str) -> TlsConfig:
        """The layout ``quorate certs`` writes: ``ca.crt``, ``<name>.crt``, ``<name>.key``."""
        d = Path(directory)
        return cls(d / "ca.crt", d / f"{name}.crt", d / f"{name}.key")

    def _check_files(self) -> None:
        for label, path in (
            ("CA certificate", self.ca_file),
            ("certificate", self.cert_file),
            ("private key", self.key_file),
        ):
            if not Path(path).is_file():
                raise ConfigError(f"TLS {label} not found: {path} (create it with 'quorate certs')")

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        self._check_files()
        context = ssl.SSLContext(
            ssl.PROTOCOL_TLS_SERVER
            if purpose is ssl.Purpose.CLIENT_AUTH
            else ssl.PROTOCOL_TLS_CLIENT
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def server_context(self) -> ssl.SSLContext:
        """For accepted connections: requires and verifies the dialer's certificate."""
        return self._context(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """For dialed connections: verifies the server and its name, presents ours."""
        context = self._context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = True
        return context


def certificate_names(peercert: dict[str, Any] | None) -> set[str]:
    """The subject CN and SAN DNS names of a verified peer certificate
    (the dict ``SSLSocket.getpeercert()`` returns)."""
    if not peercert:
        return set()
    names: set[str] = set()
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(value)
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add(value)
    return names
