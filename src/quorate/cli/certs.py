"""``quorate certs init`` / ``issue NAME`` / ``rotate NODE``: the cluster's certificates.

Theory of operation: a cluster trusts exactly one CA, created by ``init``
(``ca.key`` + self-signed ``ca.crt``). ``issue`` signs a certificate for a node
(``n1``: CN and SAN DNS name ``n1``, what the transport checks against the
node id) or for a client (any DNS-label name, e.g. ``client-a``). Keys are ECDSA
P-256 (fast TLS 1.3 handshakes), written with mode 0600. Existing files are
never overwritten without ``--force``; a missing CA or an existing file ends
with a one-line error and exit code 2. ``rotate`` replaces a running node's
certificate through the cluster's key registry (``quorate.client.keys``):
issued as ``n1.next.crt``, pinned by a quorum of members, presented by the
node from then on, the old one retired after the overlap.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from quorate.cli.main import app, fail
from quorate.errors import ConfigError
from quorate.ids import node_name, parse_node_name

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CA_VALIDITY_DAYS = 3650
LEAF_VALIDITY_DAYS = 825
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(minutes=5)
"""Certificates start this long in the past so a peer whose clock is a little
behind still accepts them."""
DEFAULT_DIRECTORY = "certs"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

certs_app = typer.Typer(
    help="Create the cluster CA and node/client certificates.", no_args_is_help=True
)
app.add_typer(certs_app, name="certs")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _refuse_existing(paths: list[Path], force: bool) -> None:
    if force:
        return
    for path in paths:
        if path.exists():
            raise ConfigError(f"{path} already exists (use --force to replace it)")


def certificate_name(text: str) -> str:
    """``1``/``n1`` → ``n1`` (a node); other DNS labels are client names."""
    try:
        return node_name(parse_node_name(text))
    except ValueError:
        pass
    if not _NAME.match(text):
        raise ConfigError(
            f"invalid name {text!r}: use a node name like 'n1' or a lowercase DNS label like 'client-a'"
        )
    return text


def create_ca(directory: Path, *, force: bool = False, name: str = "quorate cluster CA") -> Path:
    """Write ``ca.key`` and a self-signed ``ca.crt`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    _refuse_existing([cert_path, key_path], force)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def issue_certificate(directory: Path, name: str, *, force: bool = False, stem: str | None = None) -> Path:
    """Write ``<name>.key`` and ``<name>.crt`` (CN = SAN DNS = name), signed by
    the CA; ``stem`` names the files otherwise (``n1.next``: a rotation)."""
    name = certificate_name(name)
    ca_cert_path, ca_key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not ca_cert_path.is_file() or not ca_key_path.is_file():
        raise ConfigError(
            f"no cluster CA in {directory} (run 'quorate certs init --dir {directory}')"
        )
    stem = stem or name
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    _refuse_existing([cert_path, key_path], force)
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(f"cannot read the CA in {directory}: {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_key_path} is not an ECDSA key created by 'quorate certs init'")
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + datetime.timedelta(days=LEAF_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            # A node both accepts (server) and dials (client) connections.
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def ensure_certificates(directory: Path, names: list[str]) -> list[str]:
    """The CA (if ``directory`` has none) and a certificate for each of
    ``names`` that lacks one, as ``quorate certs init`` and ``quorate certs
    issue`` make them; returns the names issued now."""
    if not (directory / CA_CERT_FILE).is_file():
        create_ca(directory)
    issued = []
    for name in names:
        if not (directory / f"{certificate_name(name)}.crt").is_file():
            issue_certificate(directory, name)
            issued.append(name)
    return issued


DirectoryOption = Annotated[
    Path, typer.Option("--dir", help="Directory holding ca.crt, ca.key and the issued files.")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing files.")]


@certs_app.command("init")
def init_command(
    directory: DirectoryOption = Path(DEFAULT_DIRECTORY), force: ForceOption = False
) -> None:
    """Create the cluster CA (ca.key, ca.crt)."""
    try:
        path = create_ca(directory, force=force)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {path} and {directory / CA_KEY_FILE}")


@certs_app.command("issue")
def issue_command(
    name: Annotated[str, typer.Argument(help="A node (n1) or client (client-a) name.")],
    directory: DirectoryOption = Path(DEFAULT_DIRECTORY),
    force: ForceOption = False,
) -> None:
    """Issue a certificate signed by the cluster CA."""
    try:
        path = issue_certificate(directory, name, force=force)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {path} and {path.with_suffix('.key')}")


@certs_app.command("rotate")
def rotate_command(
    name: Annotated[str, typer.Argument(help="The node whose certificate to replace (n1).")],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="The certificates, with ca.key (default: the cluster directory's certs/).", show_default=False),
    ] = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option("--keys-dir", help="The node's signing key (default: the cluster directory's keys/).", show_default=False),
    ] = None,
    cluster: Annotated[
        Path | None,
        typer.Option("--cluster", help="The cluster directory 'quorate cluster up' wrote (default: quorate-cluster).", show_default=False),
    ] = None,
    endpoints: Annotated[str | None, typer.Option("--endpoints", help="host:port,... (instead of the cluster directory).")] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Give up (exit 1) after this many seconds.")] = 60.0,
) -> None:
    """Replace a node's certificate on the running cluster (no restart).

    A new certificate is issued by the CA (NAME.next.crt), its fingerprint
    announced signed by the node's signing key; once the members approve it
    the node presents it on new connections, and after the overlap retires
    the old one (connections still using it are closed and redialed)."""
    from quorate.cli.keys import _keys_dir, run_registry
    from quorate.cli.kv import Target
    from quorate.runtime.aio.cluster import CERTS_DIR, DEFAULT_CLUSTER_DIR

    try:
        node = parse_node_name(name)
    except ValueError:
        raise fail(f"invalid node {name!r}: certificates rotate for nodes (n1, n2...)") from None
    base = cluster or DEFAULT_CLUSTER_DIR
    certs_dir = directory if directory is not None else base / CERTS_DIR
    found_keys = _keys_dir(keys_dir, base)
    stem = f"{node_name(node)}.next"
    try:
        issue_certificate(certs_dir, node_name(node), force=True, stem=stem)
        from quorate.client import keys
        from quorate.runtime.aio.security import certificate_fingerprint_file
    except ConfigError as exc:
        raise fail(str(exc)) from None
    fingerprint = certificate_fingerprint_file(certs_dir / f"{stem}.crt")
    target = Target(cluster, endpoints, False, certs_dir, "client", timeout_s)

    async def action(client: Any) -> tuple[int, int]:
        decided = await keys.announce_certificate(client, found_keys, node, fingerprint, timeout_s=timeout_s)
        retired = await keys.wait_until_retired(client, node, "tls", timeout_s=timeout_s)
        return decided.index or 0, int(retired)

    activated, retired = run_registry(target, action)
    typer.echo(
        f"{node_name(node)}: new certificate (sha256 {fingerprint.hex()[:16]}...) pinned from log index "
        f"{activated}; the old one retired at log index {retired}"
    )
