"""Render the files that run a cluster on many hosts.

Theory of operation. A ``DeploySpec`` (protocol, node count, names, ports,
image) is validated once: a size at which the protocol tolerates no fault
is refused with the size it needs (PBFT, HotStuff and Casper FFG need
n >= 3f + 1, so at least 4; Raft with 2 nodes tolerates no crash). From it come

- one node config per member (``quorate.runtime.aio.config`` format): it
  listens on every interface, keeps its data in ``/data`` (the image's
  volume), reads its TLS files from ``/tls`` (and its signing keys from
  ``/keys`` for the Byzantine fault tolerant protocols), answers ``/readyz``
  on a port of its own, counts the addresses of ``trusted_networks`` (if
  given) as known sources of many client connections,
  and lists every other member by **DNS name** — compose service names
  (``n2:7001``) or the stable names a Kubernetes StatefulSet gives its pods
  behind a headless Service (``quorate-1.quorate.<namespace>.svc.cluster.local``).
  A node resolves a peer's name at every dial, so a pod rescheduled to a new
  address is found again (``quorate.runtime.aio.transport``);
- ``docker-compose.yml``: one service per node, each mounting only its own
  certificate and key, its own named data volume, its protocol port
  published on the host;
- a Kubernetes manifest: a headless Service (publishing not-ready addresses,
  so members can reach each other while they elect), a client Service over
  ready pods, a ConfigMap of node configs, a StatefulSet with
  ``podManagementPolicy: Parallel`` whose pods pick their config by ordinal
  (pod ``quorate-0`` is node ``n1``), a readiness probe on ``/readyz``, a
  PersistentVolumeClaim per pod, the TLS (and key) Secrets, and a
  PodDisruptionBudget that lets at most f pods go at once.

Node ids are ``n1..nN``: certificates name nodes, not hosts, so a node can
move to another address without a new certificate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.config import NodeConfig

PROTOCOLS = ("raft", "pbft", "hotstuff", "casper")
BFT = ("pbft", "hotstuff", "casper")
"""Signing protocols that tolerate f Byzantine members of 3f + 1 (Casper FFG: 2/3 of the stake, equal stakes)."""
PEER_PORT = 7001
HEALTH_PORT = 8080
DATA_DIR = "/data"
TLS_DIR = "/tls"
KEYS_DIR = "/keys"
CONFIG_DIR = "/config"
DEFAULT_IMAGE = "quorate:0.1.0"
DEFAULT_NAME = "quorate"
DEFAULT_NAMESPACE = "default"
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")


def tolerated_faults(protocol: str, nodes: int) -> int:
    """Faulty members the protocol survives at this size (crashes for Raft,
    Byzantine nodes for PBFT, HotStuff and Casper FFG)."""
    return (nodes - 1) // 3 if protocol in BFT else (nodes - 1) // 2


@dataclass(frozen=True)
class DeploySpec:
    protocol: str = "raft"
    nodes: int = 3
    name: str = DEFAULT_NAME
    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    storage_gi: int = 1
    trusted_networks: str = ""
    """``[security] trusted_networks`` of every node: where clients connect from in numbers."""

    def validate(self) -> DeploySpec:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {self.nodes}")
        if self.protocol in BFT and self.nodes < 4:
            raise ConfigError(
                f"{self.protocol} needs n >= 3f + 1 = 4 nodes to tolerate one Byzantine fault, got {self.nodes}"
            )
        if self.protocol == "raft" and self.nodes == 2:
            raise ConfigError("2 raft nodes tolerate no crash (a majority of 2 is 2); use 1 for a trial or 3")
        for what, value in (("--name", self.name), ("--namespace", self.namespace)):
            if not _DNS_LABEL.match(value):
                raise ConfigError(f"{what} must be a lowercase DNS label, got {value!r}")
        if not self.image or any(c.isspace() for c in self.image):
            raise ConfigError(f"--image must be an image reference, got {self.image!r}")
        if self.storage_gi < 1:
            raise ConfigError(f"--storage-gi must be >= 1, got {self.storage_gi}")
        if self.trusted_networks:
            from quorate.security.limits import EdgeLimits

            try:
                EdgeLimits(trusted_networks=self.trusted_networks).validate()
            except ConfigError as exc:
                raise ConfigError(f"--trusted-networks: {exc}") from None
        return self

    @property
    def ids(self) -> list[NodeId]:
        return [NodeId(i) for i in range(1, self.nodes + 1)]

    @property
    def faults(self) -> int:
        return tolerated_faults(self.protocol, self.nodes)


def compose_host(node: NodeId, spec: DeploySpec) -> str:
    return node_name(node)


def kubernetes_host(node: NodeId, spec: DeploySpec) -> str:
    """The stable DNS name of the pod that runs ``node`` (ordinal = id - 1)."""
    return f"{spec.name}-{int(node) - 1}.{spec.name}.{spec.namespace}.svc.cluster.local"


def render_node_configs(
    spec: DeploySpec, host_of: Callable[[NodeId, DeploySpec], str] = compose_host
) -> dict[str, str]:
    """``{"n1.toml": text, ...}`` with peers named by ``host_of(node, spec)``."""
    spec.validate()
    host = host_of
    configs: dict[str, str] = {}
    for node in spec.ids:
        config = NodeConfig(
            id=node,
            listen=("0.0.0.0", PEER_PORT),
            peers={p: (host(p, spec), PEER_PORT) for p in spec.ids if p != node},
            data_dir=Path(DATA_DIR),
            tls_dir=Path(TLS_DIR),
            protocol=spec.protocol,
            keys_dir=Path(KEYS_DIR) if spec.protocol in BFT else None,
            health_listen=("0.0.0.0", HEALTH_PORT),
            security={"trusted_networks": spec.trusted_networks} if spec.trusted_networks else {},
        )
        configs[f"{node_name(node)}.toml"] = config.to_toml()
    return configs


def _yaml(value: object, indent: int = 0) -> str:
    """A small YAML writer for the manifests' plain data (strings quoted as JSON)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{_yaml(item, indent + 1)}")
            elif isinstance(item, str) and "\n" in item:
                body = "\n".join(f"{pad}  {line}" if line else "" for line in item.rstrip("\n").split("\n"))
                lines.append(f"{pad}{key}: |\n{body}")
            else:
                lines.append(f"{pad}{key}: {_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            text = _yaml(item, indent + 1)
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}- {text.lstrip()}")
            else:
                lines.append(f"{pad}- {text}")
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def render_compose(spec: DeploySpec) -> dict[str, str]:
    """``docker-compose.yml`` and ``config/nK.toml`` (paths relative to the output directory)."""
    spec.validate()
    services: dict[str, object] = {}
    volumes: dict[str, object] = {}
    for node in spec.ids:
        name = node_name(node)
        mounts = [
            "./config:/config:ro",
            f"./tls/ca.crt:{TLS_DIR}/ca.crt:ro",
            f"./tls/{name}.crt:{TLS_DIR}/{name}.crt:ro",
            f"./tls/{name}.key:{TLS_DIR}/{name}.key:ro",
            f"{name}-data:{DATA_DIR}",
        ]
        if spec.protocol in BFT:
            mounts += [f"./keys/public-keys.toml:{KEYS_DIR}/public-keys.toml:ro", f"./keys/{name}.key:{KEYS_DIR}/{name}.key:ro"]
        services[name] = {
            "image": spec.image,
            "command": ["--config", f"{CONFIG_DIR}/{name}.toml"],
            "hostname": name,
            "volumes": mounts,
            "ports": [f"{PEER_PORT + int(node) - 1}:{PEER_PORT}"],
            "restart": "unless-stopped",
        }
        volumes[f"{name}-data"] = {}
    header = (
        f"# {spec.nodes} {spec.protocol} nodes with mutual TLS, made by\n"
        f"#   quorate deploy compose --protocol {spec.protocol} --nodes {spec.nodes} --out DIR\n"
        "# Build the image (docker build -f deploy/Dockerfile -t IMAGE .), make the certificates\n"
        "# (README, 'Deployment on many hosts'), then: docker compose up -d\n"
    )
    files = {"docker-compose.yml": header + _yaml({"name": spec.name, "services": services, "volumes": volumes}) + "\n"}
    files.update({f"config/{k}": v for k, v in render_node_configs(spec, compose_host).items()})
    return files


