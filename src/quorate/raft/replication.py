"""Log replication and commitment (Raft §5.3, §5.4.2, §7; thesis §3.5), both
sides: the leader's flow control and the follower's consistency check.

Theory of operation
-------------------
Leader side:

- Commitment (§5.4.2): the leader counts acknowledgements only for entries of
  its own term; older entries commit indirectly. Each term starts with a
  no-op entry so a new leader commits (and learns the commit index) promptly
  (§8). How many acknowledgements commit is the node's ``QuorumRule``
  (majority by default); ``_count_ack`` keeps the number of voters past the
  commit index so an acknowledgement costs O(1) until a quorum is reached.
- Flow (``quorate.raft.progress``): probe one message at a time until the
  logs match, then pipeline batches (``max_batch_entries`` /
  ``max_batch_bytes``) with at most ``max_inflight`` unacknowledged per
  follower; proposals made within one input are batched because broadcasting
  happens once, in ``ready()``. Followers in step share one (immutable)
  message per starting index, built and signed once.
- Fast backtracking: a rejecting follower hints the last index that may still
  match (largest index <= the probe whose term <= the probed term), so the
  leader skips a whole divergent term per round trip. Loss is detected by
  heartbeat rounds (a follower answered a round sent well after a batch it
  has not acknowledged).
- Snapshots (§7): a follower whose next entry was compacted gets one
  ``InstallSnapshot``; it is sent again if unanswered after T.

Follower side:

- Log matching (§5.3): AppendEntries carries (prev index, prev term); a
  follower truncates only from the first entry that *conflicts*, so a
  delayed, reordered AppendEntries that overlaps entries it already holds,
  with the same terms, truncates nothing. Entries at or below its commit
  index are committed, hence identical to the leader's: that overlap is
  skipped, never rewritten.
- A peer's AppendEntries is validated first (``_check_append``: indices
  contiguous, terms ordered and within the leader's term, known entry kinds,
  well-formed configurations); a malformed one is dropped and counted.
- With ``RaftHooks`` (``quorate.raft.hooks``): a signed message is verified
  before anything else and reported; a batch must continue the follower's own
  hash chain (a first entry that does not chain from our entry at prev, which
  has the leader's term there but another digest, is a log mismatch: we
  answer as for a term mismatch, hinting our commit index), and an entry it
  already holds with the same term must carry the same digest unless the
  hooks' ``replace_entry`` allows replacing it; responses are signed.

The functions taking ``self: RaftNode`` are ``RaftNode`` methods, attached in
``quorate.raft.node``; a subclass may override any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quorate.core.ready import ChainedEntry, Entry
from quorate.ids import NodeId
from quorate.raft.confchange import Configuration, conf_entry_problem
from quorate.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ConfiguredSnapshot,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallConfiguredSnapshot,
    InstallSnapshot,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
    TimeoutNow,
)
from quorate.raft.progress import Progress, ProgressState
from quorate.raft.roles import LEADER

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode

ENTRY_OVERHEAD_BYTES = 16
"""Bytes an entry costs on the wire besides its data (term, index, kind, framing),
counted against ``max_batch_bytes``."""

_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT
_CONFIG = EntryKind.CONFIG
_KNOWN_KINDS = frozenset(int(k) for k in EntryKind)
_ENTRY_KINDS_WITHOUT_DATA_RULES = frozenset((int(EntryKind.NORMAL), int(EntryKind.NOOP)))
"""Entry kinds whose data the core never parses (configuration entries are decoded)."""


# ================================================================ leader
def _append_local(self: RaftNode, kind: int, data: bytes) -> Entry:
    log = self._log
    entry = Entry(self._term, log.last_index() + 1, kind, data)
    digest = self._entry_digest
    if digest is not None:
        entry = ChainedEntry(
            entry.term, entry.index, kind, data, digest(log.last_digest(), entry)
        )
    log.append(entry)
    if kind == _CONFIG:
        self._record_conf(entry)
        self._apply_conf(self._now)
    self._append_pending = True
    self._maybe_commit()
    return entry


def _broadcast_append(self: RaftNode, now: float, send_if_empty: bool) -> None:
    # Followers in step are sent the same AppendEntries: build it once per
    # starting index and share the (immutable) message. With 50 followers
    # that saves 49 log slices and message constructions per broadcast,
    # and lets a runtime that sizes or encodes messages do it once.
    shared: dict[int, AppendEntries] = {}
    for peer, pr in self._progress.items():
        self._send_append(peer, pr, now, send_if_empty, shared)


def _send_append(
    self: RaftNode,
    to: NodeId,
    pr: Progress,
    now: float,
    send_if_empty: bool,
    shared: dict[int, AppendEntries] | None = None,
) -> bool:
    """Send ``to`` the entries from ``pr.next`` (or a snapshot). False if nothing sent.
    ``shared`` holds the messages already built in this round, by starting index."""
    state = pr.state
    if state is _REPLICATE:
        if len(pr.inflight) >= self._config.max_inflight:
            return False
    elif state is _PROBE:
        if pr.probe_sent:
            return False
    else:
        return False
    log = self._log
    next_index = pr.next
    # An empty AppendEntries only carries the commit index. While batches
    # are in flight it could overtake them and be rejected (forcing a
    # needless probe); they carry the commit index anyway.
    empty_unwanted = not send_if_empty or (state is _REPLICATE and bool(pr.inflight))
    if empty_unwanted and next_index == log.snapshot_index + len(log.entries) + 1:
        # Nothing new to send: most calls after an acknowledgement end
        # here, before any look-up in the log.
        return False
    prev = next_index - 1
    message = shared.get(next_index) if shared is not None else None
    if message is None:
        prev_term = log.term(prev)
        if prev_term is None:
            return self._send_snapshot(to, pr, now)
        entries = self._batch_from(next_index)
        if not entries and empty_unwanted:
            return False
        message = AppendEntries(self._term, prev, prev_term, entries, log.committed)
        if self._sign_append is not None:
            message = self._signed_append(message)
        if shared is not None:
            shared[next_index] = message
    else:
        entries = message.entries
        if not entries and empty_unwanted:
            return False
    self._msgs.append((to, message))
    pr.commit_sent = message.leader_commit
    if state is _REPLICATE:
        if entries:
            pr.sent_batch(entries[-1].index, self._heartbeat_round)
    else:
        pr.sent_probe(next_index, prev + len(entries), self._heartbeat_round)
    return True


def _signed_append(self: RaftNode, m: AppendEntries) -> SignedAppendEntries:
    sign = self._sign_append
    assert sign is not None
    # Entries without a digest encode as chained entries with an empty one.
    entries: Any = m.entries
    return SignedAppendEntries(
        m.term, m.prev_log_index, m.prev_log_term, entries, m.leader_commit, sign(m)
    )


def _batch_from(self: RaftNode, start: int) -> list[Entry]:
    config = self._config
    log = self._log
    entries = log.slice(start, start + config.max_batch_entries)
    budget = config.max_batch_bytes
    if len(entries) <= 1:
        return entries  # a batch always carries at least one entry
    if sum([len(entry.data) for entry in entries]) + ENTRY_OVERHEAD_BYTES * len(entries) <= budget:
        return entries  # the whole slice fits: no need to find the cut
    size = 0
    for count, entry in enumerate(entries):
        size += len(entry.data) + ENTRY_OVERHEAD_BYTES
        if size > budget and count > 0:
            return entries[:count]
    return entries


def _send_snapshot(self: RaftNode, to: NodeId, pr: Progress, now: float) -> bool:
    snap = self._snapshot
    if snap is None:  # pragma: no cover - a compacted log always has a snapshot
        return False
    pr.become_snapshot(snap.index, now)
    if type(snap) is ConfiguredSnapshot:
        self._msgs.append((to, InstallConfiguredSnapshot(self._term, snap)))
    else:
        self._msgs.append((to, InstallSnapshot(self._term, snap)))
    return True


def _on_leader_traffic_same_term(self: RaftNode, sender: NodeId, m: Any) -> None:
    self._reject(sender, m, f"a second leader claims term {m.term}")


def _on_append_response(self: RaftNode, sender: NodeId, m: AppendEntriesResponse) -> None:
    verify = self._verify_append_response
    if verify is not None:
        reason = verify(sender, m)
        if reason is not None:
            self._reject(sender, m, reason)
            return
        if self._verified is not None:
            self._verified(sender, m)
    pr = self._progress.get(sender)
    if pr is None:
        return
    pr.recent_active = True
    now = self._now
    log = self._log
    if not m.success:
        if m.index < 0 or m.hint_index < 0:
            self._reject(sender, m, "negative index in rejection")
            return
        if pr.state is _REPLICATE and (
            m.hint_index < pr.match or pr.repair_covers(m.hint_index)
        ):
            # Stale (sent before the follower acknowledged ``match``), or a
            # batch overtook an earlier one and the repair already on its
            # way fills the gap: sending again would only duplicate.
            return
        hint = log.find_conflict_by_term(m.hint_index, m.hint_term)
        if pr.maybe_decrease_to(m.index, hint):
            if pr.state is _REPLICATE:
                pr.become_probe(pr.next)
            self._send_append(sender, pr, now, True)
        return
    if m.index > log.last_index():
        self._reject(
            sender, m, f"acknowledges index {m.index} beyond our last {log.last_index()}"
        )
        return
    pr.replied_round = self._heartbeat_round
    old_match = pr.match
    if pr.maybe_update(m.index, self._heartbeat_round):
        state = pr.state
        if state is _PROBE or (
            state is _SNAPSHOT and pr.match >= pr.pending_snapshot
        ):
            pr.become_replicate(self._heartbeat_round)
        lazy = self._config.lazy_commit
        if self._count_ack(sender, old_match, pr.match) and self._maybe_commit():
            if self._role is not LEADER:
                return  # we removed ourselves and stepped down
            if not lazy:
                # Tell every follower the new commit index; followers in
                # REPLICATE get only entries they have not been sent yet.
                self._broadcast_append(now, send_if_empty=True)
        while self._send_append(sender, pr, now, False):
            pass
        if not pr.inflight and pr.commit_sent < log.committed and not lazy:
            # The last batch it was sent predates the commit index: tell it.
            self._send_append(sender, pr, now, True)
        if self._transfer_target == sender and pr.match == log.last_index():
            self._send(sender, TimeoutNow(self._term))


def _on_heartbeat_response(self: RaftNode, sender: NodeId, m: HeartbeatResponse) -> None:
    pr = self._progress.get(sender)
    if pr is None:
        return
    pr.recent_active = True
    now = self._now
    answered = m.round if m.round <= self._heartbeat_round else 0
    state = pr.state
    if state is _SNAPSHOT:
        if now - pr.snapshot_sent_at >= self._config.election_timeout_s:
            pr.become_probe()  # the snapshot was probably lost: send it again
            self._send_append(sender, pr, now, True)
    elif pr.lost_in_flight(answered):
        # A heartbeat sent well after our oldest unanswered AppendEntries
        # came back first: that AppendEntries was lost. Probe from ``match``.
        pr.become_probe()
        self._send_append(sender, pr, now, True)
    elif (
        state is _REPLICATE
        and not pr.inflight
        and pr.match < self._log.last_index()
    ):
        # The follower lags and nothing is in flight: send what it misses.
        self._send_append(sender, pr, now, True)
    elif state is _PROBE and not pr.probe_sent:
        self._send_append(sender, pr, now, True)
    if pr.heartbeat_round < m.round <= self._heartbeat_round:
        previous = pr.heartbeat_round
        pr.heartbeat_round = m.round
        if sender in self._voters:
            self._on_round_acknowledged(previous, m.round)


def _count_ack(self: RaftNode, peer: NodeId, old_match: int, new_match: int) -> bool:
    """Keep the count of voters holding entries past the commit index; True
    when it reaches a quorum, i.e. when recomputing the commit index may
    move it (this keeps an acknowledgement O(1) in large clusters)."""
    log = self._log
    commit = log.committed
    if old_match <= commit < new_match and peer in self._voters:
        self._above_commit += 1
    if self._joint is not None:
        return True  # joint (thesis §4.3): count both halves in _maybe_commit
    own = 1 if self._id in self._voters and log.last_index() > commit else 0
    return self._above_commit + own >= self._commit_quorum


def _recount_above_commit(self: RaftNode) -> None:
    commit = self._log.committed
    progress = self._progress
    self._above_commit = sum(
        1 for v in self._voters if (pr := progress.get(v)) is not None and pr.match > commit
    )


def _maybe_commit(self: RaftNode) -> bool:
    log = self._log
    if self._config.unsafe_commit_without_quorum:
        new_commit = log.last_index()
    elif self._joint is not None:
        new_commit = self._joint_commit_index()
        if new_commit <= log.committed or log.term(new_commit) != self._term:
            return False
    else:
        voters = self._voters
        progress = self._progress
        matches = [progress[v].match for v in voters if v != self._id and v in progress]
        if self._id in voters:
            matches.append(log.last_index())
        quorum = self._commit_quorum
        if len(matches) < quorum:
            return False
        matches.sort(reverse=True)
        new_commit = matches[quorum - 1]
        # §5.4.2: only entries of the current term commit by counting.
        if new_commit <= log.committed or log.term(new_commit) != self._term:
            return False
    if not log.commit_to(new_commit):
        return False
    self._recount_above_commit()
    self._on_commit_advanced()
    return True


def _joint_commit_index(self: RaftNode) -> int:
    """The highest index a commit quorum of *each* half holds (thesis §4.3)."""
    assert self._joint is not None
    me = self._id
    last = self._log.last_index()
    progress = self._progress
    result = last
    for voters, commit, _ in self._joint:
        matches = sorted(
            (
                last if v == me else (pr.match if (pr := progress.get(v)) is not None else 0)
                for v in voters
            ),
            reverse=True,
        )
        index = matches[commit - 1]
        if index < result:
            result = index
    return result


def _on_commit_advanced(self: RaftNode) -> None:
    if self._reads_awaiting_commit and self._committed_in_term():
        self._release_reads_on_commit()
    if self._id not in self._voters and self._log.committed >= self._confs[-1][0]:
        # Our removal committed (thesis §4.2.2): hand over by stepping down.
        if self._role is LEADER:
            self._hand_over()
        self._become_follower(self._term, None, self._now)
    elif (
        self._joint is not None
        and self._conf.auto_leave
        and self._role is LEADER
        and self._log.committed >= self._confs[-1][0]
    ):
        # The joint configuration committed: leave it (from ready(), where
        # appending cannot re-enter the commit computation in progress).
        self._leave_due = True
        self._append_pending = True


def _hand_over(self: RaftNode) -> None:
    """A leader outside the configuration it just committed steps down: it
    first tells everyone the commit index (so nodes outside the new
    configuration stop campaigning for it, ``RaftNode._promotable``) and
    sends ``TimeoutNow`` to the most up-to-date voter that holds its whole
    log, so a new leader is elected at once (thesis §3.10, §4.2.2)."""
    now = self._now
    self._broadcast_append(now, send_if_empty=True)
    last = self._log.last_index()
    progress = self._progress
    ready = [v for v in sorted(self._voters) if (pr := progress.get(v)) is not None and pr.match == last]
    if ready:
        self._send(ready[0], TimeoutNow(self._term))


# ================================================================ follower
def _heard_from_leader(self: RaftNode, sender: NodeId, now: float) -> None:
    self._leader = sender
    self._election_deadline = now + self._randomized_timeout_s
    if self._config.check_quorum:
        self._vote_ignore_until = now + self._config.election_timeout_s


def _append_response(
    self: RaftNode, index: int, success: bool, hint_index: int = 0, hint_term: int = 0
) -> AppendEntriesResponse:
    """Our answer to an AppendEntries (or a stale leader), signed if we sign."""
    response = AppendEntriesResponse(self._term, index, success, hint_index, hint_term)
    sign = self._sign_append_response
    if sign is None:
        return response
    return SignedAppendEntriesResponse(
        response.term, index, success, hint_index, hint_term, sign(response)
    )


def _on_append_entries(self: RaftNode, sender: NodeId, m: AppendEntries) -> None:
    verify = self._verify_append
    if verify is not None:
        reason = verify(sender, m)
        if reason is not None:
            self._reject(sender, m, reason)
            return
        if self._verified is not None:
            self._verified(sender, m)
    log = self._log
    entries = m.entries
    prev = m.prev_log_index
    reason = _check_append(m)
    if reason is not None:
        self._reject(sender, m, reason)
        return
    self._heard_from_leader(sender, self._now)
    committed = log.committed
    if prev < committed:
        # Entries through our commit index are committed, hence identical to
        # the leader's (leader completeness): skip that overlap.
        skip = committed - prev
        if skip > len(entries):
            self._msgs.append((sender, self._append_response(committed, True)))
            return
        if skip > 0 and (
            entries[skip - 1].term != log.term(committed)
            or (self._check_chain is not None and entries[skip - 1].digest != log.digest(committed))
        ):
            self._reject(sender, m, f"entry {committed} conflicts with a committed entry")
            return
        entries = entries[skip:]
        prev = committed
        prev_term = log.term(committed) or 0
    else:
        prev_term = m.prev_log_term
    if log.term(prev) != prev_term:
        hint_index = log.find_conflict_by_term(min(prev, log.last_index()), prev_term)
        hint_term = log.term(hint_index) or 0
        self._msgs.append(
            (sender, self._append_response(m.prev_log_index, False, hint_index, hint_term))
        )
        return
    if self._check_chain is not None and entries:
        digest = self._entry_digest
        held = log.digest(prev)
        if (
            digest is not None
            and (held or prev == 0)  # b"" past a snapshot install: unknown, not a mismatch
            and digest(held, entries[0]) != entries[0].digest
        ):
            # Same term at prev, another history before it (a leader of that
            # term equivocated): the logs do not match at prev. Back the
            # leader up to our commit index, which matches any leader's.
            hint_index = log.committed
            self._msgs.append(
                (sender, self._append_response(m.prev_log_index, False, hint_index, log.term(hint_index) or 0))
            )
            return
        reason = self._chain_mismatch(prev, entries)
        if reason is not None:
            self._reject(sender, m, reason)
            return
    last_new = prev + len(entries)
    if prev == log.snapshot_index + len(log.entries):
        # The entries start right after our last one (the steady state):
        # all of them are new.
        if entries:
            self._store_entries(entries)
    else:
        # Find the first entry we do not already hold. Entries we hold with
        # the same term are identical (log matching): never truncate them.
        term_of = log.term
        chained = self._check_chain is not None
        for offset, entry in enumerate(entries):
            if term_of(entry.index) != entry.term or (
                chained and log.digest(entry.index) != entry.digest
            ):
                # (A same-term entry with another digest gets here only when
                # the hooks allowed replacing it: see ``_chain_mismatch``.)
                self._store_entries(entries[offset:])
                break
    log.commit_to(min(m.leader_commit, last_new))
    response = AppendEntriesResponse(self._term, last_new, True)
    if self._sign_append_response is not None:
        response = self._append_response(last_new, True)
    self._msgs.append((sender, response))


def _chain_mismatch(self: RaftNode, prev: int, entries: list[Entry]) -> str | None:
    """Why ``entries`` (following our entry at ``prev``) break our hash chain."""
    log = self._log
    for entry in entries:
        held = log.entry(entry.index)
        if held is None:
            break
        if held.term == entry.term and held.digest != entry.digest:
            replace = self._replace_entry
            if replace is not None and replace(held, entry):
                break  # the hooks let this leader's history replace ours from here
            return (
                f"entry {entry.index} of term {entry.term} has another digest than the "
                "one this node holds: the leader equivocated"
            )
    check = self._check_chain
    assert check is not None
    return check(log.digest(prev), entries)


def _store_entries(self: RaftNode, entries: list[Entry]) -> None:
    log = self._log
    first = entries[0].index
    conf_changed = False
    if first <= log.last_index():
        confs = self._confs
        while len(confs) > 1 and confs[-1][0] >= first:
            confs.pop()
            conf_changed = True
    log.truncate_and_append(entries)
    for entry in entries:
        if entry.kind == _CONFIG:
            self._record_conf(entry)
            conf_changed = True
    if conf_changed:
        self._apply_conf(self._now)


def _on_heartbeat(self: RaftNode, sender: NodeId, m: Heartbeat) -> None:
    if m.leader_commit < 0 or m.round < 0:
        self._reject(sender, m, "negative commit index or round")
        return
    self._heard_from_leader(sender, self._now)
    self._log.commit_to(min(m.leader_commit, self._log.last_index()))
    self._send(sender, HeartbeatResponse(self._term, m.round))


def _on_install_snapshot(self: RaftNode, sender: NodeId, m: InstallSnapshot) -> None:
    snap = m.snapshot
    if snap.index < 0 or snap.term < 0 or snap.term > m.term or not snap.voters:
        self._reject(sender, m, "snapshot with invalid index, term or configuration")
        return
    snap_conf = Configuration.from_state(snap)
    problem = snap_conf.problem()
    if problem is not None:
        self._reject(sender, m, f"snapshot configuration: {problem}")
        return
    now = self._now
    self._heard_from_leader(sender, now)
    log = self._log
    if snap.index <= log.committed:
        self._send(sender, self._append_response(log.committed, True))
        return
    if log.term(snap.index) == snap.term:
        # We already hold the snapshot's last entry, so all before it too.
        log.commit_to(snap.index)
        self._send(sender, self._append_response(snap.index, True))
        return
    log.restore(snap.index, snap.term)
    self._snapshot = snap
    self._snapshot_to_emit = snap
    self._confs = [(snap.index, snap_conf, b"")]
    self._apply_conf(now)
    self._send(sender, self._append_response(snap.index, True))


def _on_timeout_now(self: RaftNode, sender: NodeId, m: TimeoutNow) -> None:
    if self._promotable():
        self._campaign(self._now, pre_vote=False, transfer=True)


def _check_append(m: AppendEntries) -> str | None:
    """Why a peer's AppendEntries is malformed, or ``None`` if it is well formed."""
    if m.prev_log_index < 0 or m.prev_log_term < 0 or m.leader_commit < 0:
        return "negative index, term or commit"
    if m.prev_log_term > m.term:
        return "prev_log_term is above the leader's term"
    entries = m.entries
    if not entries:
        return None
    if len(entries) == 1:
        # The common case (one proposal per batch): the loop below, unrolled.
        entry = entries[0]
        if (
            entry.index == m.prev_log_index + 1
            and m.prev_log_term <= entry.term <= m.term
            and entry.kind in _ENTRY_KINDS_WITHOUT_DATA_RULES
        ):
            return None
    else:
        # Whole-batch checks run in C (comprehensions, sorted, set algebra);
        # whatever fails them is re-checked entry by entry below to name the
        # first offending entry. Configuration entries take the slow path too.
        first = m.prev_log_index + 1
        terms = [entry.term for entry in entries]
        if (
            [entry.index for entry in entries] == list(range(first, first + len(entries)))
            and terms[0] >= m.prev_log_term
            and terms[-1] <= m.term
            and terms == sorted(terms)
            and {entry.kind for entry in entries} <= _ENTRY_KINDS_WITHOUT_DATA_RULES
        ):
            return None
    return _check_append_entries(m)


def _check_append_entries(m: AppendEntries) -> str | None:
    """``_check_append`` for entries, one by one: the first malformed one, or ``None``."""
    expected = m.prev_log_index + 1
    previous_term = m.prev_log_term
    for entry in m.entries:
        if entry.index != expected:
            return f"entries are not contiguous after {m.prev_log_index}"
        if entry.term < previous_term or entry.term > m.term:
            return f"entry {entry.index} has term {entry.term} out of order"
        if entry.kind not in _KNOWN_KINDS:
            return f"entry {entry.index} has unknown kind {entry.kind}"
        if entry.kind == _CONFIG:
            problem = conf_entry_problem(entry.data)
            if problem is not None:
                return f"entry {entry.index} is {problem}"
        previous_term = entry.term
        expected += 1
    return None
