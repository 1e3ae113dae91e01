"""Fault schedules: what goes wrong, and when.

Theory of operation. A schedule is a list of ``FaultAction`` values, each with
an absolute simulated time. The cluster turns each into one event on the loop,
so faults interleave deterministically with messages and timers. A schedule
comes from one of three places:

- a compact SPEC on the command line (grammar below);
- a scenario file, ``@path.json`` or ``@path.toml``, holding a list of SPEC
  items under ``faults`` (JSON may also be a bare list);
- the ``chaos`` preset: drawn from the seed, random crashes and restarts,
  partitions, one-way cuts, slow nodes, loss and reordering bursts and clock skew until
  ``heal_at_s``; then everything is healed and restarted so a liveness phase can
  follow. At most ``max_crashed`` replicas are down at once (a minority for
  crash-tolerant protocols), so a correct protocol can always make progress
  once healed.

SPEC grammar (items separated by commas; whitespace ignored)::

    SPEC   := ITEM ("," ITEM)*
    ITEM   := ACTION "@" TIME
    TIME   := NUMBER ("s" | "ms")?                   seconds unless "ms"
    ACTION := "crash:" N | "restart:" N              stop / reboot replica N
            | "slow:" N ":" FACTOR                   CPU costs x FACTOR (1 = normal)
            | "skew:" N ":" OFFSET_S [":" RATE]      jump N's clock, set its rate
            | "partition:" GROUP ("|" GROUP)+        split replicas into groups
            | "cut:" N ">" N                         drop messages one way (also "->")
            | "heal"                                 end partitions, cuts, loss bursts
            | "loss:" P | "dup:" P                   message loss / duplication, 0..1
            | "reorder:" P                           share of messages that may overtake
            | "restart-all"                          reboot every crashed replica
    GROUP  := NODES ("+" NODES)*
    NODES  := N | N "-" N                            a single id or an inclusive range
    N      := 1..n, or its name n1..nN

Replicas are numbered 1..n, as the nodes n1..nN of a real cluster. Example:
``crash:2@5s,restart:2@9s,partition:1-2|3-5@12s,cut:1>4@14s,heal@20s``.
Replicas not named in a partition form one extra group together. A malformed
item raises ``ConfigError`` naming the item.
"""

from __future__ import annotations

import json
import pathlib
import random
import tomllib
from dataclasses import dataclass
from typing import Any

from quorate.errors import ConfigError

CHAOS_START_S = 0.5
"""Chaos leaves the first half second alone so the cluster can form."""
CHAOS_MEAN_GAP_S = 0.4
"""Mean time between chaos faults (exponential gaps)."""
CHAOS_MAX_SLOW_FACTOR = 20.0
CHAOS_MAX_SKEW_S = 0.5
CHAOS_MAX_DRIFT = 0.01
"""Clock rates stay within 1 +- 1 %."""
CHAOS_MAX_LOSS = 0.3
CHAOS_MAX_REORDER = 0.5
"""A reordering burst lets up to half of all messages overtake."""


@dataclass(frozen=True, slots=True)
class FaultAction:
    """One fault at ``at_s``. Fields beyond ``kind`` depend on the kind."""

    at_s: float
    kind: str
    node: int = -1
    peer: int = -1
    groups: tuple[tuple[int, ...], ...] = ()
    value: float = 0.0
    rate: float = 0.0
    """For ``skew``: the new clock rate (0 = unchanged)."""

    def describe(self) -> str:
        """The action in SPEC syntax."""
        k = self.kind
        if k in ("crash", "restart"):
            body = f"{k}:{self.node}"
        elif k == "slow":
            body = f"slow:{self.node}:{self.value:g}"
        elif k == "skew":
            body = f"skew:{self.node}:{self.value:g}" + (f":{self.rate:g}" if self.rate else "")
        elif k == "partition":
            body = "partition:" + "|".join("+".join(str(n) for n in g) for g in self.groups)
        elif k == "cut":
            body = f"cut:{self.node}>{self.peer}"
        elif k in ("loss", "dup", "reorder"):
            body = f"{k}:{self.value:g}"
        else:
            body = k
        return f"{body}@{self.at_s:g}s"


