"""A node's configuration file (TOML), validated once at the edge.

Theory of operation: ``quorate node --config node.toml`` runs one node from a
file like::

    id = "n1"                       # or 1
    listen = "127.0.0.1:7001"
    data_dir = "data/n1"            # relative paths are relative to the file
    tls_dir = "certs"               # ca.crt, n1.crt, n1.key; or: insecure = true
    keys_dir = "keys"               # n1.key + public-keys.toml ('quorate keys'): signing, key registry
    protocol = "raft"
    read_mode = "read_index"        # how the KV service serves reads
    snapshot_every = 0              # entries between snapshots; 0 = never
    storage = "sqlite"              # or "wal" (segmented write-ahead log)
    peer_rate_limit = 0             # messages/s admitted per peer (flood defence); 0 = off
    log_file = "n1.log"             # optional; stderr when absent
    log_level = "info"
    health_listen = "0.0.0.0:8080"  # optional: HTTP /readyz and /livez (runtime.aio.health)

    [peers]                         # every other voter
    n2 = "127.0.0.1:7002"
    n3 = "127.0.0.1:7003"

    [options]                       # the protocol's own settings (RaftConfig fields)
    election_timeout_s = 1.0

    [security]                      # admission, key rotation, limits at the edge
    admission = "ca"
    trusted_networks = "10.1.0.0/16"  # clients there hold up to 256 connections per address

    [multiraft]                     # optional (raft only): a multi-Raft node
    ranges = 64                     # range groups at the start (and a meta group)
    replicas = 3                    # replicas of each range and of the meta group
    split_at_ops = 0                # a range splits after this many writes; 0 = never

A node that *joins* a running cluster lists the cluster's current members
under ``[peers]`` and sets ``join = true`` under ``[options]``
(``RaftConfig.join``): it starts outside the configuration, so it never
campaigns and counts for nothing, and it waits for ``quorate member add``
(learner first, then ``quorate member promote``) to make it a member; the
leader then sends it the log or a snapshot. Its peers learn its address from
the configuration entry that adds it (``quorate.runtime.aio.admin``).

``load_node_config`` turns any mistake into one ``ConfigError`` whose message
names the file, the field and what to write instead; nothing else in the node
parses user input. ``NodeConfig.to_toml`` writes the same format back (what
``quorate cluster up`` uses), so the two cannot drift apart.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.runtime.aio.protocols import protocol_binding, protocol_names
from quorate.runtime.aio.tls import TlsConfig
from quorate.storage.engines import open_storage
from quorate.storage.layout import engine_found

if TYPE_CHECKING:
    from quorate.runtime.aio.security import NodeSecurityConfig

LOG_LEVELS = ("debug", "info", "warning", "error")
SERVICE_READ_MODES = ("read_index", "log")
STORAGE_KINDS = ("sqlite", "wal")
"""Durable storage engines: ``quorate.storage.sqlite`` (the default) and
``quorate.storage.wal``. A data directory keeps the engine it was made with."""
_KNOWN_FIELDS = frozenset(
    {
        "id",
        "listen",
        "data_dir",
        "tls_dir",
        "keys_dir",
        "insecure",
        "protocol",
        "read_mode",
        "snapshot_every",
        "storage",
        "peer_rate_limit",
        "log_file",
        "log_level",
        "health_listen",
        "peers",
        "options",
        "security",
        "multiraft",
    }
)
MULTIRAFT_FIELDS = ("ranges", "replicas", "split_at_ops")

Address = tuple[str, int]


def parse_address(text: object, what: str) -> Address:
    """``"host:port"`` → ``(host, port)``; ``ConfigError`` naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a \"host:port\" string, got {text!r}")
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} must look like \"127.0.0.1:7001\", got {text!r}")
    return host.strip("[]"), int(port)


