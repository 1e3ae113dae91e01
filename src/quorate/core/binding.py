"""Bindings: everything a runtime may know about a protocol, in one object.

Theory of operation. The runtimes (the simulator and the real node) are
generic over ``ProtocolCore``. What they need beyond the five calls of the
core contract, each protocol package says once, in its ``binding.py``, as a
``Binding``:

- its wire message types (for the codec), and the msgspec types of its hard
  state and snapshot (for storage);
- its configuration: ``parse_config`` turns options (a TOML table, ``--option
  KEY=VALUE`` pairs) into the protocol's validated config object, refusing an
  unknown or bad option with a ``ConfigError`` that names it;
- how to build cores: ``builder(config, cluster)`` returns a function that
  builds one node's core, fresh or from what its disk recovered, with the
  keys the runtime provides (``Keyring``) and, for fault injection, the
  Byzantine behaviours the ``ClusterContext`` names (wrappers, MAC
  authenticators and colluding coalitions are the binding's business);
- its fault model: ``crash`` or ``byzantine``, how many of n replicas it
  tolerates, how many matching replies a client needs, which Byzantine
  behaviours it can run;
- optionally, for a protocol whose node hosts groups of the protocol's own
  design rather than one group among all the nodes (HRB: a shard group and,
  on core members, the core group), ``hosting``: builds this node's hosted
  groups from the parsed config and a ``HostingContext``, with the requests
  its own clients send (``client_message_types``, handed to the hosted
  groups' states);
- small role functions the runtimes call instead of guessing at a core's
  attributes: ``leadership`` (who leads, in which term or view), ``status``
  (what ``cluster status`` shows), and optionally ``membership`` (changing
  the member set), ``safety_monitor`` (the protocol's online invariants, for
  the simulator) and ``pipelines_while_persisting`` (whether the runtime may
  keep taking Readies while one is being made durable).

Runtimes find bindings by name through ``quorate.protocols``; they never
import a protocol package or test which protocol they run. What a core knows
about a single ``Ready`` (whether it must be synced, which messages may leave
before the sync) travels in the ``Ready`` itself.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from quorate.core.protocol import ProposeOutcome, ProtocolCore
from quorate.core.signing import Signer, Verifier
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name

__all__ = [
    "FAULT_MODELS",
    "MEMBERSHIP_TRANSITIONS",
    "BftSettings",
    "Binding",
    "ClusterContext",
    "CoreBuilder",
    "GroupStatus",
    "HostingContext",
    "Keyring",
    "MacAuthenticator",
    "Membership",
    "MembershipChange",
    "MembershipView",
    "bft_keyring",
    "bft_settings_from_options",
    "bft_status",
    "config_from_options",
    "honest_core",
    "parse_byzantine_spec",
]

FAULT_MODELS = ("crash", "byzantine")


class MacAuthenticator(Protocol):
    """Per-receiver MACs over a message (PBFT's authenticators)."""

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]: ...

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool: ...


class Keyring(Protocol):
    """The signing material a runtime gives the cores of one cluster: real
    Ed25519 keys on real nodes, a cost model that charges measured CPU time
    (and still rejects forgeries) in the simulator."""

    def signer(self, node: NodeId) -> Signer:
        """Signs as ``node`` (only the node's own key, on a real node)."""
        ...

    def verifier(self, node: NodeId) -> Verifier:
        """The verifier ``node`` uses (charges ``node``'s CPU in the simulator)."""
        ...

    def mac_authenticator(self, node: NodeId, members: tuple[NodeId, ...]) -> MacAuthenticator:
        """``node``'s MAC authenticator towards ``members`` (pairwise session keys)."""
        ...


@dataclass(frozen=True, slots=True)
class ClusterContext:
    """What a runtime tells a binding about the cluster its cores belong to."""

    keyring: Keyring | None = None
    """Keys for protocols that sign; None for those that do not (Raft)."""
    byzantine: Mapping[NodeId, str] = field(default_factory=dict)
    """Member -> Byzantine behaviour (fault injection; empty: all honest)."""


@dataclass(frozen=True, slots=True)
class HostingContext:
    """What a runtime gives a ``Binding.hosting`` function: this node, every
    node of the cluster, its keys, its randomness and clock reading, and how
    to recover a group's durable state (``recover(group, binding)``: what the
    node's store holds of that group, registered under the binding's name,
    or None on a fresh disk)."""

    node: NodeId
    nodes: tuple[NodeId, ...]
    keyring: Keyring
    rng: random.Random
    now: float
    recover: Callable[[int, Binding], Any]
    registered: tuple[int, ...] = ()
    """The groups the node's store holds (a restarted node rebuilds those it
    joined at run time)."""


