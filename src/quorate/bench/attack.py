"""``quorate bench attack``: a penetration run against a real cluster on loopback.

Theory of operation. Four Raft node processes (TLS 1.3, a key per node,
``admission = "quorum"``, the default limits at the edge) serve a steady
write load from the orchestrator. Three malicious processes
(``quorate.bench.attack_agent``) then attack, in turn, each from its own
loopback address in its own subnet (``127.0.1.1``, ``127.0.2.1``,
``127.0.3.1``; the nodes are on ``127.0.0.1``):

====  ==================================================================
m1    holds a client certificate of the cluster CA (a stolen credential):
      a Sybil flood of join requests; replayed and forged registry
      commands and wire frames; forged votes (it also holds one voter's
      key); old TLS versions and plain TCP
m2    the same kind of credential: an eclipse of n1 (as many connections
      as it can hold), then a flood of half-open connections to n2
m3    n4's key and certificate: n4 is revoked by the other three members,
      its process is killed, and m3 takes its address and speaks as n4
====  ==================================================================

For each attack the run measures the honest cluster's committed writes per
second in a window *before* it and in a window of the same length from its
start (the same run, the same load), reads the nodes' counters before and
after (refusals by reason, drops, timeouts), and decides whether the attack
was *contained*: refused, or held to the bounds the configuration sets
(``contained_because`` says which). The agents speak to the node that orders
commands (they retry through an election); an attack whose commands only met
redirects tested nothing and counts as *not* contained. At the end every acknowledged write is
read back (``lost_writes``), and the vote the forged ballots went to is
tallied and verified by every replica.

Loopback is one machine: the attackers' CPU is the nodes' CPU, so a
throughput dip during an attack mixes the defence's cost with the
attacker's own (``throughput_ratio`` is during/before).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorate.cli.certs import ensure_certificates
from quorate.client import ClientError
from quorate.client.aio import AsyncClient
from quorate.client.keys import describe, revoke, rotate_signing_key, wait_until_retired
from quorate.client.votes import VotesClient
from quorate.crypto.keyfiles import key_file
from quorate.crypto.zk import Tallier, cast_ballot
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.aio.ports import free_port_block
from quorate.runtime.aio.transport import DEFAULT_HANDSHAKE_TIMEOUT_S
from quorate.security.limits import EdgeLimits
from quorate.state.kv import List, Put

NODES = 4
ATTACKERS = {"m1": "127.0.1.1", "m2": "127.0.2.1", "m3": "127.0.3.1"}
SCENARIOS: tuple[tuple[str, str, str], ...] = (
    ("sybil", "m1", "a Sybil flood of join requests and membership changes"),
    ("eclipse", "m2", "an eclipse of n1: many connections from one source"),
    ("flood", "m2", "a flood of half-open connections (handshakes never started)"),
    ("replay_forge", "m1", "replayed and forged registry commands, impersonation, bad frames"),
    ("forged_votes", "m1", "forged, replayed and ill-formed ballots"),
    ("old_tls", "m1", "TLS 1.2 / 1.1 / 1.0 and plain TCP"),
    ("revoked", "m3", "a revoked node's key, certificate and address"),
)
RAFT_OPTIONS = {"election_timeout_s": 1.0, "heartbeat_interval_s": 0.1}
SECURITY = {"admission": "quorum", "retire_after_s": 0.5, "relay_retry_s": 0.3}
HANDSHAKE_TIMEOUT_S = DEFAULT_HANDSHAKE_TIMEOUT_S
"""The nodes run with the transport's default."""
AGENT_TIMEOUT_S = 120.0
WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class AttackBenchConfig:
    window_s: float = 3.0
    """Length of the before and during windows of each attack."""
    clients: int = 8
    """Concurrent writers of the steady load."""
    sybil_requests: int = 150
    eclipse_connections: int = 400
    flood_connections: int = 600
    voters: int = 20
    directory: Path | None = None
    """Keep the cluster here (default: a temporary directory, removed)."""


class Load:
    """Writers putting unique keys; every acknowledgement timestamped."""

    def __init__(self, cluster: LocalCluster, clients: int) -> None:
        self.cluster = cluster
        self.clients = clients
        self.phase = "setup"
        self.acked: list[tuple[float, str, str]] = []
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(i)) for i in range(self.clients)]

    async def _writer(self, number: int) -> None:
        client = AsyncClient(cluster=self.cluster.directory, timeout_s=2.0, deadline_s=WAIT_S)
        i = 0
        try:
            while not self._stop.is_set():
                key, value = f"load/{self.phase}/{number}/{i}", str(i)
                try:
                    result = await client.execute(Put(key, value))
                except (ClientError, TimeoutError, OSError) as exc:
                    self.failures.append(f"{key}: {exc!r}")
                else:
                    if result.ok:
                        self.acked.append((time.monotonic(), key, value))
                i += 1
        finally:
            await client.close()

    def rate(self, start: float, end: float) -> float:
        done = sum(1 for t, _, _ in self.acked if start <= t < end)
        return round(done / (end - start), 1) if end > start else 0.0

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _metrics(client: AsyncClient) -> list[dict[str, int] | None]:
    statuses = await client.cluster_status()
    return [None if s is None else dict(s.metrics) for s in statuses]


