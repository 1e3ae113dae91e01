"""Golden Raft scenarios: stories in ``tests/scenarios/raft/*.txt``.

A script is a list of blocks separated by blank lines. A block is one command,
optionally followed by a line ``----`` and the output the command must print.
Lines starting with ``#`` are comments. Commands:

    cluster voters=1,2,3 [learners=4] [pre_vote=true] [check_quorum=true] [seed=0]
                         [quiesce_after_s=0.5]
    campaign N           propose N DATA        deliver          status
    isolate N            cut A B               heal             crash N / restart N
    tick N +1.5s         (time moves by 1.5 s; only N's timers fire; nothing delivered)
    advance 1.5s         (time moves; every node's timers fire; messages delivered)
    compact N            (N snapshots its state machine at its applied index)
    transfer A B         conf A add_voter|remove_node|add_learner|promote_learner B
    add-node N           (start node N knowing the leader's configuration)
    read N CONTEXT       (a linearizable read; `reads N` lists those answered)
    applied N            messages  (queued messages, summarised)
    quiet                (which nodes are quiesced: no timer armed)
    unquiesce N          forget-leader N      refuse-leader N L

Set QUORATE_REWRITE_SCENARIOS=1 to rewrite the expected output from a run
(then read the diff before committing it).
"""

from __future__ import annotations

import os
import pathlib

import pytest
from tests.unit.raft.network import Network, encode_state

from quorate.core.protocol import Accepted, Redirect, Refused
from quorate.ids import NodeId
from quorate.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ConfChange,
    ConfChangeKind,
    Heartbeat,
    InstallSnapshot,
    RaftConfig,
    RequestVote,
)

SCRIPTS = sorted((pathlib.Path(__file__).parent / "raft").glob("*.txt"))
REWRITE = os.environ.get("QUORATE_REWRITE_SCENARIOS") == "1"


def _outcome(outcome: object) -> str:
    if isinstance(outcome, Accepted):
        return f"accepted index={outcome.index} term={outcome.term}"
    if isinstance(outcome, Redirect):
        return f"redirect leader={outcome.leader}"
    if isinstance(outcome, Refused):
        return f"refused: {outcome.reason}"
    return repr(outcome)


def _message(message: object) -> str:
    if isinstance(message, AppendEntries):
        return f"AppendEntries term={message.term} prev={message.prev_log_index}/{message.prev_log_term} entries={len(message.entries)} commit={message.leader_commit}"
    if isinstance(message, AppendEntriesResponse):
        return f"AppendEntriesResponse term={message.term} index={message.index} success={message.success}"
    if isinstance(message, Heartbeat):
        return f"Heartbeat term={message.term} commit={message.leader_commit}"
    if isinstance(message, InstallSnapshot):
        return f"InstallSnapshot term={message.term} index={message.snapshot.index}"
    if isinstance(message, RequestVote):
        return (
            f"RequestVote term={message.term} last={message.last_log_index}/{message.last_log_term}"
        )
    return f"{type(message).__name__} term={getattr(message, 'term', '?')}"