CoreBuilder = Callable[[NodeId, tuple[NodeId, ...], random.Random, float, Any], ProtocolCore]
"""``build(node, members, rng, now, recovered)``; ``recovered`` is what the
storage recovered (``hard_state``, ``snapshot``, ``entries``), or None on a
fresh disk."""


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One core's view, as ``cluster status`` shows it."""

    role: str
    term: int
    """Term (Raft) or view (PBFT, HotStuff)."""
    leader: NodeId | None
    commit_index: int = 0
    last_index: int = 0
    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()
    metrics: Mapping[str, int] = field(default_factory=dict)
    """Protocol-specific counters (BFT: detections, excluded replicas)."""


MEMBERSHIP_TRANSITIONS = ("auto", "joint", "joint_explicit")
"""How a ``MembershipChange`` moves between configurations: ``auto`` (one
step when that is safe, else a joint configuration left by itself),
``joint`` (always joint, left by itself), ``joint_explicit`` (joint until an
empty change leaves it)."""


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """Several members and/or the quorum sizes changed at once. An empty
    change (nothing added, removed or resized) leaves a joint configuration."""

    add: tuple[NodeId, ...] = ()
    """New voters (a learner named here is promoted)."""
    remove: tuple[NodeId, ...] = ()
    add_learners: tuple[NodeId, ...] = ()
    """New learners (a voter named here is demoted)."""
    quorum: tuple[int, int] | None = None
    """(election quorum Q1, commit quorum Q2) for the new voters; (0, 0) the
    protocol's own rule; None keeps the sizes in force."""
    transition: str = "auto"

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.add_learners) and self.quorum is None


@dataclass(frozen=True, slots=True)
class MembershipView:
    """A group's configuration as its core holds it."""

    voters: tuple[NodeId, ...]
    """Voters of the (incoming) configuration."""
    learners: tuple[NodeId, ...] = ()
    outgoing: tuple[NodeId, ...] = ()
    """While joint: the voters of the outgoing configuration (else empty)."""
    election_quorum: int = 0
    """Q1 of ``voters`` (resolved: the number a vote needs)."""
    commit_quorum: int = 0
    """Q2 of ``voters`` (resolved)."""
    explicit_quorum: bool = False
    """True when the sizes were set explicitly (flexible quorums), not by the rule."""
    auto_leave: bool = False

    @property
    def joint(self) -> bool:
        return bool(self.outgoing)


class Membership(Protocol):
    """Changing the member set of a group (protocols that support it)."""

    actions: tuple[str, ...]
    """What ``propose`` accepts, e.g. ``add``, ``add_learner``, ``promote``, ``remove``."""

    def busy(self, core: ProtocolCore) -> bool:
        """True while the core would refuse any change for now (one at a
        time; a new leader first commits in its term)."""
        ...

    def propose(
        self, core: ProtocolCore, action: str, node: NodeId, context: bytes, now: float
    ) -> ProposeOutcome:
        """Propose ``action`` on ``node``; ``context`` travels in the change
        (the address book of real clusters)."""
        ...

    def contexts(self, entries: Sequence[Any]) -> list[bytes]:
        """The contexts carried by the membership changes among ``entries``
        (a restarted node learns member addresses from its log)."""
        ...

    def transfer_leadership(self, core: ProtocolCore, target: NodeId, now: float) -> ProposeOutcome:
        """Hand leadership to ``target``."""
        ...

    def change(
        self, core: ProtocolCore, change: MembershipChange, context: bytes, now: float
    ) -> ProposeOutcome:
        """Propose several members and/or quorum sizes at once (Raft: joint
        consensus); a refusal names why and changes nothing."""
        ...

    def configuration(self, core: ProtocolCore) -> MembershipView:
        """The configuration ``core`` holds now."""
        ...