def format_address(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one node needs to run, already validated."""

    id: NodeId
    listen: Address
    peers: dict[NodeId, Address]
    data_dir: Path
    tls_dir: Path | None = None
    insecure: bool = False
    protocol: str = "raft"
    keys_dir: Path | None = None
    """This node's signing key and every node's public key
    (``quorate.crypto.keyfiles``): BFT protocols sign with them, and every
    node's key registry starts from them; without it keys derive from
    ``key_seed``."""
    read_mode: str = "read_index"
    snapshot_every: int = 0
    storage: str = "sqlite"
    peer_rate_limit: float = 0.0
    """Messages per second admitted from each peer (a token bucket with a
    one-second burst); 0 switches the limit off."""
    log_file: Path | None = None
    log_level: str = "info"
    options: dict[str, Any] = field(default_factory=dict)
    security: dict[str, Any] = field(default_factory=dict)
    """The ``[security]`` table (``quorate.runtime.aio.security.parse_security_table``)."""

    def security_config(self) -> NodeSecurityConfig:
        from quorate.runtime.aio.security import (
            parse_security_table,  # PyNaCl only when a node runs
        )

        return parse_security_table(self.security)
    health_listen: Address | None = None
    """Where to answer HTTP ``/readyz`` and ``/livez`` (``runtime.aio.health``);
    a port of its own, never the protocol port. ``None``: no endpoint."""
    ranges: int = 0
    """Multi-Raft: range groups at the start (0: one group, group 0)."""
    replicas: int = 3
    """Multi-Raft: replicas of each range and of the meta group."""
    split_at_ops: int = 0
    """Multi-Raft: a range splits after applying this many client commands (0: never)."""

    def tls(self) -> TlsConfig | None:
        """The node's TLS files (checked to exist), or ``None`` when insecure."""
        if self.tls_dir is None:
            return None
        return TlsConfig.from_directory(self.tls_dir, node_name(self.id))

    def to_toml(self) -> str:
        """The file ``load_node_config`` reads back to an equal config."""
        lines = [
            f"id = {_toml_value(node_name(self.id))}",
            f"listen = {_toml_value(format_address(self.listen))}",
            f"data_dir = {_toml_value(str(self.data_dir))}",
        ]
        if self.tls_dir is not None:
            lines.append(f"tls_dir = {_toml_value(str(self.tls_dir))}")
        if self.insecure:
            lines.append("insecure = true")
        if self.keys_dir is not None:
            lines.append(f"keys_dir = {_toml_value(str(self.keys_dir))}")
        lines += [
            f"protocol = {_toml_value(self.protocol)}",
            f"read_mode = {_toml_value(self.read_mode)}",
            f"snapshot_every = {self.snapshot_every}",
            f"storage = {_toml_value(self.storage)}",
            f"peer_rate_limit = {self.peer_rate_limit!r}",
            f"log_level = {_toml_value(self.log_level)}",
        ]
        if self.log_file is not None:
            lines.append(f"log_file = {_toml_value(str(self.log_file))}")
        if self.health_listen is not None:
            lines.append(f"health_listen = {_toml_value(format_address(self.health_listen))}")
        lines += ["", "[peers]"]
        lines += [
            f"{node_name(p)} = {_toml_value(format_address(a))}" for p, a in sorted(self.peers.items())
        ]
        lines += ["", "[options]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(self.options.items())]
        if self.security:
            lines += ["", "[security]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(self.security.items())]
        if self.ranges:
            lines += ["", "[multiraft]"]
            lines += [f"{k} = {getattr(self, k)}" for k in MULTIRAFT_FIELDS]
        return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for the characters we write.
        return json.dumps(value)
    raise ConfigError(f"cannot write {value!r} to a node config (use a number, bool or string)")


def load_node_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """Read and validate a node config file, with top-level fields replaced
    by ``overrides`` (command-line flags); ``ConfigError`` on any mistake."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    raw.update(overrides or {})
    try:
        return node_config_from_mapping(raw, base_dir=file.parent)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def _node_id(value: object, what: str) -> NodeId:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a node name like \"n1\" or a positive integer")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ConfigError(f"{what} must be a node name like \"n1\" or a positive integer, got {value!r}")
    try:
        node = parse_node_name(text)
    except ValueError:
        raise ConfigError(f"{what} must be a node name like \"n1\", got {value!r}") from None
    if node < 1:
        raise ConfigError(f"{what} must be at least 1 (n1, n2, ...), got {value!r}")
    return node


def node_config_from_mapping(raw: Mapping[str, Any], base_dir: Path = Path(".")) -> NodeConfig:
    """Validate a parsed config; relative paths are resolved against ``base_dir``."""
    unknown = sorted(set(raw) - _KNOWN_FIELDS)
    if unknown:
        raise ConfigError(
            f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(_KNOWN_FIELDS))}"
        )
    for required in ("id", "listen", "data_dir"):
        if required not in raw:
            raise ConfigError(f"missing field {required!r} (see 'quorate node --help')")
    node = _node_id(raw["id"], "id")
    listen = parse_address(raw["listen"], "listen")
    peers_raw = raw.get("peers", {})
    if not isinstance(peers_raw, Mapping):
        raise ConfigError("[peers] must be a table of name = \"host:port\"")
    peers: dict[NodeId, Address] = {}
    for name, address in peers_raw.items():
        peer = _node_id(name, f"peer {name!r}")
        if peer == node:
            raise ConfigError(f"[peers] lists this node ({node_name(node)}) itself; list only the others")
        peers[peer] = parse_address(address, f"peers.{name}")
    insecure = raw.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"insecure must be true or false, got {insecure!r}")
    tls_dir_raw = raw.get("tls_dir")
    if tls_dir_raw is None and not insecure:
        raise ConfigError(
            "no TLS: set tls_dir (made by 'quorate certs init' and 'quorate certs issue "
            f"{node_name(node)}') or insecure = true for plain TCP"
        )
    if tls_dir_raw is not None and insecure:
        raise ConfigError("set either tls_dir or insecure = true, not both")
    tls_dir = _path(tls_dir_raw, "tls_dir", base_dir) if tls_dir_raw is not None else None
    if tls_dir is not None:
        TlsConfig.from_directory(tls_dir, node_name(node))._check_files()
    protocol = raw.get("protocol", "raft")
    if protocol not in protocol_names():
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(protocol_names())}")
    keys_dir = _path(raw["keys_dir"], "keys_dir", base_dir) if "keys_dir" in raw else None
    options_raw = raw.get("options", {})
    if keys_dir is not None:
        from quorate.security.registry_keyring import key_material

        joining = isinstance(options_raw, Mapping) and bool(options_raw.get("join", False))
        key_material(node, [node, *peers], keys_dir=keys_dir, join=joining)  # a missing or mismatched key fails now
    read_mode = raw.get("read_mode", "read_index")
    if read_mode not in SERVICE_READ_MODES:
        raise ConfigError(f"read_mode must be one of {', '.join(SERVICE_READ_MODES)}, got {read_mode!r}")
    snapshot_every = raw.get("snapshot_every", 0)
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 0:
        raise ConfigError(f"snapshot_every must be an integer >= 0 (entries), got {snapshot_every!r}")
    storage = raw.get("storage", "sqlite")
    if storage not in STORAGE_KINDS:
        raise ConfigError(f"storage must be one of {', '.join(STORAGE_KINDS)}, got {storage!r}")
    peer_rate_limit = raw.get("peer_rate_limit", 0)
    if isinstance(peer_rate_limit, bool) or not isinstance(peer_rate_limit, int | float) or peer_rate_limit < 0:
        raise ConfigError(
            f"peer_rate_limit must be a number >= 0 (messages/s per peer; 0 = off), got {peer_rate_limit!r}"
        )
    log_level = raw.get("log_level", "info")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    log_file = _path(raw["log_file"], "log_file", base_dir) if "log_file" in raw else None
    health_listen = parse_address(raw["health_listen"], "health_listen") if "health_listen" in raw else None
    if health_listen is not None and health_listen == listen:
        raise ConfigError("health_listen must be a port of its own, not the protocol port (listen)")
    options = options_raw
    if not isinstance(options, Mapping):
        raise ConfigError("[options] must be a table of the protocol's settings")
    security = raw.get("security", {})
    if not isinstance(security, Mapping):
        raise ConfigError("[security] must be a table (admission, limits at the edge...)")
    if security:  # an empty table holds the defaults, valid by construction
        from quorate.runtime.aio.security import parse_security_table

        parse_security_table(security)
    data_dir = _path(raw["data_dir"], "data_dir", base_dir)
    _check_data_protocol(data_dir, storage, protocol)
    _check_options(protocol, dict(options))
    if options.get("join") and not peers:
        raise ConfigError(
            "[options] join = true needs [peers] listing the running cluster's members "
            "(name = \"host:port\"), so the node can be reached and answer the leader"
        )
    ranges, replicas, split_at_ops = _multiraft(raw.get("multiraft"), protocol, len(peers) + 1)
    return NodeConfig(
        id=node,
        listen=listen,
        peers=peers,
        data_dir=data_dir,
        tls_dir=tls_dir,
        insecure=insecure,
        protocol=protocol,
        keys_dir=keys_dir,
        read_mode=read_mode,
        snapshot_every=snapshot_every,
        peer_rate_limit=float(peer_rate_limit),
        storage=storage,
        log_file=log_file,
        log_level=log_level,
        options=dict(options),
        security=dict(security),
        health_listen=health_listen,
        ranges=ranges,
        replicas=replicas,
        split_at_ops=split_at_ops,
    )


def _multiraft(raw: object, protocol: str, nodes: int) -> tuple[int, int, int]:
    """The ``[multiraft]`` table: (ranges, replicas, split_at_ops); (0, 3, 0) when absent."""
    if raw is None:
        return 0, 3, 0
    if not isinstance(raw, Mapping):
        raise ConfigError("[multiraft] must be a table: ranges, replicas, split_at_ops")
    unknown = sorted(set(raw) - set(MULTIRAFT_FIELDS))
    if unknown:
        raise ConfigError(f"[multiraft]: unknown field {unknown[0]!r}; the fields are {', '.join(MULTIRAFT_FIELDS)}")
    if protocol != "raft":
        raise ConfigError(f"[multiraft] runs Raft groups; protocol is {protocol!r}")
    values = []
    for name, default, low in (("ranges", None, 1), ("replicas", min(3, nodes), 1), ("split_at_ops", 0, 0)):
        value = raw.get(name, default)
        if value is None:
            raise ConfigError(f"[multiraft] needs {name} (the range groups to start with)")
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"[multiraft] {name} must be an integer >= {low}, got {value!r}")
        values.append(value)
    if values[1] > nodes:
        raise ConfigError(f"[multiraft] replicas must be at most the nodes ({nodes}), got {values[1]}")
    return values[0], values[1], values[2]


def _path(value: object, what: str, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _check_data_protocol(data_dir: Path, storage: str, protocol: str) -> None:
    """``ConfigError`` when ``data_dir`` already holds another protocol's
    group 0 (its state would not decode, or worse, be misread)."""
    if engine_found(data_dir) is None:
        return  # a fresh directory
    with open_storage(storage, data_dir) as store:
        written_by = next((r.protocol for r in store.groups() if r.group == 0), None)
    if written_by is not None and written_by != protocol:
        raise ConfigError(
            f"{data_dir} holds {written_by} data; run this node with --protocol {written_by} "
            f'(or protocol = "{written_by}"), or give {protocol} an empty data_dir'
        )


def _check_options(protocol: str, options: dict[str, Any]) -> None:
    """Parse the protocol's config now (its binding names a bad option), so a
    bad option fails before the node starts."""
    found = protocol_binding(protocol)
    try:
        found.core.parse_config(found.protocol_options(options))
    except ConfigError as exc:
        raise ConfigError(f"[options]: {exc}") from None
