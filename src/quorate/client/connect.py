"""``quorate.connect(...)``: one blocking handle on a cluster for a plain
Python agent, with ``kv``, ``tasks``, ``locks``, ``votes``, ``watches`` and ``audit``.

Theory of operation: a ``Connection`` owns one ``Client`` (its own event
loop in a thread, one session with the cluster) and exposes the agent API
of ``quorate.client.agents`` through it, each call blocking until the
cluster answered. With ``agent="NAME"`` it loads that agent's identity
(``<cluster>/agents/NAME.key``, made by ``quorate agents add NAME``), so
``vote`` signs with the agent's own key. A connection serves one call at a
time (the session's exactly-once rule); give each agent thread its own.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from quorate.client.agents import (
    WATCH_POLL_INTERVAL_S,
    WATCH_POLL_MAX_INTERVAL_S,
    AsyncAudit,
    AsyncLocks,
    AsyncTasks,
    AsyncVotes,
    AsyncWatches,
)
from quorate.client.contact import DEFAULT_DEADLINE_S, DEFAULT_TIMEOUT_S
from quorate.client.identity import AGENTS_DIR, AgentIdentity, load_identity
from quorate.client.sync import Client
from quorate.errors import ConfigError
from quorate.runtime.aio.cluster import DEFAULT_CLUSTER_DIR
from quorate.runtime.aio.config import Address
from quorate.runtime.aio.tls import TlsConfig


class _Blocking:
    """Each coroutine method of ``target``, run to completion on the client's loop."""

    def __init__(self, target: Any, client: Client) -> None:
        self._target = target
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._client.run(attribute(*args, **kwargs))

        call.__doc__ = attribute.__doc__
        return call


class Tasks(_Blocking):
    """``AsyncTasks``, blocking: submit, claim, heartbeat, complete, fail, cancel, status, list."""


class Locks(_Blocking):
    """``AsyncLocks``, blocking: acquire, release, status, fenced_put."""


class Votes(_Blocking):
    """``AsyncVotes``, blocking: register, agents, propose, vote, cast, status, list."""


class Watches(_Blocking):
    """``AsyncWatches``, blocking: ``poll`` and the ``watch`` generator."""

    def watch(
        self,
        prefix: str = "",
        *,
        namespace: str = "",
        from_revision: int = 0,
        poll_interval_s: float = WATCH_POLL_INTERVAL_S,
    ) -> Iterator[dict[str, Any]]:
        """Every change in order, from ``from_revision`` (0: from now on)."""
        revision = from_revision
        if revision <= 0:
            _, revision = self.poll(prefix, namespace=namespace)
        pause = poll_interval_s
        while True:
            events, revision = self.poll(prefix, namespace=namespace, from_revision=revision)
            yield from events
            if events:
                pause = poll_interval_s
            else:
                time.sleep(pause)
                pause = min(pause * 2, WATCH_POLL_MAX_INTERVAL_S)


class Audit(_Blocking):
    """``AsyncAudit``, blocking: ``query``."""


class Connection:
    """A blocking handle on a cluster (see the module docstring)."""

    def __init__(
        self,
        endpoints: Iterable[str | Address] | None = None,
        *,
        cluster: str | Path | None = None,
        tls: TlsConfig | str | Path | None = None,
        insecure: bool = False,
        agent: str | AgentIdentity | None = None,
        namespace: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        directory = Path(cluster) if cluster is not None else DEFAULT_CLUSTER_DIR
        identity: AgentIdentity | None
        if isinstance(agent, str):
            identity = load_identity(directory / AGENTS_DIR, agent)
        else:
            identity = agent
        self.identity = identity
        self.kv = Client(
            endpoints, cluster=cluster, tls=tls, insecure=insecure, namespace=namespace,
            timeout_s=timeout_s, deadline_s=deadline_s,
        )
        execute = self.kv.async_client.execute
        self.tasks = Tasks(AsyncTasks(execute), self.kv)
        self.locks = Locks(AsyncLocks(execute), self.kv)
        self.votes = Votes(AsyncVotes(execute), self.kv)
        self.watches = Watches(AsyncWatches(execute), self.kv)
        self.audit = Audit(AsyncAudit(execute), self.kv)

    @property
    def name(self) -> str:
        """This agent's name (``agent=`` at connect)."""
        return self._identity().name

    def _identity(self) -> AgentIdentity:
        if self.identity is None:
            raise ConfigError("this connection has no agent identity: connect with agent='NAME'")
        return self.identity

    def register(self) -> dict[str, Any]:
        """Register this agent's public key with the cluster (again: a no-op)."""
        result: dict[str, Any] = self.votes.register(self._identity())
        return result

    def vote(self, proposal_id: str, option: str) -> dict[str, Any]:
        """Cast this agent's signed ballot; the proposal after it."""
        result: dict[str, Any] = self.votes.vote(self._identity(), proposal_id, option)
        return result

    def close(self) -> None:
        self.kv.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    endpoints: Iterable[str | Address] | None = None,
    *,
    cluster: str | Path | None = None,
    tls: TlsConfig | str | Path | None = None,
    insecure: bool = False,
    agent: str | AgentIdentity | None = None,
    namespace: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> Connection:
    """A ``Connection`` to the cluster (by default the local one in
    ``./quorate-cluster``), as ``agent`` when given."""
    return Connection(
        endpoints, cluster=cluster, tls=tls, insecure=insecure, agent=agent, namespace=namespace,
        timeout_s=timeout_s, deadline_s=deadline_s,
    )


__all__ = ["Audit", "Connection", "Locks", "Tasks", "Votes", "Watches", "connect"]
