"""The node config format, described: every field's type, default and meaning.

Theory of operation: ``NODE_FIELDS`` is the one description of the top-level
fields that ``quorate.runtime.aio.config`` reads (a test checks that the two
name the same fields). The protocol options under ``[options]`` are
described from the protocol's binding (``quorate.protocols``): the config
its ``parse_config`` returns for no options gives names, defaults and types,
and the attribute docstrings in the config class's source give meanings, so
a new option is documented where it is defined. Two renderings:

- ``config_template(protocol)``: a commented TOML file, what ``quorate node
  --print-config`` prints; it loads as it is once its TLS files exist.
- ``config_reference_markdown()``: the tables of ``docs/node-config.md``
  (a test checks the document holds them as rendered here).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One config field: ``default`` is TOML text, or ``None`` when the field
    has no default (required, or absent unless given); ``example`` is what the
    template writes (``None``: the template leaves the field commented out)."""

    name: str
    type: str
    default: str | None
    meaning: str
    example: str | None = None


NODE_FIELDS: tuple[FieldDoc, ...] = (
    FieldDoc(
        "id", "string or integer", None,
        "Required. This node's name, n1, n2, ... (or its number, 1, 2, ...). Its TLS "
        "certificate must carry the same name.",
        '"n1"',
    ),
    FieldDoc(
        "listen", "string", None,
        'Required. The "host:port" the node accepts peers and clients on.',
        '"127.0.0.1:7001"',
    ),
    FieldDoc(
        "data_dir", "path", None,
        "Required. Directory of the node's durable state (log, hard state, snapshots); "
        "made if absent. It keeps the protocol and the storage engine it was written "
        "with; a node of another kind refuses it. Relative paths in this file are "
        "relative to the file.",
        '"n1"',
    ),
    FieldDoc(
        "tls_dir", "path", None,
        "Directory with ca.crt, n1.crt and n1.key (quorate certs init, then quorate certs "
        "issue n1). Give tls_dir or insecure = true.",
        '"certs"',
    ),
    FieldDoc(
        "insecure", "boolean", "false",
        "Plain TCP without TLS (loopback tests). Give tls_dir or insecure = true, not both.",
    ),
    FieldDoc(
        "keys_dir", "path", None,
        "Directory with this node's signing key (n1.key) and every node's public key "
        "(public-keys.toml), made by quorate keys init. PBFT and HotStuff sign with them; "
        "every protocol's key registry starts from them (rotation, revocation, admission: "
        "the [security] table). Without it the node derives every key from the shared "
        "test seed (the key_seed option; a PBFT or HotStuff node warns at start): fine "
        "for tests, not against real Byzantine peers.",
    ),
    FieldDoc(
        "protocol", "string", '"raft"',
        'raft, pbft, hotstuff or casper. "quorate node --protocol" overrides it.',
        '"raft"',
    ),
    FieldDoc(
        "read_mode", "string", '"read_index"',
        "How the key-value service serves reads: read_index (Raft's ReadIndex: "
        "linearizable, no log entry) or log (every read goes through the log). BFT "
        "protocols always order reads through the log.",
    ),
    FieldDoc(
        "snapshot_every", "integer", "0",
        "Applied entries between snapshots of the key-value state, after which the log "
        "below the snapshot is dropped; 0 = never.",
    ),
    FieldDoc(
        "storage", "string", '"sqlite"',
        'sqlite (one SQLite database, WAL mode, synchronous=FULL, one transaction per '
        'batch) or wal (a segmented write-ahead log, one fdatasync per batch).',
    ),
    FieldDoc(
        "peer_rate_limit", "number", "0",
        "Messages per second admitted from each peer (a token bucket with a one-second "
        "burst), checked before the protocol sees them: a flooding peer's excess is "
        "dropped and counted. 0 = off.",
    ),
    FieldDoc(
        "log_file", "path", None,
        "Where the node's log goes, as JSON Lines (ts, level, logger, msg). Absent: "
        "stderr.",
        '"n1.log"',
    ),
    FieldDoc(
        "log_level", "string", '"info"', "debug, info, warning or error.", '"info"',
    ),
    FieldDoc(
        "health_listen", "string", None,
        'Where to answer plain-HTTP GET /readyz (200 once the node knows a leader or a view '
        "and reaches enough peers for a quorum, 503 with the reason before) and /livez, for "
        "orchestrators' probes. A port of its own, never the protocol port. Absent: no endpoint.",
    ),
    FieldDoc(
        "[peers]", "table", "{}",
        'Every other voter at start, as name = "host:port". A node that joins a running '
        "cluster lists the running members (and sets join = true under [options]).",
    ),
    FieldDoc(
        "[options]", "table", "{}",
        "The protocol's own settings (below, per protocol). An unknown or ill-typed "
        "option stops the node at start with one line.",
    ),
    FieldDoc(
        "[security]", "table", "{}",
        "Admission of new members, key rotation, and limits at the edge (connections, "
        "handshakes, frames, client rates; below). The key registry's settings "
        "(max_overlap_s, pending_ttl_s, max_pending, admissions_per_approver, "
        "approver_window_s) must be the same on every node.",
    ),
    FieldDoc(
        "[multiraft]", "table", None,
        "Raft only: run a multi-Raft node (ranges = range groups at the start, "
        "replicas = replicas of each range and of the meta group, default 3; "
        "split_at_ops = writes after which a range splits, 0 = never). Every node of the "
        "cluster needs the same table. Absent: one Raft group.",
    ),
)


