"""What the core orders (commands of its BFT log) and what its members send
each other beside the BFT protocol's own messages.

Theory of operation. The core's BFT log orders opaque bytes; its commands
are the encoded structs below (``CoreCommand``), each **self-authenticating**:
a log entry does not say which member proposed it, and a Byzantine member may
propose anything, so every command carries the signature of the node it
speaks for and every member checks it again when it applies the command
(``quorate.hrb.core.state``):

- from shards: ``TxnRequest``, ``ShardVote``, ``RemovalProposal``
  (``quorate.hrb.messages``) and ``ReputationReport`` (challenge statistics a
  shard's leader reports);
- from core members: ``Tick`` (the member's count of ``tick_interval_s``
  periods, the input of the core's log clock);
- from the next epoch's members, during an epoch change: ``DkgSubmission``
  (one key generation message), ``DkgTimeout`` (a phase is stuck),
  ``DkgOutcome`` (the key a member ended with);
- under dynamic sharding (``quorate.hrb.reshard``): ``ReshardRequest`` (a
  core member's proposed split, merge or agent move) and ``HandoffReport``
  (a source shard member's hand-off state).

Messages between members (not ordered): ``DecisionPartial`` (a partial
threshold signature to the collector), ``CertificateRequest`` (anyone asks
for the certificates of a transaction), ``DkgRelay`` (an old member passes
one ordered key generation item to a next member) and ``CoreHandover`` (an
old member passes the final state to a next member); ``JoinRequest`` (a
next member asks again for what it missed).
"""

from __future__ import annotations

import msgspec

from quorate.core.wire import WireMessage
from quorate.hrb.messages import RemovalProposal, ShardVote, TxnRequest
from quorate.hrb.reshard import HandoffReport, ReshardRequest

__all__ = [
    "CORE_COMMAND_TYPES",
    "CORE_MESSAGE_TYPES",
    "CertificateRequest",
    "CoreCommand",
    "CoreHandover",
    "DecisionPartial",
    "DkgItem",
    "DkgOutcome",
    "DkgRelay",
    "DkgSubmission",
    "DkgTimeout",
    "JoinRequest",
    "ReputationReport",
    "Tick",
    "decode_command",
    "dkg_outcome_bytes",
    "dkg_submission_bytes",
    "dkg_timeout_bytes",
    "encode_command",
    "report_bytes",
    "tick_bytes",
]

_encoder = msgspec.msgpack.Encoder()


class Tick(WireMessage, tag="hrb.core.Tick", frozen=True):
    """Core member ``member`` has counted ``count`` tick periods in ``epoch``."""

    epoch: int
    member: int
    count: int
    signature: bytes


def tick_bytes(epoch: int, member: int, count: int) -> bytes:
    return _encoder.encode(("quorate.hrb.tick.v1", epoch, member, count))


class ReputationReport(WireMessage, tag="hrb.ReputationReport", frozen=True):
    """Shard ``shard``'s leader (in ``term``) reports, for its report number
    ``period``, how many challenges each member answered and missed."""

    shard: int
    leader: int
    term: int
    period: int
    answered: dict[int, int]
    missed: dict[int, int]
    signature: bytes


def report_bytes(report: ReputationReport) -> bytes:
    return _encoder.encode(
        (
            "quorate.hrb.reputation-report.v1",
            report.shard,
            report.leader,
            report.term,
            report.period,
            sorted(report.answered.items()),
            sorted(report.missed.items()),
        )
    )


class DkgSubmission(WireMessage, tag="hrb.core.DkgSubmission", frozen=True):
    """A key generation message (``message``: the suite's encoding) that
    ``sender``, a member of epoch ``epoch``, asks the core to order."""

    epoch: int
    session: bytes
    sender: int
    message: bytes
    signature: bytes


def dkg_submission_bytes(epoch: int, session: bytes, sender: int, message: bytes) -> bytes:
    return _encoder.encode(("quorate.hrb.dkg-submission.v1", epoch, session, sender, message))


class DkgTimeout(WireMessage, tag="hrb.core.DkgTimeout", frozen=True):
    """``sender`` waited ``dkg_phase_timeout_s`` in ``phase``: close it."""

    epoch: int
    session: bytes
    sender: int
    phase: str
    signature: bytes


