"""The client protocol beyond reads and writes: status and administration.

Theory of operation: every node answers ``Status`` from its own view at once
(it does not go through the log), so an operator or a client can find the
leader, see how far each node has committed and applied, and read the
node's counters (refused TLS handshakes among them). ``Admin`` asks the
leader for a membership change (Raft thesis §4.1, one server at a time) or a
leadership transfer (§3.10); a node that is not the leader answers
``redirect`` with its hint, exactly like a write. An accepted change is
answered ``ok`` once the core has *appended* it: membership changes then
commit through the log like any entry, a transfer completes when the target
wins its election, and both are visible in ``Status``.

*Addresses travel with the configuration.* Every membership change the
leader proposes carries, in its configuration entry's ``context``, the
address book: ``host:port`` of every member the leader knows, the node being
added included (``encode_address_book``). Each node reads it when the entry
reaches its log (before it commits), so any node that may later lead, or
must vote for a new member, can dial every member of the configuration it
is in. A node also rereads its recovered log at restart. A node whose
log was compacted past a change learns the book again from the next change
(a new member is given the current members in its own config file).

``AdminChange`` asks for several members and/or the quorum sizes at once
(Raft: joint consensus, thesis §4.3, with flexible quorums): voters to add
(with their addresses, or none for a learner being promoted), members to
remove, learners to add (a voter named there is demoted), (Q1, Q2), and the
transition (``auto``, ``joint``, ``joint_explicit``); an empty one leaves a
joint configuration. The node hands it to its binding's ``membership`` role
(``quorate.core.binding.MembershipChange``) with the address book as context;
a refusal (a change already in flight, an empty voter set, Q1 + Q2 <= n) is
an ``error`` with the core's reason and changes nothing.

Exit codes of the operator commands built on these messages: 0 done, 1 the
cluster refused (with its reason) or did not answer in time, 2 a usage or
configuration mistake.

These messages travel on the client connection next to
``quorate.state.service.ClientRequest``/``ClientReply`` and the backup
messages of ``quorate.state.backup``; adding a field means
appending it with a default (see ``quorate.codec.wire``).
"""

from __future__ import annotations

import msgspec

from quorate.core.wire import WireMessage
from quorate.state.backup import BackupChunk, BackupRequest
from quorate.state.service import ClientAttach, ClientReply, ClientRequest

ADMIN_ACTIONS = ("add", "add_learner", "promote", "remove", "transfer")
"""``Admin.action`` values: add a voter, add a learner, promote a learner,
remove a member, transfer leadership to ``node``."""


class Status(WireMessage, tag="client.Status", frozen=True):
    """Ask a node for its view; answered with ``StatusReply`` carrying ``seq``."""

    seq: int


class StatusReply(WireMessage, tag="client.StatusReply", frozen=True):
    """One node's view of the cluster. ``role`` is the core's role name
    (``leader``, ``follower``...); ``members`` maps node ids to the
    ``host:port`` this node knows them at (itself included), so a client that
    learns a leader id can reach it."""

    seq: int
    node: int
    protocol: str
    role: str
    term: int
    leader: int | None
    commit_index: int
    applied_index: int
    last_index: int
    members: dict[int, str]
    metrics: dict[str, int]
    voters: tuple[int, ...] = ()
    """The configuration in force at this node (empty if the protocol has
    none); while joint, the incoming configuration's voters."""
    learners: tuple[int, ...] = ()
    outgoing: tuple[int, ...] = ()
    """While a joint configuration is in force: the outgoing voters."""
    election_quorum: int = 0
    """Votes that win an election (Q1) under ``voters`` (0: not known)."""
    commit_quorum: int = 0
    """Acknowledgements that commit (Q2) under ``voters`` (0: not known)."""


class Admin(WireMessage, tag="client.Admin", frozen=True):
    """An operator's request to the leader; ``address`` is the new member's
    ``host:port`` for ``add``/``add_learner``."""

    seq: int
    action: str
    node: int
    address: str = ""


class AdminChange(WireMessage, tag="client.AdminChange", frozen=True):
    """Several members and/or the quorum sizes at once (see the module
    docstring); addresses are ``host:port`` ("" for a node already a member)."""

    seq: int
    add: dict[int, str] = {}
    remove: tuple[int, ...] = ()
    add_learners: dict[int, str] = {}
    quorum: tuple[int, int] | None = None
    """(Q1 election, Q2 commit); (0, 0) the protocol's rule; None: keep."""
    transition: str = "auto"


class AdminReply(WireMessage, tag="client.AdminReply", frozen=True):
    """``status`` is ok | redirect | error (as for ``ClientReply``)."""

    seq: int
    status: str
    leader: int | None = None
    error: str = ""


CLIENT_REQUEST_TYPES: tuple[type[WireMessage], ...] = (
    ClientRequest,
    ClientAttach,
    Status,
    Admin,
    BackupRequest,
    AdminChange,
)
"""What a client may send to a node."""
CLIENT_PROTOCOL_TYPES: tuple[type[WireMessage], ...] = (
    ClientRequest,
    ClientReply,
    ClientAttach,
    Status,
    StatusReply,
    Admin,
    AdminReply,
    BackupRequest,
    BackupChunk,
    AdminChange,
)
"""Everything on a client connection, both directions (for the client's codec)."""


MAX_ADDRESS_BOOK_MEMBERS = 4096
"""More members than any configuration we run; a bigger book is malformed."""
_book_encoder = msgspec.msgpack.Encoder()
_book_decoder = msgspec.msgpack.Decoder(dict[int, str])


def encode_address_book(addresses: dict[int, str]) -> bytes:
    """Member id → ``host:port``, for a configuration entry's ``context``."""
    return _book_encoder.encode(dict(sorted(addresses.items())))


def decode_address_book(context: bytes) -> dict[int, str]:
    """The book ``encode_address_book`` wrote; ``{}`` for an empty or
    malformed context (an entry from before addresses were carried)."""
    if not context:
        return {}
    try:
        book = _book_decoder.decode(context)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {}
    if len(book) > MAX_ADDRESS_BOOK_MEMBERS:
        return {}
    return book