def _no_pipelining(config: Any) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Binding:
    """What the runtimes know about one protocol (see the module docstring)."""

    name: str
    message_types: tuple[type, ...]
    hard_state_type: type[Any] | None
    snapshot_type: type[Any] | None
    parse_config: Callable[[Mapping[str, Any]], Any]
    """Options -> the validated config; ``ConfigError`` naming a bad option."""
    builder: Callable[[Any, ClusterContext], CoreBuilder]
    leadership: Callable[[ProtocolCore], tuple[NodeId | None, int]]
    """(leader or None, term or view)."""
    status: Callable[[ProtocolCore], GroupStatus]
    fault_model: str = "crash"
    behaviours: tuple[str, ...] = ()
    """Byzantine behaviours the builder can wrap a core in."""
    membership: Membership | None = None
    safety_monitor: Callable[[], Callable[[ProtocolCore, float], None]] | None = None
    """Starts an online check of the protocol's own safety invariants across
    the members of one group (the simulator calls the returned function
    after every step of every member; it raises ``InvariantViolation``)."""
    leading_term: Callable[[ProtocolCore], int | None] | None = None
    """The term (or view) in which this core leads, or None: the cheap test a
    runtime makes after every input (the simulator counts leader changes).
    Default: derived from ``leadership``."""
    simulator_only: bool = False
    """A protocol the simulator runs but real nodes do not (its reference
    protocol); real-node choices leave it out."""
    tolerated_faults: Callable[[int], int] | None = None
    """Overrides ``max_faulty`` (a protocol that tolerates fewer failures
    than its fault model says, such as a fixed primary: none)."""
    pipelines_while_persisting: Callable[[Any], bool] = _no_pipelining
    """With this config, may a runtime take further Readies (sending their
    messages) while an earlier one is being made durable? Only for cores
    whose ``advance`` does nothing (the whole Ready is handed over)."""
    evidence: Callable[[ProtocolCore], Sequence[Any]] | None = None
    """The proofs of misbehaviour the core holds, oldest first
    (``quorate.core.evidence.Evidence``: verifiable by anyone from public
    keys); a real node records each in the replicated audit trail."""

    hosting: Callable[[Any, HostingContext], list[Any]] | None = None
    """Builds the node's hosted groups (``quorate.core.host.HostedGroup``s)
    from the parsed config, instead of one group 0 among all the nodes (see
    the module docstring)."""
    client_message_types: tuple[type, ...] = ()
    """Requests of the protocol's own clients (with ``hosting``): a node
    hands them to the state of the group they name."""
    joining: Callable[[Any, HostingContext, list[Any], NodeId, int, Any], Any] | None = None
    """With ``hosting``: ``joining(config, context, hosted, sender, group,
    message)`` builds a group this node does not host yet that ``sender``'s
    message asks it to join (HRB: the next epoch's core), given the groups
    it hosts; None drops the message."""

    def __post_init__(self) -> None:
        if self.fault_model not in FAULT_MODELS:
            raise ValueError(f"fault_model must be one of {FAULT_MODELS}, got {self.fault_model!r}")

    def term_if_leading(self, core: ProtocolCore) -> int | None:
        """The term (or view) in which ``core`` leads, or None."""
        if self.leading_term is not None:
            return self.leading_term(core)
        leader, term = self.leadership(core)
        return term if leader == core.id else None

    def max_faulty(self, n: int) -> int:
        """Replicas out of ``n`` that may fail (crash: a minority; Byzantine: f < n/3)."""
        if self.tolerated_faults is not None:
            return self.tolerated_faults(n)
        return (n - 1) // 3 if self.fault_model == "byzantine" else (n - 1) // 2

    def max_byzantine(self, n: int) -> int:
        """Byzantine replicas out of ``n`` the protocol tolerates."""
        return (n - 1) // 3 if self.fault_model == "byzantine" else 0

    def reply_quorum(self, n: int) -> int:
        """Matching replies from distinct replicas a client must collect."""
        return (n - 1) // 3 + 1 if self.fault_model == "byzantine" else 1


def config_from_options(
    config_type: type[Any], options: Mapping[str, Any], label: str, *, validate: bool = True
) -> Any:
    """A dataclass config built from ``options`` and, with ``validate``,
    checked by its ``validate()``; an unknown option or a bad value is a
    ``ConfigError`` that names it (``label``: the protocol's name as users
    write it). Configs whose checks need the member count are validated by
    their core instead (``validate=False``)."""
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown {label} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        config = config_type(**dict(options))
        check = getattr(config, "validate", None) if validate else None
        if check is not None:
            config = check() or config
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad {label} option: {exc}") from None
    return config


