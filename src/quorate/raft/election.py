"""Leader election (Raft §5.2, §5.4.1; thesis §3.10, §6.2, §9.6): campaigns,
votes, leader stickiness, and the caller's say over whom to follow.

Theory of operation
-------------------
- A follower whose randomized election deadline passes campaigns. With
  pre-vote (thesis §9.6) it first asks ``PreVote`` for ``term + 1`` without
  changing its term; only when an election quorum would grant it does it bump
  the term, vote for itself (persisted before the requests leave) and send
  ``RequestVote``. A pre-candidate's term never changes, so a partitioned node
  cannot force the cluster's term up.
- One vote per term (§5.2), and only for a log at least as up to date as ours
  (§5.4.1). An election quorum is ``QuorumRule.election_quorum`` (a majority
  by default); a campaign is lost as soon as too many refused for the rest to
  make a quorum.
- Stickiness (with check-quorum, thesis §6.2 and §4.2.3): a node that heard
  from a leader less than T ago, a leader, a quiet (quiesced) follower and a
  node restarted less than T ago ignore (pre-)vote requests, except those of
  an election a leader started on purpose with ``TimeoutNow``. Ignoring a
  vote request is always safe: it is the same as losing it.
- ``forget_leader`` (etcd's ``ForgetLeader``): a follower drops its leader and,
  unless lease reads rely on its loyalty, its stickiness, so it will vote in
  an election against a leader it has reason to distrust. It does not
  campaign by itself: its election deadline decides, or ``campaign``.
- ``refuse_leader(node)``: never vote for ``node`` and never follow it. Its vote
  requests and its messages as a leader are dropped and counted in
  ``Ready.rejected``. Without the second half a deposed leader's next heartbeat
  would make its followers follow it again. ``allow_leader`` undoes it.

The functions taking ``self: RaftNode`` are ``RaftNode`` methods, attached in
``quorate.raft.node``; a subclass may override any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quorate.errors import LocalProtocolError
from quorate.ids import NodeId
from quorate.raft.messages import (
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
)
from quorate.raft.roles import CANDIDATE, LEADER, NEVER, PRE_CANDIDATE

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode


# ------------------------------------------------------------ public
def campaign(self: RaftNode, now: float) -> None:
    """Start an election at once (tests and operator tooling). Honours pre-vote."""
    self._now = now
    if self._role is not LEADER and self._promotable():
        self._campaign(now, pre_vote=self._config.pre_vote, transfer=False)


def forget_leader(self: RaftNode, now: float) -> None:
    """Drop this follower's leader (etcd's ``ForgetLeader``).

    Its stickiness goes too, so it grants votes at once; with
    ``read_mode="lease"`` it keeps refusing votes until T after it last
    heard from the leader, as the leader's lease counts on (etcd refuses
    the call in that mode). A quiet follower wakes: its election timer
    runs again. No effect on a leader or a candidate."""
    self._now = now
    role = self._role
    if role is LEADER or role is CANDIDATE or role is PRE_CANDIDATE:
        return
    if self._quiesced:
        self._wake(now)
    self._leader = None
    if self._config.read_mode != "lease":
        self._vote_ignore_until = NEVER


def refuse_leader(self: RaftNode, node: NodeId, now: float) -> None:
    """Never vote for ``node`` nor follow it (see the module docstring);
    forget it if it is our leader."""
    if node == self._id:
        raise LocalProtocolError("a node cannot refuse itself as leader")
    self._refused = self._refused | {node}
    if self._leader == node:
        self.forget_leader(now)


def allow_leader(self: RaftNode, node: NodeId) -> None:
    """Undo ``refuse_leader(node)``."""
    self._refused = self._refused - {node}


# ------------------------------------------------------------ campaigning
def _campaign(self: RaftNode, now: float, *, pre_vote: bool, transfer: bool) -> None:
    log = self._log
    self._leave_leadership()
    self._leader = None
    if pre_vote:
        self._role = PRE_CANDIDATE
        self._handlers = self._candidate_handlers
        request: Any = PreVote(self._term + 1, log.last_index(), log.last_term())
    else:
        self._term += 1
        self._vote = self._id
        self._role = CANDIDATE
        self._handlers = self._candidate_handlers
        request = RequestVote(self._term, log.last_index(), log.last_term(), transfer)
    self._reset_election_timer(now)
    self._votes = {self._id: True}
    if self._poll_result() > 0:
        self._won_poll(now)
        return
    for voter in sorted(self._voters):
        if voter != self._id:
            self._send(voter, request)


def _poll_result(self: RaftNode) -> int:
    """+1 won, -1 lost, 0 undecided. While joint (thesis §4.3) an election
    quorum of each half is needed, and a campaign that cannot reach one in
    either half is lost."""
    if self._joint is not None:
        votes = self._votes
        won = True
        for voters, _, quorum in self._joint:
            granted = 0
            refused = 0
            for voter in voters:
                vote = votes.get(voter)
                if vote is True:
                    granted += 1
                elif vote is False:
                    refused += 1
            if refused > len(voters) - quorum:
                return -1
            if granted < quorum:
                won = False
        return 1 if won else 0
    quorum = self._election_quorum
    voters = self._voters
    granted = 0
    refused = 0
    for voter, vote in self._votes.items():
        if voter in voters:
            if vote:
                granted += 1
            else:
                refused += 1
    if granted >= quorum:
        return 1
    if refused > len(voters) - quorum:
        return -1
    return 0


def _won_poll(self: RaftNode, now: float) -> None:
    if self._role is PRE_CANDIDATE:
        self._campaign(now, pre_vote=False, transfer=False)
    else:
        self._become_leader(now)


def _on_leader_traffic_as_candidate(self: RaftNode, sender: NodeId, m: Any) -> None:
    # A leader won this term (§5.2): follow it.
    self._become_follower(self._term, sender, self._now)
    handler = self._handlers.get(type(m))
    if handler is not None:
        handler(self, sender, m)


def _on_vote_response(self: RaftNode, sender: NodeId, m: Any) -> None:
    expected = PreVoteResponse if self._role is PRE_CANDIDATE else RequestVoteResponse
    if type(m) is not expected:
        return
    if sender not in self._voters:
        return
    self._votes.setdefault(sender, m.granted)
    result = self._poll_result()
    if result > 0:
        self._won_poll(self._now)
    elif result < 0:
        self._become_follower(self._term, None, self._now)


# ------------------------------------------------------------ voting
def _in_leader_lease(self: RaftNode, now: float) -> bool:
    if not self._config.check_quorum:
        return False
    if self._role is LEADER:
        return True
    # A quiet follower heard from its leader as recently as it cares.
    return self._quiesced or now < self._vote_ignore_until


def _handle_vote_request(self: RaftNode, sender: NodeId, m: Any, now: float) -> None:
    pre = type(m) is PreVote
    can_vote = (
        self._vote == sender
        or (self._vote is None and self._leader is None)
        or (pre and m.term > self._term)
    )
    if can_vote and self._log.is_up_to_date(m.last_log_index, m.last_log_term):
        if pre:
            self._send(sender, PreVoteResponse(m.term, True))
        else:
            self._vote = sender
            self._reset_election_timer(now)
            self._send(sender, RequestVoteResponse(self._term, True))
    elif pre:
        self._send(sender, PreVoteResponse(self._term, False))
    else:
        self._send(sender, RequestVoteResponse(self._term, False))