def security_docs() -> tuple[FieldDoc, ...]:
    """The keys of ``[security]``, with defaults and meanings."""
    from quorate.runtime.aio.security import SECURITY_TABLE_EXTRAS, SecuritySettings
    from quorate.security.keyregistry import RegistryPolicy
    from quorate.security.limits import EdgeLimits

    out = [d for d in _dataclass_docs(SecuritySettings) if d.name != "registry"]
    out += _dataclass_docs(RegistryPolicy) + _dataclass_docs(EdgeLimits)
    out += [
        FieldDoc(name, _TYPE_NAMES[type(default)], _toml(default), meaning)
        for name, (default, meaning) in SECURITY_TABLE_EXTRAS.items()
    ]
    return tuple(out)

BFT_NODE_OPTIONS: tuple[FieldDoc, ...] = (  # a real node's own, for protocols that sign
    FieldDoc(
        "key_seed", "string", '"quorate-test-cluster"',
        "Without keys_dir: the shared seed every node derives every replica's key from. "
        "Tests and benchmarks only; give either keys_dir or key_seed.",
    ),
    FieldDoc(
        "byzantine", "string", None,
        "Fault injection: run this node as a Byzantine replica with the given behaviour "
        "(equivocate, silent, slow, bad_signatures, withhold_votes, replay, forge, flood).",
    ),
)


def _attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of ``cls``, by field name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for field, following in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[field.target.id] = " ".join(following.value.value.split())
    return docs


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string"}
_UNDOCUMENTED = {
    "heartbeat_interval_s": "How often a leader sends heartbeats; well below election_timeout_s.",
}


def _dataclass_docs(cls: type) -> list[FieldDoc]:
    meanings = _attribute_docs(cls)
    out = []
    for field in dataclasses.fields(cls):
        default = field.default
        out.append(
            FieldDoc(
                field.name,
                _TYPE_NAMES.get(type(default), type(default).__name__),
                _toml(default),
                meanings.get(field.name) or _UNDOCUMENTED.get(field.name, ""),
            )
        )
    return out


def protocol_option_docs(protocol: str) -> tuple[FieldDoc, ...]:
    """The ``[options]`` a ``protocol`` node takes, with defaults and meanings:
    the fields of the config its binding parses (``parse_config({})`` gives
    the defaults), the runtime settings around it (``BftSettings``), and the
    node's own key options for protocols that sign."""
    from quorate.core.binding import BftSettings
    from quorate.protocols import binding

    found = binding(protocol)
    defaults = found.parse_config({})
    core = defaults.core if isinstance(defaults, BftSettings) else defaults
    out = _dataclass_docs(type(core))
    if isinstance(defaults, BftSettings):
        out += [d for d in _dataclass_docs(BftSettings) if d.name != "core"]
    if found.fault_model == "byzantine":
        # A protocol hosting groups of its own injects faults its own way.
        out += [d for d in BFT_NODE_OPTIONS if found.hosting is None or d.name != "byzantine"]
    return tuple(out)


