"""``quorate member change`` and ``quorate quorum status|plan|apply|rollback``:
several members and the quorum sizes of a real cluster at once.

Theory of operation
-------------------
- ``member change`` sends one ``AdminChange`` (``quorate.runtime.aio.admin``)
  to the leader: ``--add NODE[=HOST:PORT]`` voters (a learner named here is
  promoted; a node that is not a member needs its address), ``--remove
  NODE`` members, ``--learner NODE[=HOST:PORT]`` learners (a voter named here
  is demoted), ``--quorum Q1:Q2`` (election:commit, Q1 + Q2 > voters; ``0:0``
  back to majorities), ``--transition auto|joint|joint_explicit``;
  ``--leave-joint`` alone leaves a joint configuration. Raft moves several
  voters at once through joint consensus (thesis §4.3).
- ``quorum status`` asks every endpoint for its view and prints the
  configuration (voters, learners, the outgoing voters while joint, Q1/Q2)
  and each node's answer time from here.
- ``quorum plan --strategy S`` builds ``quorate.quorum.Observations`` and
  prints the strategy's plan and the change it implies. From this host it
  measures what it can: each member answering ``Status`` (``--probes``
  round trips: liveness, loss, and the round trip, taken as the clients'
  distance when they are where this host is); regions come from
  ``--region NODE=REGION``. Node-to-node round trips are not measured by
  the node runtime: give them, or a whole set of observations, with
  ``--observations FILE`` (the JSON of ``observations_from_json``).
- ``quorum apply`` proposes that change (one, through consensus) and first
  saves the configuration in force to ``--save`` (default
  ``quorum-previous.json``); ``quorum rollback --from FILE`` proposes the
  saved configuration again.
- ``quorum apply --judge S`` does what the quorum manager does after a
  change (``quorate.quorum.manager``), with writes of its own as the
  measurement: for S seconds before the change and S seconds after it is in
  force it writes ``JUDGE_KEY`` one write after another (each bounded by
  ``JUDGE_OP_TIMEOUT_S``), and when the second window is worse by the
  manager's rule (``judge_window``: availability down by more than 5
  points, or, for strategies that aim at speed, the median commit latency
  up by more than 25 %) it proposes the saved configuration again and exits
  1 saying why. Fewer than 20 writes in a window cannot be judged: the change
  is kept and the output says so.
- ``--wait`` (``member change``, ``quorum apply``, ``quorum rollback``): after
  the leader accepted, ask it until the change is in force — the joint
  configuration left (unless ``joint_explicit`` keeps it) and every entry it
  held when that was seen committed — and print the configuration; scripts
  can then make the next change at once (the leader refuses one while
  another is still committing). Bounded by ``--timeout``.

Exit codes: 0 done; 1 the cluster refused (the leader's reason on one line)
or did not answer; 2 a usage mistake (nothing is sent).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.kv import (
    Directory,
    Endpoints,
    Insecure,
    Target,
    Timeout,
    TlsDir,
    TlsName,
    _target,
    member_app,
)
from quorate.cli.main import app, fail
from quorate.client import Client, ClientError
from quorate.client.contact import DEFAULT_DEADLINE_S
from quorate.core.binding import MEMBERSHIP_TRANSITIONS, MembershipView
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.quorum import (
    ManagerSettings,
    NodeObservation,
    Observations,
    QuorumPlan,
    StrategyParams,
    WindowMetrics,
    judge_window,
    observations_from_json,
    plan,
    plan_change,
    strategy,
)
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.config import format_address, parse_address

quorum_app = typer.Typer(
    help="See and change a cluster's voters and quorum sizes (the quorum manager).", no_args_is_help=True
)
app.add_typer(quorum_app, name="quorum")

DEFAULT_PROBES = 5
DEFAULT_REGION = "default"
DEFAULT_SAVE = "quorum-previous.json"


# ------------------------------------------------------------ parsing
def _node(text: str) -> NodeId:
    try:
        return parse_node_name(text)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _node_with_address(text: str, flag: str) -> tuple[NodeId, str]:
    name, _, address = text.partition("=")
    node = _node(name)
    if address:
        try:
            parse_address(address, flag)
        except ConfigError as exc:
            raise fail(str(exc)) from None
    return node, address


def _quorum(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise fail(f"--quorum takes Q1:Q2 (election:commit), e.g. 4:2, got {text!r}")
    election, commit = int(parts[0]), int(parts[1])
    if (election == 0) != (commit == 0):
        raise fail("--quorum sizes are both >= 1, or 0:0 for the protocol's own rule")
    return election, commit


def _transition(text: str) -> str:
    if text not in MEMBERSHIP_TRANSITIONS:
        raise fail(f"--transition must be one of {', '.join(MEMBERSHIP_TRANSITIONS)}, got {text!r}")
    return text


# ------------------------------------------------------------ member change
@member_app.command("change")
def member_change(
    add: Annotated[list[str] | None, typer.Option("--add", help="NODE[=HOST:PORT] to make a voter.")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="NODE to remove.")] = None,
    learner: Annotated[
        list[str] | None, typer.Option("--learner", help="NODE[=HOST:PORT] to make a learner (demotes a voter).")
    ] = None,
    quorum: Annotated[str | None, typer.Option("--quorum", help="Q1:Q2, election:commit (0:0: majorities).")] = None,
    transition: Annotated[str, typer.Option("--transition", help="auto | joint | joint_explicit.")] = "auto",
    leave_joint: Annotated[bool, typer.Option("--leave-joint", help="Leave an explicit joint configuration.")] = False,
    wait: Wait = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Change several members and/or the quorum sizes at once (Raft: joint consensus)."""
    adds = dict(_node_with_address(x, "--add") for x in add or [])
    learners = dict(_node_with_address(x, "--learner") for x in learner or [])
    removes = [_node(x) for x in remove or []]
    sizes = _quorum(quorum)
    _transition(transition)
    named = [*adds, *learners, *removes]
    if len(set(named)) != len(named):
        raise fail("a node may appear in only one of --add, --learner and --remove")
    empty = not named and sizes is None
    if leave_joint and not empty:
        raise fail("--leave-joint takes no other change")
    if empty and not leave_joint:
        raise fail("nothing to change: give --add, --remove, --learner or --quorum (or --leave-joint)")
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    target.run(
        lambda c: c.change_members(
            add={int(n): a for n, a in adds.items()},
            remove=[int(n) for n in removes],
            add_learners={int(n): a for n, a in learners.items()},
            quorum=sizes,
            transition=transition,
        )
    )
    what = "leave the joint configuration" if empty else "membership change"
    typer.echo(f"OK: {what} accepted by the leader")
    if wait:
        typer.echo(_in_force_line(_await_in_force(target, transition == "joint_explicit" and not empty)))


