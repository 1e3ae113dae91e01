"""Seams for extending Raft: hooks on replication and the quorum rule.

Theory of operation
-------------------
A *watched* Raft (Tangaroa, Copeland & Zhong 2014; the HRB shards) keeps Raft's
rules but lets followers check their leader: the leader chains its log (each
entry's digest covers the digest before it) and signs what it sends, followers
verify both, and two different signed digests for one (term, index) prove the
leader equivocated. ``RaftNode`` does not know what a digest or a signature is;
it calls a ``RaftHooks`` object at seven points and carries what it returns:

1. ``entry_digest(previous_digest, entry)`` when the leader appends an entry:
   the entry is stored and sent as a ``ChainedEntry`` with that digest.
   ``previous_digest`` is the digest of the entry before (``b""`` before the
   first entry, and after a snapshot install: snapshots carry no digest).
2. ``check_chain(previous_digest, entries)`` at a follower, once the log
   matching check passed, for the entries after its own entry at
   ``prev_log_index`` (whose digest is ``previous_digest``). A reason string
   refuses the batch (counted in ``Ready.rejected``; no acknowledgement), and
   so does an entry the follower already holds with the same term but another
   digest (the core checks that itself: it is equivocation).
3. ``sign_append(message)`` / ``sign_append_response(message)`` for every
   AppendEntries a leader sends and every response a follower sends; the
   signature travels in ``SignedAppendEntries`` / ``SignedAppendEntriesResponse``.
   One message is built and signed once per broadcast, whatever the number of
   followers in step.
4. ``verify_append(sender, message)`` / ``verify_append_response(sender,
   message)`` before the core looks at an incoming one; a reason string drops
   it. An unsigned message has ``signature == b""``: refusing it is the hook's
   choice. ``unsigned(message)`` rebuilds what the signer was given.
5. ``verified(sender, message)`` after a signature verified and before any
   other check, so the caller sees every signed statement, including one the
   core then refuses: two verified AppendEntries whose entries give one
   (term, index) different digests are equivocation evidence.
6. ``replace_entry(held, entry)`` at a follower that holds ``held`` and is sent
   ``entry`` for the same (term, index) with another digest: ``True`` lets the
   new history replace the old from there (recovery after a leader of that
   term was proven to equivocate); by default the batch is refused.
7. ``kept_on_leading(last_index)`` when the node wins an election, before it
   appends its term's first entry: the index its log keeps through (never
   below its commit index, nor below its newest configuration entry); the
   uncommitted entries after it are dropped, as a follower drops a
   conflicting suffix. A watched Raft drops what a leader proven Byzantine
   wrote and no certificate covers; by default the whole log is kept.

Every method of ``RaftHooks`` is a no-op; subclass it and override what you
need. ``RaftNode`` looks the overrides up once, at construction: a seam that is
not overridden costs one ``is None`` test where it would be called, and a
cluster without hooks sends exactly the bytes it sent before.

Quorum rule
-----------
``QuorumRule`` says how many voters' acknowledgements commit an entry (and
confirm a read round, and keep a leader under check-quorum) and how many votes
win an election, given the number of voters. Raft's safety needs every
election quorum to intersect every commit quorum (leader completeness), i.e.
``election + commit > voters``; ``RaftNode`` checks it whenever the voters
change. The rule counts acknowledgements, so a watched Raft that only counts
*signed* acknowledgements (verified by its hooks) gets 2f+1 signed acks with
``ByzantineQuorum``. Commitment still only counts entries of the leader's own
term (§5.4.2). Flexible quorums (Howard et al. 2016: Q1 for elections, Q2 for
replication) fit the same two numbers: ``FlexibleQuorum(election, commit)``
fixes them for the initial configuration, and a configuration entry can carry
other sizes, changed through consensus like the voters
(``quorate.raft.confchange``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from quorate.core.quorum import bft_quorum, majority
from quorate.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
)

if TYPE_CHECKING:
    from quorate.core.ready import Entry
    from quorate.ids import NodeId


class RaftHooks:
    """Optional behaviour around replication. Override what you need; see the
    module docstring for when each method is called."""

    def entry_digest(self, previous_digest: bytes, entry: Entry) -> bytes:
        """The digest of ``entry`` (built without one), chained after
        ``previous_digest``. Called by a leader for each entry it appends."""
        return b""

    def check_chain(self, previous_digest: bytes, entries: Sequence[Entry]) -> str | None:
        """Why ``entries`` do not continue the chain after ``previous_digest``
        (the follower's own digest at the entry before them), or ``None``."""
        return None

    def sign_append(self, message: AppendEntries) -> bytes:
        """The signature of an outgoing AppendEntries (built unsigned)."""
        return b""

    def sign_append_response(self, message: AppendEntriesResponse) -> bytes:
        """The signature of an outgoing AppendEntries response (built unsigned)."""
        return b""

    def verify_append(self, sender: NodeId, message: AppendEntries) -> str | None:
        """Why an incoming AppendEntries must be dropped, or ``None`` to accept it."""
        return None

    def verify_append_response(
        self, sender: NodeId, message: AppendEntriesResponse
    ) -> str | None:
        """Why an incoming AppendEntries response must be dropped, or ``None``."""
        return None

    def verified(self, sender: NodeId, message: AppendEntries | AppendEntriesResponse) -> None:
        """``message`` from ``sender`` passed ``verify_append`` or
        ``verify_append_response`` (called before the core's other checks)."""
        return None

    def replace_entry(self, held: Entry, entry: Entry) -> bool:
        """May a follower replace ``held`` by ``entry``, which has the same
        index and term but another digest? Not bound unless overridden: the
        core then refuses (it is equivocation). A watched Raft allows it when
        ``held`` came from a leader proven to have equivocated and nothing
        this node promised depends on it."""
        return False

    def kept_on_leading(self, last_index: int) -> int:
        """The index this node's log keeps through when it becomes leader
        (``last_index``: all of it). Not bound unless overridden."""
        return last_index


def unsigned(
    message: AppendEntries | AppendEntriesResponse,
) -> AppendEntries | AppendEntriesResponse:
    """The message as its signer was given it: a signed message without its
    signature, as the plain type (a plain message is returned as it is)."""
    if isinstance(message, SignedAppendEntries):
        return AppendEntries(
            message.term,
            message.prev_log_index,
            message.prev_log_term,
            list(message.entries),
            message.leader_commit,
        )
    if isinstance(message, SignedAppendEntriesResponse):
        return AppendEntriesResponse(
            message.term, message.index, message.success, message.hint_index, message.hint_term
        )
    return message


HOOK_METHODS = (
    "entry_digest",
    "check_chain",
    "sign_append",
    "sign_append_response",
    "verify_append",
    "verify_append_response",
    "verified",
    "replace_entry",
    "kept_on_leading",
)
"""The seams ``RaftNode`` binds when a ``RaftHooks`` subclass overrides them."""


class QuorumRule(Protocol):
    """How many voters make a quorum. ``voters`` is always >= 1."""

    def commit_quorum(self, voters: int) -> int:
        """Acknowledgements (the leader's own included) that commit an entry,
        confirm a read round or keep a leader in office under check-quorum."""
        ...

    def election_quorum(self, voters: int) -> int:
        """Votes (the candidate's own included) that win a (pre-)election."""
        ...


class MajorityQuorum:
    """Raft's rule: a majority of voters for both (crash faults)."""

    __slots__ = ()

    def commit_quorum(self, voters: int) -> int:
        return majority(voters)

    def election_quorum(self, voters: int) -> int:
        return majority(voters)

    def __repr__(self) -> str:
        return "MajorityQuorum()"


class ByzantineQuorum:
    """2f+1 of 3f+1 voters for both (``quorate.core.quorum.bft_quorum``): any
    two quorums share f+1 voters, so at least one honest one. Meant for a
    watched Raft whose hooks only let signed acknowledgements count."""

    __slots__ = ()

    def commit_quorum(self, voters: int) -> int:
        return bft_quorum(voters)

    def election_quorum(self, voters: int) -> int:
        return bft_quorum(voters)

    def __repr__(self) -> str:
        return "ByzantineQuorum()"


MAJORITY = MajorityQuorum()
"""The default quorum rule."""


class FlexibleQuorum:
    """Fixed sizes (Howard, Malkhi & Spiegelman 2016): ``election`` votes (Q1)
    win an election, ``commit`` acknowledgements (Q2) commit. Valid for voter
    counts n with Q1 + Q2 > n and both <= n; ``RaftNode`` refuses a
    configuration they do not fit (at construction: ``ConfigError``; a
    change: a refused proposal)."""

    __slots__ = ("commit", "election")

    def __init__(self, election: int, commit: int) -> None:
        self.election = election
        self.commit = commit

    def commit_quorum(self, voters: int) -> int:
        return self.commit

    def election_quorum(self, voters: int) -> int:
        return self.election

    def __repr__(self) -> str:
        return f"FlexibleQuorum(election={self.election}, commit={self.commit})"