def render_kubernetes(spec: DeploySpec) -> dict[str, str]:
    """One multi-document ``<name>.yaml``: Services, ConfigMap, StatefulSet, PodDisruptionBudget."""
    spec.validate()
    labels = {"app.kubernetes.io/name": "quorate", "app.kubernetes.io/instance": spec.name}
    meta = {"name": spec.name, "namespace": spec.namespace, "labels": labels}
    ports = [{"name": "peer", "port": PEER_PORT, "targetPort": PEER_PORT}]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels, "ports": ports},
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**meta, "name": f"{spec.name}-client"},
        "spec": {"selector": labels, "ports": [{"name": "client", "port": PEER_PORT, "targetPort": PEER_PORT}]},
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "name": f"{spec.name}-config"},
        "data": render_node_configs(spec, kubernetes_host),
    }
    volumes: list[object] = [
        {"name": "config", "configMap": {"name": f"{spec.name}-config"}},
        {"name": "tls", "secret": {"secretName": f"{spec.name}-tls", "defaultMode": 0o440}},
    ]
    mounts: list[object] = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
    ]
    if spec.protocol in BFT:
        volumes.append({"name": "keys", "secret": {"secretName": f"{spec.name}-keys", "defaultMode": 0o440}})
        mounts.append({"name": "keys", "mountPath": KEYS_DIR, "readOnly": True})
    # Pod NAME-K runs node n(K+1): the ordinal is the suffix of the hostname.
    start = f'exec quorate node --config {CONFIG_DIR}/n$(( ${{HOSTNAME##*-}} + 1 )).toml'
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "serviceName": spec.name,
            "replicas": spec.nodes,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "containers": [
                        {
                            "name": "node",
                            "image": spec.image,
                            "command": ["/bin/sh", "-c", start],
                            "ports": [
                                {"name": "peer", "containerPort": PEER_PORT},
                                {"name": "health", "containerPort": HEALTH_PORT},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "health"},
                                "periodSeconds": 2,
                                "failureThreshold": 3,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/livez", "port": "health"},
                                "periodSeconds": 10,
                                "failureThreshold": 6,
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": f"{spec.storage_gi}Gi"}},
                    },
                }
            ],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"maxUnavailable": max(1, spec.faults), "selector": {"matchLabels": labels}},
    }
    header = (
        f"# {spec.nodes} {spec.protocol} nodes (tolerating {spec.faults} faulty), made by\n"
        f"#   quorate deploy k8s --protocol {spec.protocol} --nodes {spec.nodes} --name {spec.name} "
        f"--namespace {spec.namespace} --out DIR\n"
        f"# Needs the Secret {spec.name}-tls" + (f" and {spec.name}-keys" if spec.protocol in BFT else "")
        + " (see the README, 'Deployment on many hosts').\n"
    )
    documents = [headless, client, configmap, statefulset, budget]
    return {f"{spec.name}.yaml": header + "\n---\n".join(_yaml(d) + "\n" for d in documents)}