def _delta(before: list[dict[str, int] | None], after: list[dict[str, int] | None], key: str) -> int:
    total = 0
    for b, a in zip(before, after, strict=True):
        if a is not None:
            total += a.get(key, 0) - (b or {}).get(key, 0)
    return total


def _per_node(metrics: list[dict[str, int] | None], key: str) -> dict[str, int | None]:
    return {node_name(NodeId(i + 1)): (None if m is None else m.get(key, 0)) for i, m in enumerate(metrics)}


async def _agent(config: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quorate.bench.attack_agent", json.dumps(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), AGENT_TIMEOUT_S)
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        return {"error": (err.decode().strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _count(answers: dict[str, int], *words: str) -> int:
    return sum(n for reason, n in answers.items() if any(w in reason for w in words))


async def run_attack_bench(config: AttackBenchConfig) -> dict[str, Any]:
    """Run every attack against a fresh cluster; the report (see the module docstring)."""
    temporary = None
    if config.directory is None:
        temporary = tempfile.TemporaryDirectory(prefix="quorate-attack-")
        directory = Path(temporary.name)
    else:
        directory = config.directory
    cluster = LocalCluster(
        directory / "cluster", nodes=NODES, base_port=free_port_block(NODES), insecure=False,
        options=dict(RAFT_OPTIONS), node_keys=True,
    )
    try:
        return await _run(cluster, config)
    finally:
        cluster.stop_all()
        if temporary is not None:
            temporary.cleanup()


async def _run(cluster: LocalCluster, config: AttackBenchConfig) -> dict[str, Any]:
    cluster.write_configs()
    for node in cluster.ids:
        node_config = dataclasses.replace(cluster.node_config(node), security=dict(SECURITY))
        cluster.config_path(node).write_text(node_config.to_toml())
    certs = cluster.tls_dir
    assert certs is not None
    ensure_certificates(certs, [*(node_name(n) for n in cluster.ids), "client", "m1", "m2"])
    cluster.start_all()
    client = AsyncClient(cluster=cluster.directory, timeout_s=2.0, deadline_s=WAIT_S)
    await _until(lambda: client.put("ready", "1"))
    load = Load(cluster, config.clients)
    await load.start()
    keys_dir = cluster.directory / "keys"
    # A legitimate rotation, whose announcement m1 will replay.
    rotation = await rotate_signing_key(client, keys_dir, NodeId(2))
    await wait_until_retired(client, NodeId(2), "signing")
    state = await describe(client)
    common = {"ca": str(certs / "ca.crt"), "cluster": state["cluster"], "endpoints": cluster.endpoints}
    limits = EdgeLimits()
    tallier = Tallier.generate()
    voters = [secrets.token_bytes(32) for _ in range(config.voters)]
    insider = secrets.token_bytes(32)
    votes_api = VotesClient(client)
    choices = [secrets.randbelow(2) for _ in voters]
    deadline_s = 0.0
    scenarios = []
    for name, attacker, description in SCENARIOS:
        source = ATTACKERS[attacker]
        credential = {"cert": str(certs / f"{attacker}.crt"), "key": str(certs / f"{attacker}.key")}
        agent: dict[str, Any] = {"scenario": name, "source": source, **common, **credential}
        revoked_at = None
        if name == "sybil":
            agent |= {"count": config.sybil_requests, "first_node": 1000}
        elif name == "eclipse":
            agent |= {"target": cluster.endpoints[0], "count": config.eclipse_connections, "hold_s": config.window_s}
        elif name == "flood":
            agent |= {
                "target": cluster.endpoints[1], "count": config.flood_connections,
                "hold_s": HANDSHAKE_TIMEOUT_S + 2.0, "handshake_timeout_s": HANDSHAKE_TIMEOUT_S,
            }
        elif name == "replay_forge":
            agent |= {"replay": [rotation.command.hex()]}
        elif name == "forged_votes":
            ballots = [cast_ballot("budget", v, seed, tallier.tally_key) for v, seed in zip(choices, voters, strict=True)]
            electorate = [b.voter for b in ballots] + [cast_ballot("budget", 0, insider, tallier.tally_key).voter]
            deadline_s = time.time() + config.window_s * 2 + 20.0
            await votes_api.open_proposal("budget", electorate, tallier.tally_key, deadline_s)
            for ballot in ballots:
                await votes_api.cast(ballot)
            agent |= {
                "proposal": "budget",
                "tally_key": tallier.tally_key.hex(),
                "insider_seed": insider.hex(),
                "honest": [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in dataclasses.asdict(b).items()} for b in ballots[:2]],
            }
        elif name == "old_tls":
            agent |= {"target": cluster.endpoints[0]}
        load.phase = name
        before_start = time.monotonic()
        await asyncio.sleep(config.window_s)
        before_end = time.monotonic()
        metrics_before = await _metrics(client)
        if name == "revoked":
            decided = await revoke(client, keys_dir, NodeId(4), [NodeId(1), NodeId(2), NodeId(3)], "bench: key stolen")
            revoked_at = decided.index
            await _until_true(functools.partial(_revoked_everywhere, client, revoked_at))
            cluster.kill(NodeId(4))
            seed = key_file(keys_dir, NodeId(4)).read_text().strip()
            agent |= {
                "node": 4, "listen": cluster.endpoints[3], "hold_s": config.window_s + 1.0, "seed": seed,
                "endpoints": cluster.endpoints[:3],  # n4 is gone: m3 stands at its address
                "node_cert": str(certs / "n4.crt"), "node_key": str(certs / "n4.key"),
            }
        start = time.monotonic()
        report = await _agent(agent)
        attack_s = time.monotonic() - start
        if attack_s < config.window_s:
            await asyncio.sleep(config.window_s - attack_s)
        end = time.monotonic()
        metrics_after = await _metrics(client)
        before = load.rate(before_start, before_end)
        during = load.rate(start, end)
        entry: dict[str, Any] = {
            "attack": name,
            "attacker": f"{attacker} ({source})",
            "what": description,
            "attempts": report.get("attempts", 0),
            "answers": report.get("answers", {}),
            "attack_s": round(attack_s, 2),
            "throughput_before_ops": before,
            "throughput_during_ops": during,
            "throughput_ratio": round(during / before, 2) if before else None,
        }
        if "error" in report:
            entry["agent_error"] = report["error"]
        counters = _counters_for(name, metrics_before, metrics_after)
        entry["counters"] = counters
        contained, because = _contained(name, report.get("answers", {}), counters, metrics_after, limits, revoked_at)
        entry["contained"] = contained and "error" not in report and during > 0
        entry["contained_because"] = because
        if revoked_at is not None:
            entry["revoked_at_index"] = revoked_at
        scenarios.append(entry)
    await load.stop()
    vote = await _tally(client, votes_api, tallier, deadline_s, sum(choices), len(voters))
    lost = await _lost_writes(client, load)
    await client.close()
    ok = all(s["contained"] for s in scenarios) and not lost and not load.failures and vote["verified_by_every_replica"]
    return {
        "cluster": {"protocol": "raft", "nodes": NODES, "tls": "1.3", "admission": SECURITY["admission"], "edge_limits": dataclasses.asdict(limits)},
        "window_s": config.window_s,
        "writers": config.clients,
        "scenarios": scenarios,
        "acknowledged_writes": len(load.acked),
        "failed_writes": len(load.failures),
        "failures": load.failures[:5],
        "lost_writes": len(lost),
        "vote": vote,
        "ok": ok,
    }


async def _until(action: Callable[[], Any]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            await action()
            return
        except (ClientError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _until_true(check: Callable[[], Any]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster did not reach the expected state")
        await asyncio.sleep(0.2)


async def _revoked_everywhere(client: AsyncClient, index: int | None) -> bool:
    metrics = await _metrics(client)
    return all(m is not None and m.get("keys.revoked_at.n4") == index for m in metrics[:3])


COUNTERS = {
    "sybil": ("security.admission_rate_limited", "security.admissions_refused", "keys.refused"),
    "eclipse": (
        "transport.refused_connections_per_address",
        "transport.refused_connections_per_subnet",
        "transport.refused_connections_total",
        "transport.refused_handshakes_per_address",
    ),
    "flood": (
        "transport.refused_connections_per_address",
        "transport.refused_handshakes_per_address",
        "transport.refused_handshakes",
        "transport.handshake_timeouts",
    ),
    "replay_forge": ("keys.refused", "transport.peer_name_mismatch", "transport.malformed_messages", "transport.oversize_frames"),
    "forged_votes": ("votes.refused",),
    "old_tls": ("transport.tls_refused", "transport.handshake_failures", "transport.handshake_timeouts"),
    "revoked": ("transport.peer_refused", "security.revoked_messages_dropped", "keys.refused"),
}


def _counters_for(name: str, before: list[dict[str, int] | None], after: list[dict[str, int] | None]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _delta(before, after, key) for key in COUNTERS[name]}
    if name == "forged_votes":
        out["votes.refused per node"] = {
            node: (None if a is None else a.get("votes.refused", 0) - (b or {}).get("votes.refused", 0))
            for node, a, b in zip(_per_node(after, "votes.refused"), after, before, strict=True)
        }
    if name == "eclipse":
        out["n1 peers connected after"] = (after[0] or {}).get("transport.peers_connected")
    if name == "sybil":
        out["registry members after"] = _per_node(after, "keys.members")
    if name == "revoked":
        out["revoked_at per node"] = _per_node(after, "keys.revoked_at.n4")
    return out


def _contained(
    name: str,
    answers: dict[str, int],
    counters: dict[str, Any],
    after: list[dict[str, int] | None],
    limits: EdgeLimits,
    revoked_at: int | None,
) -> tuple[bool, str]:
    if name == "sybil":
        members = {v for v in counters["registry members after"].values() if v is not None}
        admitted = members != {NODES}
        # Some requests must have reached the leader's registry (not only
        # redirects and the edge's refusals), or the run tested nothing.
        reached = sum(answers.values()) - _count(answers, "redirect", "rate-limited")
        return (
            not admitted and counters["security.admission_rate_limited"] > 0 and reached > 0,
            f"no node admitted (registry members stay {NODES}); "
            f"{counters['security.admission_rate_limited']} requests cut off at the edge, the rest wait for approvals that never come",
        )
    if name == "eclipse":
        held = _count(answers, "held to the end")
        peers = counters["n1 peers connected after"]
        return (
            held <= limits.max_connections_per_address and peers == NODES - 1,
            f"{held} connections held (limit {limits.max_connections_per_address} per unknown address), the rest refused; n1 kept its {peers} peers",
        )
    if name == "flood":
        lingering = _count(answers, "still open", "closed after waiting")
        return (
            lingering <= limits.max_handshakes_per_address
            and _count(answers, "still open") == 0
            and counters["transport.handshake_timeouts"] <= limits.max_handshakes_per_address,
            f"{_count(answers, 'closed at once')} refused at once, {lingering} held until the handshake timeout "
            f"(limits: {limits.max_connections_per_address} connections per unknown address, "
            f"{limits.max_handshakes_per_address} handshakes in flight per address)",
        )
    if name == "old_tls":
        return (_count(answers, "completed", "answered", "left open") == 0, "no handshake below TLS 1.3 completed; plain TCP closed")
    if name == "revoked":
        at = {v for v in counters["revoked_at per node"].values() if v is not None}
        return (
            _count(answers, "left open", "accepted", "redirect") == 0 and at == {revoked_at},
            f"revoked at log index {revoked_at} on every node that answers; every dial to its address closed, its signed commands refused",
        )
    if name == "forged_votes":
        per_node = {v for v in counters["votes.refused per node"].values() if v is not None}
        return (
            _count(answers, "accepted", "redirect") == 0 and len(per_node) == 1 and min(per_node) > 0,
            "every ballot refused with its reason, the same count on every replica",
        )
    return (
        _count(answers, "accepted", "answered", "left open", "redirect") == 0,
        "every input refused with a reason or its connection closed",
    )


async def _tally(client: AsyncClient, votes_api: VotesClient, tallier: Tallier, deadline_s: float, yes: int, voters: int) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, deadline_s - time.time()) + 0.5)
    opening = tallier.open_tally("budget", await votes_api.ballots("budget"))
    result = await votes_api.open_tally("budget", opening)
    digests: set[Any] = set()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        metrics = [m for m in await _metrics(client) if m is not None]
        digests = {(m.get("votes.tallied"), m.get("votes.outcomes_digest")) for m in metrics}
        if len(digests) == 1 and next(iter(digests))[0] == 1:
            break
        await asyncio.sleep(0.2)
    return {
        "yes": result.yes,
        "counted": result.counted,
        "expected": [yes, voters],
        "verified_by_every_replica": len(digests) == 1 and (result.yes, result.counted) == (yes, voters),
    }


async def _lost_writes(client: AsyncClient, load: Load) -> list[str]:
    stored: dict[str, str] = {}
    for phase in {key.split("/")[1] for _, key, _ in load.acked}:
        result = await client.execute(List(f"load/{phase}/", limit=len(load.acked) + 1))
        stored.update(dict(result.items or []))
    return [key for _, key, value in load.acked if stored.get(key) != value]