# ------------------------------------------------------------ status
def _probe(client: Any, endpoint: str, probes: int) -> tuple[StatusReply | None, list[float], int]:
    """(latest status, round trips in ms, failures) of ``probes`` Status requests."""
    latest = None
    rtts: list[float] = []
    failed = 0
    for _ in range(probes):
        start = time.perf_counter()
        try:
            latest = client.status(endpoint)
        except (OSError, EOFError, TimeoutError, ClientError):
            failed += 1
            continue
        rtts.append((time.perf_counter() - start) * 1e3)
    return latest, rtts, failed


def _survey(target: Target, probes: int) -> dict[str, Any]:
    client = target.client()
    with client:
        seen: dict[int, dict[str, Any]] = {}
        todo = [format_address(a) for a in client.endpoints]
        done: set[str] = set()
        while todo:
            endpoint = todo.pop(0)
            if endpoint in done:
                continue
            done.add(endpoint)
            status, rtts, failed = _probe(client, endpoint, probes)
            if status is None:
                continue
            seen[status.node] = {"status": status, "rtts": rtts, "failed": failed, "endpoint": endpoint}
            for member, address in status.members.items():
                if member not in seen and address not in done and not address.startswith(("0.0.0.0", "[::]")):
                    todo.append(address)
    if not seen:
        raise fail("no endpoint answered", 1)
    leader_id = next((s["status"].leader for s in seen.values() if s["status"].role == "leader"), None)
    if leader_id is None:
        leader_id = next((s["status"].leader for s in seen.values() if s["status"].leader is not None), None)
    reference = seen.get(leader_id) if leader_id is not None else None
    source = reference["status"] if reference is not None else max((s["status"] for s in seen.values()), key=lambda s: s.commit_index)
    return {"nodes": seen, "leader": leader_id, "config": source}


def _view(status: StatusReply) -> MembershipView:
    return MembershipView(
        tuple(NodeId(v) for v in status.voters),
        tuple(NodeId(v) for v in status.learners),
        tuple(NodeId(v) for v in status.outgoing),
        status.election_quorum,
        status.commit_quorum,
    )