def dkg_timeout_bytes(epoch: int, session: bytes, sender: int, phase: str) -> bytes:
    return _encoder.encode(("quorate.hrb.dkg-timeout.v1", epoch, session, sender, phase))


class DkgOutcome(WireMessage, tag="hrb.core.DkgOutcome", frozen=True):
    """How ``sender``'s key generation ended: the key's commitments (the
    first is the group public key) and the qualified dealers, or a failure."""

    epoch: int
    session: bytes
    sender: int
    ok: bool
    commitments: tuple[bytes, ...]
    qualified: tuple[int, ...]
    reason: str
    signature: bytes


def dkg_outcome_bytes(outcome: DkgOutcome) -> bytes:
    return _encoder.encode(
        (
            "quorate.hrb.dkg-outcome.v1",
            outcome.epoch,
            outcome.session,
            outcome.sender,
            outcome.ok,
            outcome.commitments,
            outcome.qualified,
            outcome.reason,
        )
    )


CoreCommand = (
    TxnRequest
    | ShardVote
    | RemovalProposal
    | ReputationReport
    | Tick
    | DkgSubmission
    | DkgTimeout
    | DkgOutcome
    | ReshardRequest
    | HandoffReport
)
CORE_COMMAND_TYPES: tuple[type[WireMessage], ...] = (
    TxnRequest,
    ShardVote,
    RemovalProposal,
    ReputationReport,
    Tick,
    DkgSubmission,
    DkgTimeout,
    DkgOutcome,
    ReshardRequest,
    HandoffReport,
)
_command_decoder = msgspec.msgpack.Decoder(CoreCommand)


def encode_command(command: CoreCommand) -> bytes:
    return _encoder.encode(command)


def decode_command(data: bytes) -> CoreCommand:
    """``msgspec.DecodeError`` / ``ValidationError`` on malformed bytes."""
    command: CoreCommand = _command_decoder.decode(data)
    return command


# -- messages between members ----------------------------------------------------------


class DecisionPartial(WireMessage, tag="hrb.core.DecisionPartial", frozen=True):
    """The sender's partial signature of the ``index``-th decision of ``epoch``
    (over ``certificate_bytes``); its share index is the sender's position."""

    epoch: int
    index: int
    partial: bytes


class CertificateRequest(WireMessage, tag="hrb.core.CertificateRequest", frozen=True):
    """Send me the certificates you hold for ``txn_id`` (its begin and its
    decision), or, with an empty ``txn_id``, the epoch change of ``epoch``."""

    epoch: int
    txn_id: bytes


class DkgItem(msgspec.Struct, array_like=True, frozen=True):
    """One ordered item of an epoch change's key generation: its start
    (``kind="start"``: the members, the threshold, their encryption keys and
    the current epoch's group public key), a member's message
    (``kind="message"``), or a phase closed by timeout (``kind="close"``)."""

    kind: str
    session: bytes
    sender: int = 0
    message: bytes = b""
    phase: str = ""
    members: tuple[int, ...] = ()
    threshold: int = 0
    encryption_keys: tuple[bytes, ...] = ()
    previous_group_key: bytes = b""


class DkgRelay(WireMessage, tag="hrb.core.DkgRelay", frozen=True):
    """Item ``seq`` (from 0) of epoch ``epoch``'s key generation, as the
    sender's core log ordered it. A next member uses an item once f + 1 old
    members relayed the same one (then at least one honest member did)."""

    epoch: int
    seq: int
    item: DkgItem


class CoreHandover(WireMessage, tag="hrb.core.CoreHandover", frozen=True):
    """The state epoch ``epoch``'s core starts from (an encoded
    ``CoreSnapshot``), as an old member computed it; used once f + 1 old
    members sent the same bytes."""

    epoch: int
    state: bytes


class JoinRequest(WireMessage, tag="hrb.core.JoinRequest", frozen=True):
    """A member of epoch ``epoch`` that is still joining asks an old member
    for the key generation items from ``seq`` on, and the handover if the
    epoch change is decided."""

    epoch: int
    seq: int


CORE_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    DecisionPartial,
    CertificateRequest,
    DkgRelay,
    CoreHandover,
    JoinRequest,
)