@dataclass(frozen=True, slots=True)
class BftSettings:
    """A BFT protocol's config plus what the runtime does around it."""

    core: Any
    """The protocol's own config (``PbftConfig``, ``HotStuffConfig``)."""
    send_before_persist: bool = False
    """Messages leave before their Ready is durable (a trade-off: a replica
    that crashes inside that window may, once restarted, contradict what it
    sent; agreement holds while such replicas plus Byzantine ones are at
    most f, but peers may convict it of equivocation). Default: the safe way."""


def bft_settings_from_options(
    config_type: type[Any], options: Mapping[str, Any], label: str, *, validate: bool = True
) -> BftSettings:
    """``BftSettings`` from options: ``send_before_persist`` (a boolean) and
    the protocol config's own fields."""
    rest = dict(options)
    send_before_persist = rest.pop("send_before_persist", False)
    if not isinstance(send_before_persist, bool):
        raise ConfigError(f"send_before_persist must be true or false, got {send_before_persist!r}")
    return BftSettings(config_from_options(config_type, rest, label, validate=validate), send_before_persist)


def bft_pipelines(settings: BftSettings) -> bool:
    """``Binding.pipelines_while_persisting`` of the BFT protocols."""
    return settings.send_before_persist


def bft_keyring(cluster: ClusterContext, protocol: str) -> Keyring:
    """The runtime's keys, which every BFT protocol signs with; a
    ``ConfigError`` when the runtime provides none."""
    if cluster.keyring is None:
        raise ConfigError(f"{protocol} signs its messages: the runtime must provide keys")
    return cluster.keyring


_Honest = TypeVar("_Honest")


def honest_core(core: ProtocolCore, wrapper: type[Any], honest: type[_Honest]) -> _Honest:
    """The protocol's own core inside a Byzantine fault-injection
    ``wrapper`` (whose ``inner`` it is), or ``core`` itself."""
    inner = core.inner if isinstance(core, wrapper) else core
    assert isinstance(inner, honest), f"{type(inner).__name__} is not a {honest.__name__}"
    return inner


def bft_status(
    *,
    role: str,
    view: int,
    leader: NodeId,
    committed: int,
    voters: Iterable[NodeId],
    detections: int,
    excluded: Iterable[NodeId],
    extra: Mapping[str, int] | None = None,
) -> GroupStatus:
    """A BFT core's ``GroupStatus``: the counters every BFT protocol shows
    (``bft.detections``, ``bft.view``, ``bft.leader``, ``bft.excluded`` and
    one ``bft.excluded.<node>`` per excluded replica), then ``extra``."""
    shut_out = sorted(int(x) for x in excluded)
    metrics = {
        "bft.detections": detections,
        "bft.view": view,
        "bft.leader": int(leader),
        "bft.excluded": len(shut_out),
        **{f"bft.excluded.{node_name(NodeId(x))}": 1 for x in shut_out},
        **(extra or {}),
    }
    return GroupStatus(
        role=role,
        term=view,
        leader=leader,
        commit_index=committed,
        last_index=committed,
        voters=tuple(voters),
        metrics=metrics,
    )


def parse_byzantine_spec(text: str, allowed: Sequence[str], choices: str | None = None) -> list[tuple[int, str]]:
    """``"1:equivocate,2:silent"`` -> ``[(1, "equivocate"), (2, "silent")]``
    (``--byzantine`` of the simulators; parts with a count of 0 are left
    out); a ``ConfigError`` naming the bad part. ``choices`` says what may
    be chosen when a behaviour is not in ``allowed`` (default: the list)."""
    out: list[tuple[int, str]] = []
    text = text.strip()
    if not text or text == "none":
        return out
    for part in text.split(","):
        count_text, sep, behaviour = part.strip().partition(":")
        if not sep:
            raise ConfigError(f"--byzantine wants COUNT:BEHAVIOUR, got {part.strip()!r}")
        try:
            count = int(count_text)
        except ValueError:
            raise ConfigError(f"--byzantine count must be an integer, got {count_text!r}") from None
        behaviour = behaviour.strip()
        if count < 0:
            raise ConfigError(f"--byzantine count must be >= 0, got {count}")
        if behaviour not in allowed:
            raise ConfigError(
                f"unknown Byzantine behaviour {behaviour!r}; {choices or 'choose one of ' + ', '.join(allowed)}"
            )
        if count:
            out.append((count, behaviour))
    return out