def _config_json(status: StatusReply) -> dict[str, Any]:
    return {
        "voters": list(status.voters),
        "learners": list(status.learners),
        "outgoing": list(status.outgoing),
        "joint": bool(status.outgoing),
        "election_quorum": status.election_quorum,
        "commit_quorum": status.commit_quorum,
    }


JUDGE_KEY = "quorate/quorum-judge"
"""The key ``quorum apply --judge`` writes to measure the cluster."""
JUDGE_OP_TIMEOUT_S = 2.0
"""A judging write not answered within this long counts as failed."""


def measure_window(target: Target, duration_s: float) -> WindowMetrics:
    """Write ``JUDGE_KEY`` one write after another for ``duration_s``: how
    many finished, how many succeeded, their median and p99 commit latency."""
    options = target.client_options()
    options["deadline_s"] = min(options["deadline_s"], JUDGE_OP_TIMEOUT_S)
    options["timeout_s"] = min(options["timeout_s"], JUDGE_OP_TIMEOUT_S)
    latencies: list[float] = []
    ops = 0
    with Client(**options) as client:
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            start = time.perf_counter()
            ops += 1
            try:
                client.put(JUDGE_KEY, str(ops))
            except (ClientError, TimeoutError, OSError):
                continue
            latencies.append((time.perf_counter() - start) * 1e3)
    latencies.sort()
    p50 = round(statistics.median(latencies), 3) if latencies else None
    p99 = round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3) if latencies else None
    return WindowMetrics(ops, len(latencies), p50, p99)


def _window_line(name: str, w: WindowMetrics) -> str:
    availability = "n/a" if w.availability is None else f"{w.availability:.3f}"
    return f"{name}: {w.ops} writes, availability {availability}, p50 {w.p50_ms} ms, p99 {w.p99_ms} ms"


WAIT_POLL_S = 0.1
"""How often ``--wait`` asks the leader."""


def _await_in_force(target: Target, keeps_joint: bool) -> StatusReply:
    """The leader's status once a change it accepted is in force (see the
    module docstring); exit 1 when that takes longer than ``--timeout``."""
    deadline = time.monotonic() + target.timeout_s
    settled_at: int | None = None
    status: StatusReply | None = None
    while time.monotonic() < deadline:
        survey = _survey(target, 1)
        leader = survey["nodes"].get(survey["leader"]) if survey["leader"] is not None else None
        status = leader["status"] if leader is not None else None
        if isinstance(status, StatusReply) and status.role == "leader":
            if settled_at is None and (keeps_joint or not status.outgoing):
                settled_at = status.last_index
            if settled_at is not None and status.commit_index >= settled_at:
                return status
        time.sleep(WAIT_POLL_S)
    seen = "no leader" if status is None else f"voters {list(status.voters)}, joint {bool(status.outgoing)}"
    raise fail(f"accepted, but not in force within {target.timeout_s:g} s (last seen: {seen})", 1)


def _in_force_line(status: StatusReply) -> str:
    joint = f"; joint with outgoing voters {list(status.outgoing)}" if status.outgoing else ""
    return (
        f"in force: voters {list(status.voters)}; learners {list(status.learners)}; "
        f"Q1 {status.election_quorum}, Q2 {status.commit_quorum}{joint}"
    )


Wait = Annotated[
    bool, typer.Option("--wait", help="Return once the change is in force (bounded by --timeout).")
]


def _status_report(survey: dict[str, Any]) -> dict[str, Any]:
    config: StatusReply = survey["config"]
    nodes = []
    for node_id, seen in sorted(survey["nodes"].items()):
        s: StatusReply = seen["status"]
        rtts = seen["rtts"]
        nodes.append(
            {
                "node": node_name(NodeId(node_id)),
                "role": s.role,
                "term": s.term,
                "commit_index": s.commit_index,
                "applied_index": s.applied_index,
                "rtt_ms": round(statistics.median(rtts), 3) if rtts else None,
            }
        )
    leader = survey["leader"]
    return {"leader": None if leader is None else node_name(NodeId(leader)), **_config_json(config), "nodes": nodes}


