"""Online checks of Raft's safety properties (Raft paper §5.2–§5.4, figure 3).

Theory of operation: the simulator calls ``RaftSafetyMonitor.check(node, now)``
after every event a node processed. The monitor keeps a global picture built
from what it has seen and raises ``InvariantViolation`` the moment a property
breaks:

- **Election safety**: at most one leader per term (``term -> leader``).
- **Log matching**: two entries with the same index and term hold the same
  command (``(index, term) -> fingerprint`` of kind and data). Checked
  incrementally: per node the monitor remembers how far it checked and the
  node's ``log_rewrites`` counter; only entries appended since, or rewritten
  by a truncation/snapshot (from ``last_rewrite_index``), are looked at.
- **State-machine safety**: no two nodes commit different entries at one index
  (``index -> fingerprint`` of every entry seen committed; each node's newly
  committed range is checked when its commit index rises).
- **Leader completeness**: when a node is first seen leading term ``t``, the
  highest entry the monitor saw committed in a term before ``t`` is in its log
  with the same term. (The term in which a commit was *observed* over-estimates
  the term it happened in, which only makes the check more conservative.)
  With state-machine safety this is "every committed entry survives any
  configuration change": a leader of any later configuration holds it.

Configurations (thesis §4.1–§4.3; flexible quorums, Howard et al. 2016):

- **Elected by a quorum of its configuration**: the monitor records every
  vote it sees cast (a node's ``vote`` in its term; one per node and term,
  else a double vote is reported), and a node first seen leading term ``t``
  must hold votes of term ``t`` from an election quorum of *each* voter set
  of its configuration (both halves while joint). With one leader per term
  this is "no two leaders of overlapping configurations in one term", and it
  checks elections under any quorum sizes.
- **Quorums intersect**: every configuration a leader appends has election
  and commit quorums that intersect (Q1 + Q2 > n for each voter set), and
  with the configuration before it in the log every election quorum of one
  meets every commit quorum of the other (both may be in use at once).
- **One change at a time**: when a leader appends a configuration entry, the
  configuration entry before it is committed, and so is an entry of the
  leader's own term (the fix of the single-server change bug, thesis §4.1).

Cost: amortised O(new entries) per call plus O(1) bookkeeping, so it can run on
every event of a 51-node simulation; configuration entries add O(voters) each.
Memory: one small record per distinct entry seen (two dicts keyed by index)
and one per vote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorate.core.quorum import quorum_size_problem, quorums_intersect
from quorate.errors import InvariantViolation

if TYPE_CHECKING:
    from quorate.core.ready import Entry
    from quorate.ids import NodeId
    from quorate.raft.node import RaftNode

from quorate.raft.messages import EntryKind
from quorate.raft.roles import LEADER as _LEADER

_CONFIG = int(EntryKind.CONFIG)


def _fingerprint(entry: Entry) -> int:
    return hash((entry.kind, entry.data))


class _NodeView:
    """What the monitor remembers about one node."""

    __slots__ = ("checked_through", "commit", "leader_term", "node_ref", "rewrites", "vote_term")

    def __init__(self, node_ref: int) -> None:
        self.node_ref = node_ref
        self.checked_through = 0
        self.rewrites = -1
        self.commit = 0
        self.leader_term = -1
        self.vote_term = -1


class RaftSafetyMonitor:
    """Raises ``InvariantViolation`` as soon as a Raft safety property breaks."""

    __slots__ = (
        "_by_index_term",
        "_commit_marks",
        "_committed",
        "_leaders",
        "_views",
        "_votes",
        "checks",
    )

    def __init__(self) -> None:
        self._leaders: dict[int, NodeId] = {}
        self._by_index_term: dict[tuple[int, int], int] = {}
        self._committed: dict[int, tuple[int, int]] = {}
        """index -> (term, fingerprint) of the entry committed there."""
        self._commit_marks: dict[int, tuple[int, int]] = {}
        """observed-in term -> (highest index committed, its entry's term)."""
        self._views: dict[NodeId, _NodeView] = {}
        self._votes: dict[int, dict[NodeId, NodeId]] = {}
        """term -> voter -> the candidate it voted for in that term."""
        self.checks = 0

    def check(self, node: RaftNode, now: float) -> None:
        """Check ``node`` after it processed an event at time ``now``."""
        self.checks += 1
        view = self._views.get(node.id)
        if view is None or view.node_ref != id(node):
            # New node, or a node rebuilt after a restart: rescan its log once.
            view = _NodeView(id(node))
            view.commit = node.snapshot_index
            self._views[node.id] = view
        vote = node.vote
        if vote is not None and view.vote_term != node.term:
            self._record_vote(node, view, vote, now)
        # Most events change neither the log nor the commit index: those cost
        # three comparisons here instead of two calls that find nothing new.
        appended_confs: list[int] = []
        if view.rewrites != node.log_rewrites or view.checked_through != node.last_index:
            self._check_log(node, view, now, appended_confs)
        if view.commit != node.commit_index:
            self._check_commit(node, view, now)
        if node.role is _LEADER and view.leader_term != node.term:
            self._check_new_leader(node, view, now)
        if appended_confs:
            for index in appended_confs:
                self._check_conf_entry(node, index, now)

    # ------------------------------------------------------------ properties
    def _record_vote(self, node: RaftNode, view: _NodeView, vote: NodeId, now: float) -> None:
        term = node.term
        view.vote_term = term
        known = self._votes.setdefault(term, {}).setdefault(node.id, vote)
        if known != vote:
            raise InvariantViolation(
                f"election safety: node {node.id} voted for {known} and for {vote} in term "
                f"{term} (t={now:.6f})"
            )

    def _check_new_leader(self, node: RaftNode, view: _NodeView, now: float) -> None:
        term = node.term
        holder = self._leaders.setdefault(term, node.id)
        if holder != node.id:
            raise InvariantViolation(
                f"election safety: nodes {holder} and {node.id} both lead term {term} (t={now:.6f})"
            )
        view.leader_term = term
        votes = self._votes.get(term, {})
        for voters, _, election in node.voter_quorums:
            granted = sum(1 for voter in voters if votes.get(voter) == node.id)
            # A voter this monitor never observed (a Byzantine replica the
            # runtime does not check) may have granted its vote: count it.
            unobserved = sum(1 for voter in voters if voter not in self._views)
            if granted + unobserved < election:
                raise InvariantViolation(
                    f"election quorum: node {node.id} leads term {term} with votes from "
                    f"{granted} of voters {sorted(voters)}, whose election quorum is "
                    f"{election} (t={now:.6f})"
                )
        best_index = 0
        best_term = 0
        for observed_term, (index, entry_term) in self._commit_marks.items():
            if observed_term < term and index > best_index:
                best_index, best_term = index, entry_term
        if best_index < node.first_index:
            return  # compacted into the snapshot (which only holds committed entries)
        have = node.term_at(best_index)
        if have != best_term:
            raise InvariantViolation(
                f"leader completeness: node {node.id} leads term {term} but its log has "
                f"term {have} at index {best_index}, where an entry of term {best_term} "
                f"was committed (t={now:.6f})"
            )

    def _check_log(
        self, node: RaftNode, view: _NodeView, now: float, appended_confs: list[int]
    ) -> None:
        start = view.checked_through + 1
        if view.rewrites != node.log_rewrites:
            if view.rewrites >= 0 and node.log_rewrites == view.rewrites + 1:
                start = min(start, node.last_rewrite_index)
            else:
                start = node.first_index
            view.rewrites = node.log_rewrites
        start = max(start, node.first_index)
        last = node.last_index
        seen = self._by_index_term
        for index in range(start, last + 1):
            entry = node.entry_at(index)
            if entry is None:  # pragma: no cover - the range is inside the log
                continue
            if entry.index != index:
                raise InvariantViolation(
                    f"log structure: node {node.id} holds entry {entry.index} at index {index}"
                )
            key = (index, entry.term)
            fingerprint = _fingerprint(entry)
            known = seen.setdefault(key, fingerprint)
            if known != fingerprint:
                raise InvariantViolation(
                    f"log matching: node {node.id} holds a different entry at index {index} "
                    f"term {entry.term} than another node did (t={now:.6f})"
                )
            if entry.kind == _CONFIG and known is fingerprint:
                appended_confs.append(index)  # seen for the first time anywhere
        view.checked_through = last

    def _check_conf_entry(self, node: RaftNode, index: int, now: float) -> None:
        """A configuration entry seen for the first time: its leader made it."""
        confs = node.configurations()
        position = next((i for i, (at, _) in enumerate(confs) if at == index), None)
        if position is None or position == 0:
            return  # already compacted into a snapshot, or truncated away
        conf = confs[position][1]
        previous_index, previous = confs[position - 1]
        rule = node.quorum_rule
        try:
            halves = conf.halves(rule)
            before = previous.halves(rule)
        except ValueError as exc:
            raise InvariantViolation(
                f"quorums: configuration at index {index} has no valid quorums: {exc} (t={now:.6f})"
            ) from None
        for voters, commit, election in halves:
            problem = quorum_size_problem(len(voters), election, commit)
            if problem is not None:
                raise InvariantViolation(
                    f"quorums: configuration at index {index}: {problem} (t={now:.6f})"
                )
        for electing, committing in ((halves, before), (before, halves)):
            if not any(
                quorums_intersect(e.voters, e.election, c.voters, c.commit)
                for e in electing
                for c in committing
            ):
                raise InvariantViolation(
                    f"quorums: the configuration at index {index} (voters "
                    f"{sorted(conf.all_voters)}) and the one before it (voters "
                    f"{sorted(previous.all_voters)}) can both be in use, but an election "
                    f"quorum of one can miss a commit quorum of the other (t={now:.6f})"
                )
        entry = node.entry_at(index)
        if node.role is not _LEADER or entry is None or entry.term != node.term:
            return
        commit = node.commit_index
        if previous_index > commit:
            raise InvariantViolation(
                f"one change at a time: leader {node.id} appended a configuration at {index} "
                f"while the one at {previous_index} was not committed (t={now:.6f})"
            )
        if node.term_at(min(commit, index - 1)) != node.term:
            raise InvariantViolation(
                f"one change at a time: leader {node.id} appended a configuration at {index} "
                f"before committing an entry of its term {node.term} (t={now:.6f})"
            )

    def _check_commit(self, node: RaftNode, view: _NodeView, now: float) -> None:
        commit = node.commit_index
        if commit < view.commit:
            raise InvariantViolation(
                f"commit index of node {node.id} went back from {view.commit} to {commit}"
            )
        if commit == view.commit:
            return
        committed = self._committed
        top_term = 0
        for index in range(max(view.commit + 1, node.first_index), commit + 1):
            entry = node.entry_at(index)
            if entry is None:
                continue
            record = (entry.term, _fingerprint(entry))
            known = committed.setdefault(index, record)
            if known != record:
                raise InvariantViolation(
                    f"state-machine safety: node {node.id} committed term {entry.term} at "
                    f"index {index}, another node committed term {known[0]} there (t={now:.6f})"
                )
            top_term = entry.term
        view.commit = commit
        if top_term:
            mark = self._commit_marks.get(node.term)
            if mark is None or mark[0] < commit:
                self._commit_marks[node.term] = (commit, top_term)