def _comment(text: str, width: int = 78) -> list[str]:
    return textwrap.wrap(text, width, initial_indent="# ", subsequent_indent="# ")


def config_template(protocol: str = "raft") -> str:
    """A commented node config for ``protocol``: n1 of a three-node (Raft) or
    four-node (PBFT, HotStuff) cluster on loopback."""
    from quorate.protocols import binding

    signs = binding(protocol).fault_model == "byzantine"
    peers = 4 if signs else 3
    lines = [
        f"# quorate node config ({protocol}); run it with: quorate node --config FILE",
        "# Fields left commented out take the default shown.",
        "",
    ]
    for doc in NODE_FIELDS:
        if doc.name.startswith("["):
            continue
        lines += _comment(f"{doc.name} ({doc.type}): {doc.meaning}")
        value = _toml(protocol) if doc.name == "protocol" else doc.example
        if doc.name == "keys_dir" and signs:
            value = '"keys"'
        if value is not None:
            lines.append(f"{doc.name} = {value}")
        elif doc.default is not None:
            lines.append(f"# {doc.name} = {doc.default}")
        else:
            lines.append(f'# {doc.name} = "..."')
        lines.append("")
    peer_doc = next(d for d in NODE_FIELDS if d.name == "[peers]")
    lines += _comment(peer_doc.meaning)
    lines.append("[peers]")
    lines += [f'n{i} = "127.0.0.1:{7000 + i}"' for i in range(2, peers + 1)]
    lines.append("")
    options_doc = next(d for d in NODE_FIELDS if d.name == "[options]")
    lines += _comment(options_doc.meaning)
    lines.append("[options]")
    for doc in protocol_option_docs(protocol):
        lines.append("")
        lines += _comment(f"{doc.name} ({doc.type}): {doc.meaning}".rstrip(": "))
        lines.append(f"# {doc.name} = {doc.default if doc.default is not None else '...'}")
    security_doc = next(d for d in NODE_FIELDS if d.name == "[security]")
    lines += ["", *_comment(security_doc.meaning), "[security]"]
    for doc in security_docs():
        lines.append("")
        lines += _comment(f"{doc.name} ({doc.type}): {doc.meaning}".rstrip(": "))
        lines.append(f"# {doc.name} = {doc.default}")
    multiraft_doc = next(d for d in NODE_FIELDS if d.name == "[multiraft]")
    lines.append("")
    lines += _comment(multiraft_doc.meaning)
    lines += ["# [multiraft]", "# ranges = 64", "# replicas = 3", "# split_at_ops = 0"]
    return "\n".join(lines) + "\n"


def _table(docs: tuple[FieldDoc, ...]) -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for doc in docs:
        default = "—" if doc.default is None else f"`{doc.default}`"
        meaning = doc.meaning.replace("|", "\\|")
        rows.append(f"| `{doc.name}` | {doc.type} | {default} | {meaning} |")
    return rows


def config_reference_markdown() -> str:
    """The reference tables of ``docs/node-config.md``."""
    out = ["### Top-level fields", "", *_table(NODE_FIELDS), ""]
    for protocol, title in (
        ("raft", "Raft (`RaftConfig`)"),
        ("pbft", "PBFT (`PbftConfig`, then the node's own BFT options)"),
        ("hotstuff", "HotStuff (`HotStuffConfig`, then the node's own BFT options)"),
        ("casper", "Casper FFG (`CasperConfig`, then the node's own BFT options)"),
        ("hrb", "HRB (`HrbSettings`: every node of the cluster takes the same ones)"),
    ):
        out += [f"### `[options]` for {title}", "", *_table(protocol_option_docs(protocol)), ""]
    out += ["### `[security]`", "", *_table(security_docs()), ""]
    return "\n".join(out)
