"""``quorate deploy compose|k8s``: the files that run a cluster on many hosts.

    quorate deploy compose --protocol raft --nodes 3 --out deploy/compose/raft-3
    quorate deploy k8s --protocol pbft --nodes 4 --namespace prod --out deploy/k8s

Writes node configs (peers by DNS name), a ``docker-compose.yml`` or a
Kubernetes manifest (``quorate.deploy.manifests``). A size at which the
protocol tolerates no fault (2 PBFT nodes: it needs 3f + 1) is refused with
one line and exit code 2, as is any other bad flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from quorate.cli.main import app, fail
from quorate.deploy.manifests import (
    DEFAULT_IMAGE,
    DEFAULT_NAME,
    DEFAULT_NAMESPACE,
    DeploySpec,
    render_compose,
    render_kubernetes,
)
from quorate.errors import ConfigError

deploy_app = typer.Typer(help="Render deployment files (docker-compose, Kubernetes).", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def _write(files: dict[str, str], out: Path) -> None:
    for name, text in sorted(files.items()):
        path = out / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise fail(f"cannot write {path}: {exc.strerror}") from None
        typer.echo(f"wrote {path}")


ProtocolOption = Annotated[str, typer.Option("--protocol", help="raft, pbft, hotstuff or casper.")]
NodesOption = Annotated[int, typer.Option("--nodes", help="Members (BFT: at least 3f + 1 = 4).")]
ImageOption = Annotated[str, typer.Option("--image", help="Container image (built from deploy/Dockerfile).")]
OutOption = Annotated[Path, typer.Option("--out", help="Directory to write into.")]
TrustedOption = Annotated[
    str,
    typer.Option(
        "--trusted-networks",
        help="Networks (CIDR, comma-separated) whose clients may hold many connections per address; others hold 3.",
    ),
]


@deploy_app.command("compose")
def compose_command(
    out: OutOption,
    protocol: ProtocolOption = "raft",
    nodes: NodesOption = 3,
    image: ImageOption = DEFAULT_IMAGE,
    name: Annotated[str, typer.Option("--name", help="Compose project name.")] = DEFAULT_NAME,
    trusted_networks: TrustedOption = "",
) -> None:
    """docker-compose.yml and node configs for N TLS nodes."""
    try:
        files = render_compose(DeploySpec(protocol, nodes, name=name, image=image, trusted_networks=trusted_networks))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _write(files, out)


@deploy_app.command("k8s")
def k8s_command(
    out: OutOption,
    protocol: ProtocolOption = "raft",
    nodes: NodesOption = 3,
    image: ImageOption = DEFAULT_IMAGE,
    name: Annotated[str, typer.Option("--name", help="StatefulSet and headless Service name.")] = DEFAULT_NAME,
    namespace: Annotated[str, typer.Option("--namespace", help="Kubernetes namespace.")] = DEFAULT_NAMESPACE,
    storage_gi: Annotated[int, typer.Option("--storage-gi", help="Data volume per pod (GiB).")] = 1,
    trusted_networks: TrustedOption = "",
) -> None:
    """A StatefulSet, headless Service, ConfigMap and PodDisruptionBudget for N TLS nodes."""
    try:
        spec = DeploySpec(
            protocol, nodes, name=name, namespace=namespace, image=image, storage_gi=storage_gi,
            trusted_networks=trusted_networks,
        )
        files = render_kubernetes(spec)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _write(files, out)