@quorum_app.command("status")
def quorum_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """The configuration in force: voters, learners, joint or not, Q1 and Q2."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    report = _status_report(_survey(target, 1))
    if as_json:
        typer.echo(json.dumps(report))
        return
    joint = f" (joint; outgoing voters {report['outgoing']})" if report["joint"] else ""
    typer.echo(
        f"leader {report['leader']}; voters {report['voters']}{joint}; learners {report['learners']}; "
        f"Q1 (election) {report['election_quorum']}, Q2 (commit) {report['commit_quorum']}"
    )
    for row in report["nodes"]:
        typer.echo(
            f"  {row['node']}: {row['role']}, term {row['term']}, commit {row['commit_index']}, "
            f"applied {row['applied_index']}, {row['rtt_ms']} ms from here"
        )


# ------------------------------------------------------------ plan / apply / rollback
def _regions(items: list[str] | None) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in items or []:
        name, sep, region = item.partition("=")
        if not sep or not region:
            raise fail(f"--region takes NODE=REGION, got {item!r}")
        out[int(_node(name))] = region
    return out


def _observations(survey: dict[str, Any], regions: dict[int, str], path: Path | None) -> Observations:
    if path is not None:
        try:
            return observations_from_json(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise fail(f"cannot read {path}: {exc.strerror}") from None
        except (json.JSONDecodeError, ConfigError) as exc:
            raise fail(f"{path}: {exc}") from None
    config: StatusReply = survey["config"]
    members = set(config.voters) | set(config.learners) | set(config.outgoing)
    nodes = {}
    for member in sorted(members):
        seen = survey["nodes"].get(member)
        rtts = seen["rtts"] if seen is not None else []
        failed = seen["failed"] if seen is not None else 1
        total = len(rtts) + failed
        nodes[NodeId(member)] = NodeObservation(
            NodeId(member),
            regions.get(member, DEFAULT_REGION),
            loss=failed / total if total else 1.0,
            uptime=1.0 if rtts else 0.0,
            alive=bool(rtts),
            client_rtt_ms=round(statistics.median(rtts), 3) if rtts else None,
        )
    return Observations(nodes)


def _plan(
    name: str, target: Target, probes: int, regions: list[str] | None, observations: Path | None,
    voters: int, failures: int, transition: str,
) -> tuple[dict[str, Any], QuorumPlan, Any]:
    try:
        strategy(name)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if probes < 1:
        raise fail(f"--probes must be >= 1, got {probes}")
    _transition(transition)
    where = _regions(regions)
    survey = _survey(target, probes)
    obs = _observations(survey, where, observations)
    try:
        chosen = plan(name, obs, StrategyParams(voters=voters, failures=failures))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    change = plan_change(chosen, _view(survey["config"]), transition)
    return survey, chosen, change


def _change_json(change: Any) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "add": [int(v) for v in change.add],
        "remove": [int(v) for v in change.remove],
        "add_learners": [int(v) for v in change.add_learners],
        "quorum": list(change.quorum) if change.quorum is not None else None,
        "transition": change.transition,
    }


@quorum_app.command("plan")
def quorum_plan(
    strategy_name: Annotated[str, typer.Option("--strategy", help="network | performance | fault_tolerance | hybrid.")],
    region: Annotated[list[str] | None, typer.Option("--region", help="NODE=REGION (repeatable).")] = None,
    observations: Annotated[Path | None, typer.Option("--observations", help="Observations JSON to plan from.")] = None,
    voters: Annotated[int, typer.Option("--voters", help="Voters wanted.")] = 5,
    failures: Annotated[int, typer.Option("--failures", help="Voters whose loss must leave a quorum.")] = 1,
    probes: Annotated[int, typer.Option("--probes", help="Status round trips per node.")] = DEFAULT_PROBES,
    transition: Annotated[str, typer.Option("--transition", help="auto | joint | joint_explicit.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """What a strategy would do with this cluster (nothing is changed)."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    survey, chosen, change = _plan(strategy_name, target, probes, region, observations, voters, failures, transition)
    p = chosen.to_json()
    report = {"current": _config_json(survey["config"]), "plan": p, "change": _change_json(change)}
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"plan ({p['strategy']}): voters {p['voters']}, Q1 {p['election_quorum']}, Q2 {p['commit_quorum']}, leader {p['preferred_leader']}")
    for reason in p["reasons"]:
        typer.echo(f"  {reason}")
    typer.echo(f"change: {report['change'] or 'none (already in force)'}")


