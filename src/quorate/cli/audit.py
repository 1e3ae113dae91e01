"""``quorate audit``: the cluster's audit trail of decisions.

Prints the replicated audit trail (``quorate.state.agents.audit``): agents
registered, proposals opened, every ballot with its signer's id, refused
ballots with the reason (forged, unknown voter, double vote, late),
outcomes with their tally, task claims and completions, completions refused
for a stale fencing token, locks granted and lost — filtered by ``--kind``
(a prefix: ``proposal.``), ``--subject`` (a proposal, task, lock or agent
name) and ``--actor`` (the signer, agent or holder), from ``--since SEQ``
on. Every replica holds the same trail, so any node answers. Proofs of
misbehaviour on record are records too (``--kind evidence.``), one kind per
kind of proof (``quorate.core.evidence.EvidenceKind``): an equivocation
(``evidence.equivocation``: the statement and its slot) or a Casper FFG
validator's slashing (``evidence.slashing``: the condition and both votes'
links), shown on one line like any other record.

For BFT clusters the evidence each replica holds is printed after it: the
equivocations it detected and the replicas it excluded (from each node's
status, as of now). ``--json`` prints one JSON object. Exit codes as
``quorate kv``: 1 when the cluster did not answer, 2 for usage mistakes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from quorate.cli.kv import Directory, Endpoints, Insecure, Timeout, TlsDir, TlsName, _target
from quorate.cli.main import app, fail
from quorate.client import Client
from quorate.client.agents import AsyncAudit
from quorate.client.contact import DEFAULT_DEADLINE_S
from quorate.state.agents.audit import AUDIT_QUERY_MAX_RECORDS

EXCLUDED_PREFIX = "bft.excluded."


def evidence(client: Client) -> list[dict[str, Any]]:
    """Per answering BFT replica: detections and the replicas it excluded."""
    out = []
    for status in client.run(client.async_client.cluster_status()):
        if status is None or "bft.detections" not in status.metrics:
            continue
        excluded = sorted(k.removeprefix(EXCLUDED_PREFIX) for k in status.metrics if k.startswith(EXCLUDED_PREFIX))
        out.append({"node": status.node, "detections": status.metrics["bft.detections"], "excluded": excluded})
    return out


@app.command("audit")
def audit_command(
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    kind: Annotated[str, typer.Option("--kind", help="Kinds starting with this (proposal., task.completed, evidence.).")] = "",
    subject: Annotated[str, typer.Option("--subject", help="One proposal, task, lock or agent.")] = "",
    actor: Annotated[str, typer.Option("--actor", help="One signer, agent or lock holder.")] = "",
    since: Annotated[int, typer.Option("--since", help="From this sequence number on (0: the oldest held).")] = 0,
    limit: Annotated[int, typer.Option("--limit", help=f"At most this many records (1..{AUDIT_QUERY_MAX_RECORDS}).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The audit trail of decisions: ballots with signer ids, refusals, outcomes, fencing."""
    if since < 0:
        raise fail(f"--since must be >= 0, got {since}")
    if not 1 <= limit <= AUDIT_QUERY_MAX_RECORDS:
        raise fail(f"--limit must be in 1..{AUDIT_QUERY_MAX_RECORDS}, got {limit}")
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)

    def query(client: Client) -> dict[str, Any]:
        trail = client.run(AsyncAudit(client.async_client.execute).query(
            kind=kind, subject=subject, actor=actor, from_seq=since, limit=limit,
        ))
        trail["evidence"] = evidence(client)
        return trail

    trail = target.run(query)
    if as_json:
        typer.echo(json.dumps(trail, sort_keys=True))
        return
    if trail["truncated"]:
        typer.echo(f"(records before {trail['oldest_seq']} are no longer kept)")
    for record in trail["records"]:
        detail = " ".join(f"{k}={json.dumps(v)}" for k, v in record["detail"].items())
        actor_text = f" by {record['actor']}" if record["actor"] else ""
        typer.echo(f"{record['seq']:>6}  t={record['time_s']:.3f}  {record['kind']:<22} {record['subject']}{actor_text}  {detail}".rstrip())
    if not trail["records"]:
        typer.echo("no records")
    if trail["next_seq"] <= trail["total"]:
        typer.echo(f"more: quorate audit --since {trail['next_seq']}")
    for replica in trail["evidence"]:
        excluded = ", ".join(replica["excluded"]) or "none"
        typer.echo(f"n{replica['node']}: {replica['detections']} detections, excluded: {excluded}")
