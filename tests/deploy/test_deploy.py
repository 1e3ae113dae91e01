"""Deployment files: the committed ones are what the generator renders; they
parse (YAML, TOML) into what a cluster needs (a StatefulSet with a headless
Service, Parallel pod management, peers by DNS name from pod ordinals, PVCs,
TLS secrets, a readiness probe on the node's /readyz); the generator refuses
sizes at which the protocol tolerates no fault; the Dockerfile installs the
package the README installs, as a non-root user with a data volume and a
health check on /readyz."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from quorate.cli.certs import create_ca, issue_certificate
from quorate.cli.main import _register, app
from quorate.deploy.manifests import (
    DATA_DIR,
    HEALTH_PORT,
    PEER_PORT,
    DeploySpec,
    kubernetes_host,
    render_compose,
    render_kubernetes,
)
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.aio.config import node_config_from_mapping

_register()
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMMITTED = [("compose", "raft", 3), ("compose", "raft", 5), ("k8s", "raft", 3), ("k8s", "pbft", 4), ("k8s", "casper", 4)]


def _render(kind: str, protocol: str, nodes: int) -> dict[str, str]:
    spec = DeploySpec(protocol, nodes)
    return render_compose(spec) if kind == "compose" else render_kubernetes(spec)


@pytest.mark.parametrize(("kind", "protocol", "nodes"), COMMITTED)
def test_committed_files_are_what_the_generator_renders(kind: str, protocol: str, nodes: int) -> None:
    directory = DEPLOY / kind / f"{protocol}-{nodes}"
    rendered = _render(kind, protocol, nodes)
    on_disk = {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*") if p.is_file()}
    assert on_disk == rendered, f"regenerate with: quorate deploy {kind} --protocol {protocol} --nodes {nodes} --out {directory}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    create_ca(directory)
    for i in range(1, 8):
        issue_certificate(directory, f"n{i}")
    return directory


def _check_node_configs(configs: dict[str, str], spec: DeploySpec, host_of: Any, certs: Path) -> None:
    assert sorted(configs) == [f"n{i}.toml" for i in range(1, spec.nodes + 1)]
    for name, text in configs.items():
        raw = tomllib.loads(text)
        assert raw["data_dir"] == DATA_DIR and raw["tls_dir"] == "/tls"
        assert raw["health_listen"] == f"0.0.0.0:{HEALTH_PORT}" and raw["listen"] == f"0.0.0.0:{PEER_PORT}"
        # Checked here with real certificates; signing keys are checked at node start.
        config = node_config_from_mapping({k: v for k, v in {**raw, "tls_dir": str(certs)}.items() if k != "keys_dir"})
        me = int(name.removeprefix("n").removesuffix(".toml"))
        assert config.id == me and config.protocol == spec.protocol
        assert config.peers == {NodeId(p): (host_of(NodeId(p), spec), PEER_PORT) for p in range(1, spec.nodes + 1) if p != me}
        if spec.protocol != "raft":
            assert raw["keys_dir"] == "/keys"


@pytest.mark.parametrize("nodes", [3, 5])
def test_compose_files_parse_into_a_tls_cluster(nodes: int, certs: Path) -> None:
    spec = DeploySpec("raft", nodes)
    files = render_compose(spec)
    compose = yaml.safe_load(files["docker-compose.yml"])
    services = compose["services"]
    assert sorted(services) == [f"n{i}" for i in range(1, nodes + 1)]
    published = set()
    for i in range(1, nodes + 1):
        service = services[f"n{i}"]
        assert service["command"] == ["--config", f"/config/n{i}.toml"]
        mounts = service["volumes"]
        # Each node mounts its own key and no other node's.
        assert f"./tls/n{i}.key:/tls/n{i}.key:ro" in mounts
        assert not [m for m in mounts if re.search(r"/n\d+\.key", m) and f"/n{i}.key" not in m]
        assert f"n{i}-data:{DATA_DIR}" in mounts and f"n{i}-data" in compose["volumes"]
        published.add(service["ports"][0].split(":")[0])
    assert len(published) == nodes
    _check_node_configs({k.removeprefix("config/"): v for k, v in files.items() if k.startswith("config/")},
                        spec, lambda node, _spec: f"n{node}", certs)


@pytest.mark.parametrize(("protocol", "nodes"), [("raft", 3), ("pbft", 4), ("hotstuff", 7), ("casper", 4)])
def test_kubernetes_manifest_parses_into_a_statefulset(protocol: str, nodes: int, certs: Path) -> None:
    spec = DeploySpec(protocol, nodes, namespace="prod")
    documents = list(yaml.safe_load_all(render_kubernetes(spec)["quorate.yaml"]))
    kinds = {d["kind"]: d for d in documents if d["kind"] != "Service"}
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    headless = services["quorate"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    sts = kinds["StatefulSet"]["spec"]
    assert sts["serviceName"] == "quorate" and sts["replicas"] == nodes
    assert sts["podManagementPolicy"] == "Parallel"
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = sts["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    probe = container["readinessProbe"]["httpGet"]
    health_port = next(p["containerPort"] for p in container["ports"] if p["name"] == probe["port"])
    assert probe["path"] == "/readyz" and health_port == HEALTH_PORT
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == DATA_DIR and mounts["tls"] == "/tls"
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert "quorate-tls" in secrets and (("quorate-keys" in secrets) == (protocol != "raft"))
    # The pod's ordinal picks its config: quorate-K runs n(K+1).
    script = container["command"][-1]
    for ordinal in range(nodes):
        hostname = f"quorate-{ordinal}"
        config = script.replace("${HOSTNAME##*-}", hostname.rsplit("-", 1)[1])
        number = eval(re.search(r"\$\(\((.*?)\)\)", config).group(1))  # the shell arithmetic
        assert number == ordinal + 1
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == spec.faults
    _check_node_configs(kinds["ConfigMap"]["data"], spec, kubernetes_host, certs)
    assert kubernetes_host(NodeId(2), spec) == "quorate-1.quorate.prod.svc.cluster.local"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["k8s", "--protocol", "pbft", "--nodes", "2"], "needs n >= 3f + 1 = 4"),
        (["compose", "--protocol", "hotstuff", "--nodes", "3"], "needs n >= 3f + 1 = 4"),
        (["k8s", "--protocol", "casper", "--nodes", "3"], "needs n >= 3f + 1 = 4"),
        (["compose", "--trusted-networks", "10.0.0.0/8,ten"], "--trusted-networks: trusted_networks: 'ten' is not a network"),
        (["k8s", "--protocol", "raft", "--nodes", "2"], "tolerate no crash"),
        (["k8s", "--protocol", "paxos"], "unknown protocol"),
        (["k8s", "--namespace", "Prod_1"], "lowercase DNS label"),
    ],
)
def test_the_generator_refuses_sizes_that_tolerate_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_trusted_networks_reach_every_node_config(certs: Path) -> None:
    spec = DeploySpec("casper", 4, trusted_networks="10.42.0.0/16")
    for name, text in render_compose(spec).items():
        if name.startswith("config/"):
            raw = tomllib.loads(text)
            assert raw["security"] == {"trusted_networks": "10.42.0.0/16"}
            config = node_config_from_mapping({k: v for k, v in {**raw, "tls_dir": str(certs)}.items() if k != "keys_dir"})
            assert config.security_config().limits.trusted_networks == "10.42.0.0/16"


def test_bft_sizes_from_four_are_accepted() -> None:
    assert DeploySpec("pbft", 4).validate().faults == 1
    assert DeploySpec("hotstuff", 7).validate().faults == 2
    with pytest.raises(ConfigError):
        DeploySpec("pbft", 3).validate()


# ------------------------------------------------------------------ the Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_installs_the_package_the_readme_installs() -> None:
    instructions = _dockerfile()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = next(rest for word, rest in instructions if word == "FROM")
    version = re.search(r"python:(\d+)\.(\d+)", base)
    assert version and "slim" in base
    minimum = re.search(r"(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert minimum and tuple(map(int, version.groups())) >= tuple(map(int, minimum.groups()))
    copied = [rest.split()[:-1] for word, rest in instructions if word == "COPY"]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    assert ["pyproject.toml", "README.md"] in copied and ["src"] in copied
    install = next(rest for word, rest in instructions if word == "RUN" and "pip install" in rest)
    target = re.search(r'pip install "?(/src)(\[([a-z,]+)\])?"?', install)
    assert target, install
    extras = set((target.group(3) or "").split(",")) - {""}
    assert extras <= set(pyproject["project"]["optional-dependencies"])
    assert "pip install ." in (ROOT / "README.md").read_text()  # the README's install: this tree


def test_the_image_runs_as_non_root_with_a_volume_and_a_readiness_check() -> None:
    instructions = dict(reversed(_dockerfile()))  # first of each kind
    user = instructions["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert f'"{DATA_DIR}"' in instructions["VOLUME"]
    assert f"127.0.0.1:{HEALTH_PORT}/readyz" in instructions["HEALTHCHECK"]
    assert str(PEER_PORT) in instructions["EXPOSE"] and str(HEALTH_PORT) in instructions["EXPOSE"]
    assert instructions["ENTRYPOINT"] == '["quorate", "node"]'
