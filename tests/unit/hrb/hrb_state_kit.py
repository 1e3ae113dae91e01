"""Builders for the core state machine's tests: a genesis over N nodes, and
signed commands (cost-model signatures: unforgeable without the key, fast)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from quorate.core.evidence import Evidence, sign_statement
from quorate.crypto.dkg import encryption_keypair
from quorate.crypto.keyring import CostModelKeyring
from quorate.hrb.core.commands import Tick, encode_command, tick_bytes
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.genesis import CoreGenesis, genesis
from quorate.hrb.core.snapshot import CoreSnapshot, decode_snapshot, encode_snapshot
from quorate.hrb.core.state import CoreState, Decided, Refused
from quorate.hrb.core.threshold import CostModelSuite
from quorate.hrb.messages import (
    RemovalProposal,
    ShardProof,
    ShardVote,
    SignedMessageEvidence,
    Transaction,
    TxnOp,
    TxnRequest,
    removal_bytes,
    shard_vote_bytes,
    txn_request_bytes,
)
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId

KEYRING = CostModelKeyring(7)


def txn_id(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()[:16]


class Kit:
    """A deployment of ``nodes`` nodes in shards of ``shard_size`` and its core state."""

    def __init__(self, nodes: int = 12, shard_size: int = 4, rules: CoreRules | None = None, seed: bytes = b"kit") -> None:
        self.rules = rules or CoreRules(core_size=4, epoch_length=10**9, tick_interval_s=1.0, txn_timeout_s=3.0)
        self.suite = CostModelSuite(seed)
        keys = {NodeId(n): encryption_keypair(b"%d" % n)[1] for n in range(1, nodes + 1)}
        self.genesis: CoreGenesis = genesis(keys, shard_size=shard_size, seed=seed, suite=self.suite, rules=self.rules)
        self.shards = self.genesis.shards
        self.term: dict[int, int] = dict.fromkeys(self.shards, 1)
        self.index = 0

    def state(self) -> CoreState:
        return CoreState(_copy(self.genesis.snapshot), verifier=KEYRING.verifier(NodeId(0)))

    def leader(self, shard: int) -> int:
        return self.shards[shard][0]

    def keys(self, shard: int, count: int = 1, prefix: str = "k") -> list[str]:
        out, i = [], 0
        while len(out) < count:
            key = f"{prefix}{i}"
            if shard_of_key(key, len(self.shards)) == shard:
                out.append(key)
            i += 1
        return out

    def txn(self, tag: str, home: int, keys: Iterable[str], value: str = "v") -> Transaction:
        return Transaction(txn_id(tag), 1, 1, home, tuple(TxnOp(k, "put", value) for k in keys))

    def request(self, txn: Transaction, *, shard: int | None = None, leader: int | None = None, term: int | None = None) -> bytes:
        shard = txn.home_shard if shard is None else shard
        leader = self.leader(txn.home_shard) if leader is None else leader
        term = self.term.get(shard, 1) if term is None else term
        data = txn_request_bytes(shard, leader, term, txn)
        return encode_command(TxnRequest(shard, leader, term, txn, KEYRING.signer(NodeId(leader)).sign(data)))

    def vote(
        self,
        tid: bytes,
        shard: int,
        yes: bool,
        *,
        signer: int | None = None,
        ackers: Iterable[int] | None = None,
        reason: str | None = None,
    ) -> bytes:
        signer = self.leader(shard) if signer is None else signer
        self.index += 1
        reason = ("" if yes else "insufficient balance") if reason is None else reason
        data = shard_vote_bytes(tid, shard, yes, reason, 1, self.index, b"digest")
        acks = {m: KEYRING.signer(NodeId(m)).sign(data) for m in (ackers or ())}
        proof = ShardProof(1, self.index, b"digest", signer, KEYRING.signer(NodeId(signer)).sign(data), acks)
        return encode_command(ShardVote(tid, shard, yes, reason, proof))

    def tick(self, member: int, count: int, epoch: int = 0) -> bytes:
        return encode_command(Tick(epoch, member, count, KEYRING.signer(NodeId(member)).sign(tick_bytes(epoch, member, count))))

    def equivocation(self, offender: int, kind: str = "shard.append") -> Evidence:
        signer = KEYRING.signer(NodeId(offender))
        return Evidence(sign_statement(signer, kind, 5, 1, b"a"), sign_statement(signer, kind, 5, 1, b"b"))

    def removal(self, accuser: int, evidence: Evidence | SignedMessageEvidence, *, signed: bool = True) -> bytes:
        signature = KEYRING.signer(NodeId(accuser)).sign(removal_bytes(accuser, evidence)) if signed else b""
        return encode_command(RemovalProposal(accuser, evidence, signature))


def _copy(snapshot: CoreSnapshot) -> CoreSnapshot:
    return decode_snapshot(encode_snapshot(snapshot))


def decided(effects: list[object]) -> list[Decided]:
    return [e for e in effects if isinstance(e, Decided)]


def refused(effects: list[object]) -> list[Refused]:
    return [e for e in effects if isinstance(e, Refused)]