KINDS = (
    "crash",
    "restart",
    "slow",
    "skew",
    "partition",
    "cut",
    "heal",
    "loss",
    "dup",
    "reorder",
    "restart-all",
)


def parse_spec(spec: str) -> list[FaultAction]:
    """Parse a SPEC string (see the module docstring); sorted by time."""
    actions = [parse_item(item) for item in spec.split(",") if item.strip()]
    return sorted(actions, key=lambda a: a.at_s)


def parse_item(item: str) -> FaultAction:
    """Parse one ``ACTION@TIME`` item."""
    text = "".join(item.split())
    if text.count("@") != 1:
        raise ConfigError(f"fault {item.strip()!r}: expected ACTION@TIME, e.g. 'crash:2@5s'")
    action, when = text.split("@")
    at_s = _parse_time(when, item)
    name, _, args = action.partition(":")
    try:
        return _parse_action(name, args, at_s)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"fault {item.strip()!r}: {exc}") from None


def _parse_time(text: str, item: str) -> float:
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 1e-3
    elif text.endswith("s"):
        text = text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        raise ConfigError(f"fault {item.strip()!r}: bad time {text!r} (use e.g. 5s or 250ms)") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"fault {item.strip()!r}: time must be a finite number >= 0")
    return value


def _node(text: str) -> int:
    digits = text[1:] if text[:1] in ("n", "N") else text  # "n3" as in a real cluster, or 3
    if not digits.isdigit():
        raise ValueError(f"{text!r} is not a node id")
    return int(digits)


def _nodes(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.split("+"):
        lo, dash, hi = part.partition("-")
        if dash:
            a, b = _node(lo), _node(hi)
            if b < a:
                raise ValueError(f"empty node range {part!r}")
            out.extend(range(a, b + 1))
        else:
            out.append(_node(part))
    return tuple(out)


def _probability(text: str) -> float:
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability {text!r} is outside [0, 1]")
    return p


def _parse_action(name: str, args: str, at_s: float) -> FaultAction:
    parts = args.split(":") if args else []
    if name in ("crash", "restart"):
        _arity(name, parts, 1)
        return FaultAction(at_s, name, node=_node(parts[0]))
    if name == "slow":
        _arity(name, parts, 2)
        factor = float(parts[1])
        if not factor > 0:
            raise ValueError("the slowness factor must be > 0")
        return FaultAction(at_s, name, node=_node(parts[0]), value=factor)
    if name == "skew":
        if len(parts) not in (2, 3):
            raise ValueError("skew takes N:OFFSET_S[:RATE]")
        rate = float(parts[2]) if len(parts) == 3 else 0.0
        if len(parts) == 3 and not rate > 0:
            raise ValueError("a clock rate must be > 0")
        return FaultAction(at_s, name, node=_node(parts[0]), value=float(parts[1]), rate=rate)
    if name == "partition":
        _arity(name, parts, 1)
        groups = tuple(_nodes(g) for g in parts[0].split("|"))
        if len(groups) < 2:
            raise ValueError("a partition needs at least two groups separated by '|'")
        seen: set[int] = set()
        for g in groups:
            if seen & set(g):
                raise ValueError("a node appears in two partition groups")
            seen |= set(g)
        return FaultAction(at_s, name, groups=groups)
    if name == "cut":
        _arity(name, parts, 1)
        src, sep, dst = parts[0].replace("->", ">").partition(">")
        if not sep:
            raise ValueError("cut takes A>B (messages from A to B are dropped)")
        return FaultAction(at_s, name, node=_node(src), peer=_node(dst))
    if name in ("heal", "restart-all"):
        _arity(name, parts, 0)
        return FaultAction(at_s, name)
    if name in ("loss", "dup", "reorder"):
        _arity(name, parts, 1)
        return FaultAction(at_s, name, value=_probability(parts[0]))
    raise ValueError(f"unknown fault {name!r}; known: {', '.join(KINDS)}")


def _arity(name: str, parts: list[str], n: int) -> None:
    if len(parts) != n:
        raise ValueError(f"{name} takes {n} argument(s) separated by ':', got {len(parts)}")


def load_file(path: str) -> list[FaultAction]:
    """Read a scenario file: JSON (a list, or ``{"faults": [...]}``) or TOML
    (``faults = [...]``), each item a SPEC item string."""
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read fault scenario {path!r}: {exc.strerror}") from None
    data: Any
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"fault scenario {path!r} is not valid {p.suffix or 'JSON'}: {exc}") from None
    items = data.get("faults") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"fault scenario {path!r}: expected a list of fault items like 'crash:2@5s'")
    return sorted((parse_item(i) for i in items), key=lambda a: a.at_s)