class Interpreter:
    def __init__(self) -> None:
        self.net: Network | None = None

    @property
    def network(self) -> Network:
        assert self.net is not None, "the script must start with `cluster`"
        return self.net

    def run(self, line: str) -> list[str]:
        words = line.split()
        command, args = words[0], words[1:]
        handler = getattr(self, "do_" + command.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown scenario command {command!r}")
        out: list[str] = handler(*args) or []
        return out

    # ------------------------------------------------------------ commands
    def do_cluster(self, *args: str) -> None:
        options = dict(a.split("=", 1) for a in args)
        voters = [int(v) for v in options.pop("voters").split(",")]
        learners = [int(v) for v in options.pop("learners", "").split(",") if v]
        seed = int(options.pop("seed", "0"))
        quiesce_after_s = float(options.pop("quiesce_after_s", "0"))
        flags = {k: v == "true" for k, v in options.items()}
        config = RaftConfig(
            pre_vote=flags.pop("pre_vote", False),
            check_quorum=flags.pop("check_quorum", False),
            quiesce_after_s=quiesce_after_s,
        )
        assert not flags, f"unknown cluster options {flags}"
        self.net = Network(voters, learners=learners, config=config, seed=seed)

    def do_campaign(self, node: str) -> None:
        self.network.campaign(int(node))

    def do_propose(self, node: str, data: str) -> list[str]:
        return [_outcome(self.network.propose(int(node), data.encode()))]

    def do_deliver(self) -> list[str]:
        return [f"delivered {self.network.deliver()}"]

    def do_isolate(self, node: str) -> None:
        self.network.isolate(int(node))

    def do_cut(self, a: str, b: str) -> None:
        self.network.cut(int(a), int(b))

    def do_heal(self) -> None:
        self.network.heal()

    def do_crash(self, node: str) -> None:
        self.network.crash(int(node))

    def do_restart(self, node: str) -> None:
        self.network.restart(int(node))

    def do_tick(self, node: str, delta: str) -> None:
        net = self.network
        net.now += float(delta.lstrip("+").rstrip("s"))
        net.tick(int(node))

    def do_advance(self, delta: str) -> None:
        self.network.advance(float(delta.rstrip("s")))

    def do_compact(self, node: str) -> list[str]:
        net = self.network
        raft = net.node(int(node))
        raft.compact(raft.applied_index, encode_state(net.applied[NodeId(int(node))]))
        net.storage[raft.id].persist(None, [], raft.snapshot)
        return [f"snapshot index={raft.snapshot_index} first={raft.first_index}"]

    def do_transfer(self, node: str, target: str) -> list[str]:
        net = self.network
        outcome = net.node(int(node)).transfer_leadership(NodeId(int(target)), net.now)
        net.collect(NodeId(int(node)))
        return [_outcome(outcome)]

    def do_conf(self, node: str, kind: str, target: str) -> list[str]:
        net = self.network
        change = ConfChange(ConfChangeKind(kind), NodeId(int(target)))
        outcome = net.node(int(node)).propose_conf_change(change, net.now)
        net.collect(NodeId(int(node)))
        return [_outcome(outcome)]

    def do_add_node(self, node: str) -> None:
        net = self.network
        leader = net.leader()
        assert leader is not None, "add-node needs a leader to copy the configuration from"
        net.add_node(int(node), voters=leader.voters, learners=leader.learners)

    def do_read(self, node: str, context: str) -> list[str]:
        net = self.network
        outcome = net.node(int(node)).read_index(context.encode(), net.now)
        net.collect(NodeId(int(node)))
        return [_outcome(outcome)]

    def do_reads(self, node: str) -> list[str]:
        reads = self.network.reads[NodeId(int(node))]
        return [f"read index={r.index} context={r.context.decode()}" for r in reads] or ["no reads"]

    def do_applied(self, node: str) -> list[str]:
        applied = self.network.applied[NodeId(int(node))]
        return [" ".join(c.decode() for c in applied) or "(nothing)"]

    def do_messages(self) -> list[str]:
        return [f"{s}->{d} {_message(m)}" for s, d, m in self.network.queue] or ["no messages"]

    def do_quiet(self) -> list[str]:
        net = self.network
        quiet = [str(nid) for nid in sorted(net.nodes) if nid not in net.down and net.nodes[nid].quiesced]
        return [f"quiet: {','.join(quiet) or 'none'}"]

    def do_unquiesce(self, node: str) -> None:
        net = self.network
        net.node(int(node)).unquiesce(net.now)
        net.collect(NodeId(int(node)))

    def do_forget_leader(self, node: str) -> None:
        net = self.network
        net.node(int(node)).forget_leader(net.now)
        net.collect(NodeId(int(node)))

    def do_refuse_leader(self, node: str, leader: str) -> None:
        net = self.network
        net.node(int(node)).refuse_leader(NodeId(int(leader)), net.now)
        net.collect(NodeId(int(node)))

    def do_status(self) -> list[str]:
        net = self.network
        lines = []
        for nid in sorted(net.nodes):
            n = net.nodes[nid]
            state = "down" if nid in net.down else n.role.value
            lines.append(
                f"{nid}: {state} term={n.term} leader={n.leader_id} commit={n.commit_index} "
                f"last={n.last_index} voters={','.join(map(str, sorted(n.voters)))}"
                + (f" learners={','.join(map(str, sorted(n.learners)))}" if n.learners else "")
            )
        return lines


def _parse(text: str) -> list[tuple[str, list[str] | None]]:
    blocks: list[tuple[str, list[str] | None]] = []
    for raw in text.strip().split("\n\n"):
        lines = [ln for ln in raw.strip().splitlines() if not ln.startswith("#")]
        if not lines:
            continue
        command = lines[0]
        expected: list[str] | None = None
        if len(lines) > 1:
            assert lines[1] == "----", f"expected '----' after {command!r}"
            expected = lines[2:]
        blocks.append((command, expected))
    return blocks


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_raft_scenario(script: pathlib.Path) -> None:
    text = script.read_text()
    interpreter = Interpreter()
    rewritten: list[str] = []
    for raw in text.strip().split("\n\n"):
        comments = [ln for ln in raw.strip().splitlines() if ln.startswith("#")]
        parsed = _parse(raw)
        if not parsed:
            rewritten.append("\n".join(comments))
            continue
        ((command, expected),) = parsed
        output = interpreter.run(command)
        if REWRITE:
            block = [*comments, command]
            if output:
                block += ["----", *output]
            rewritten.append("\n".join(block))
        else:
            assert output == (expected or []), (
                f"{script.name}: `{command}` printed\n"
                + "\n".join(output)
                + "\nexpected\n"
                + "\n".join(expected or [])
            )
    if REWRITE:
        script.write_text("\n\n".join(rewritten) + "\n")


def test_scenarios_exist() -> None:
    names = {p.stem for p in SCRIPTS}
    assert {
        "election",
        "replication",
        "leader_isolation",
        "prevote",
        "transfer",
        "snapshot",
        "learner",
    } <= names