@quorum_app.command("apply")
def quorum_apply(
    strategy_name: Annotated[str, typer.Option("--strategy", help="network | performance | fault_tolerance | hybrid.")],
    region: Annotated[list[str] | None, typer.Option("--region", help="NODE=REGION (repeatable).")] = None,
    observations: Annotated[Path | None, typer.Option("--observations", help="Observations JSON to plan from.")] = None,
    voters: Annotated[int, typer.Option("--voters", help="Voters wanted.")] = 5,
    failures: Annotated[int, typer.Option("--failures", help="Voters whose loss must leave a quorum.")] = 1,
    probes: Annotated[int, typer.Option("--probes", help="Status round trips per node.")] = DEFAULT_PROBES,
    transition: Annotated[str, typer.Option("--transition", help="auto | joint | joint_explicit.")] = "auto",
    save: Annotated[Path, typer.Option("--save", help="Where to keep the configuration in force.")] = Path(DEFAULT_SAVE),
    wait: Wait = False,
    judge: Annotated[
        float,
        typer.Option("--judge", help="Seconds of writes before and after; roll back if worse (0: off; implies --wait)."),
    ] = 0.0,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Propose a strategy's plan through consensus (one change); save what it replaces."""
    if not (math.isfinite(judge) and judge >= 0):
        raise fail(f"--judge must be >= 0 seconds, got {judge}")
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    survey, chosen, change = _plan(strategy_name, target, probes, region, observations, voters, failures, transition)
    if change is None:
        typer.echo("OK: the plan is already in force")
        return
    current = survey["config"]
    if judge and change.transition == "joint_explicit":
        raise fail("--judge needs the change in force: not with --transition joint_explicit")
    if current.outgoing:
        raise fail("refused: a joint configuration is in force; leave it first (member change --leave-joint)", 1)
    try:
        save.write_text(json.dumps({**_config_json(current), "members": current.members}) + "\n", encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {save}: {exc.strerror}") from None
    before = measure_window(target, judge) if judge else None
    if before is not None:
        typer.echo(_window_line("before", before))
    _send(change, target)
    typer.echo(f"OK: plan of {chosen.strategy} accepted by the leader (previous configuration in {save})")
    if wait or judge:
        typer.echo(_in_force_line(_await_in_force(target, change.transition == "joint_explicit")))
    if before is None:
        return
    after = measure_window(target, judge)
    typer.echo(_window_line("after", after))
    settings = ManagerSettings()
    worse = judge_window(before, after, settings, strategy(chosen.strategy).judged_on_latency)
    if worse is None:
        enough = min(before.ops, after.ops) >= settings.min_window_ops
        typer.echo("kept: not worse" if enough else f"kept: fewer than {settings.min_window_ops} writes in a window, cannot judge")
        return
    back = plan_change(_saved_plan(save), _view(_survey(target, 1)["config"]), "auto")
    if back is not None:
        _send(back, target)
        _await_in_force(target, False)
    raise fail(f"rolled back ({worse}); the configuration saved in {save} is in force again", 1)


@quorum_app.command("rollback")
def quorum_rollback(
    source: Annotated[Path, typer.Option("--from", help="A configuration saved by 'quorum apply'.")] = Path(DEFAULT_SAVE),
    transition: Annotated[str, typer.Option("--transition", help="auto | joint | joint_explicit.")] = "auto",
    wait: Wait = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Propose a saved configuration again (through consensus, like any change)."""
    _transition(transition)
    back = _saved_plan(source)
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    survey = _survey(target, 1)
    change = plan_change(back, _view(survey["config"]), transition)
    if change is None:
        typer.echo("OK: the saved configuration is already in force")
        return
    _send(change, target)
    typer.echo(f"OK: the configuration saved in {source} was proposed and accepted by the leader")
    if wait:
        typer.echo(_in_force_line(_await_in_force(target, change.transition == "joint_explicit")))


def _saved_plan(source: Path) -> QuorumPlan:
    """The configuration ``quorum apply`` saved in ``source``, as a plan."""
    try:
        saved = json.loads(source.read_text(encoding="utf-8"))
        back = QuorumPlan(
            "rollback",
            tuple(NodeId(int(v)) for v in saved["voters"]),
            tuple(NodeId(int(v)) for v in saved["learners"]),
            int(saved["election_quorum"]),
            int(saved["commit_quorum"]),
        )
    except OSError as exc:
        raise fail(f"cannot read {source}: {exc.strerror}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise fail(f"{source} is not a saved configuration: {exc!r}") from None
    problem = back.problem()
    if problem is not None:
        raise fail(f"{source}: {problem}")
    return back


def _send(change: Any, target: Target) -> None:
    target.run(
        lambda c: c.change_members(
            add={int(n): "" for n in change.add},
            remove=[int(n) for n in change.remove],
            add_learners={int(n): "" for n in change.add_learners},
            quorum=change.quorum,
            transition=change.transition,
        )
    )