def validate(actions: list[FaultAction], nodes: int) -> None:
    """Reject actions that name replicas outside ``1..nodes``."""
    for a in actions:
        named = [n for n in (a.node, a.peer) if n != -1] + [n for g in a.groups for n in g]
        for n in named:
            if not 1 <= n <= nodes:
                raise ConfigError(
                    f"fault {a.describe()!r} names node {n}, but the cluster has nodes 1..{nodes}"
                )


def chaos(
    rng: random.Random,
    *,
    nodes: int,
    heal_at_s: float,
    max_crashed: int,
    mean_gap_s: float = CHAOS_MEAN_GAP_S,
) -> list[FaultAction]:
    """A random schedule up to ``heal_at_s``, then a full heal (module docstring)."""
    out: list[FaultAction] = []
    crashed: list[int] = []
    slowed: set[int] = set()
    t = CHAOS_START_S
    kinds = ("crash", "restart", "partition", "cut", "heal", "slow", "skew", "loss", "reorder")
    weights = (3, 3, 2, 2, 2, 1, 1, 1, 1)
    while True:
        t += rng.expovariate(1.0 / mean_gap_s)
        if t >= heal_at_s:
            break
        kind = rng.choices(kinds, weights)[0]
        if kind == "crash":
            up = [n for n in range(1, nodes + 1) if n not in crashed]
            if len(crashed) >= max_crashed or not up:
                continue
            victim = rng.choice(up)
            crashed.append(victim)
            out.append(FaultAction(t, "crash", node=victim))
        elif kind == "restart":
            if not crashed:
                continue
            node = crashed.pop(rng.randrange(len(crashed)))
            out.append(FaultAction(t, "restart", node=node))
        elif kind == "partition":
            if nodes < 2:
                continue
            order = list(range(1, nodes + 1))
            rng.shuffle(order)
            split = rng.randrange(1, nodes)
            out.append(FaultAction(t, "partition", groups=(tuple(sorted(order[:split])), tuple(sorted(order[split:])))))
        elif kind == "cut":
            if nodes < 2:
                continue
            a, b = rng.sample(range(1, nodes + 1), 2)
            out.append(FaultAction(t, "cut", node=a, peer=b))
        elif kind == "heal":
            out.append(FaultAction(t, "heal"))
        elif kind == "slow":
            node = 1 + rng.randrange(nodes)
            slowed.add(node)
            out.append(FaultAction(t, "slow", node=node, value=rng.uniform(2.0, CHAOS_MAX_SLOW_FACTOR)))
        elif kind == "skew":
            node = 1 + rng.randrange(nodes)
            rate = 1.0 + rng.uniform(-CHAOS_MAX_DRIFT, CHAOS_MAX_DRIFT)
            out.append(FaultAction(t, "skew", node=node, value=rng.uniform(0.0, CHAOS_MAX_SKEW_S), rate=rate))
        elif kind == "reorder":
            out.append(FaultAction(t, "reorder", value=rng.uniform(0.05, CHAOS_MAX_REORDER)))
        else:
            out.append(FaultAction(t, "loss", value=rng.uniform(0.01, CHAOS_MAX_LOSS)))
    out.append(FaultAction(heal_at_s, "heal"))
    out.append(FaultAction(heal_at_s, "restart-all"))
    out.extend(FaultAction(heal_at_s, "slow", node=n, value=1.0) for n in sorted(slowed))
    return out
