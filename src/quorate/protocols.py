"""The registry of protocol bindings: the one place that names the protocols.

Runtimes, the CLI and benchmarks ask ``binding(name)`` for a protocol's
``quorate.core.binding.Binding``; each protocol package exports its binding
as ``BINDING`` from its ``binding`` module, imported only when first asked
for, so a protocol whose optional dependencies are missing fails only when
chosen (with a ``ConfigError`` that says what is missing). ``register`` adds
more (the simulator's reference protocol, a test's toy protocol).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from quorate.core.binding import Binding
from quorate.errors import ConfigError

__all__ = ["binding", "byzantine_fault_tolerant", "names", "register"]

_MODULES = {
    "raft": "quorate.raft.binding",
    "pbft": "quorate.pbft.binding",
    "hotstuff": "quorate.hotstuff.binding",
    "casper": "quorate.casper.binding",
    "hrb-shard": "quorate.hrb.shard.binding",
    "hrb": "quorate.hrb.node",
}
"""Protocols that ship with quorate: name -> module exporting ``BINDING``."""

_LOADERS: dict[str, Callable[[], Binding]] = {}
_LOADED: dict[str, Binding] = {}


def register(name: str, loader: Callable[[], Binding]) -> None:
    """Make ``name`` available to ``binding`` (a later call replaces it)."""
    _LOADERS[name] = loader
    _LOADED.pop(name, None)


def names() -> list[str]:
    """Every protocol a runtime can be asked to run: those that ship with
    quorate in their order, then the registered ones."""
    return [*_MODULES, *(name for name in _LOADERS if name not in _MODULES)]


def _import(module: str) -> Binding:
    found = importlib.import_module(module).BINDING
    if not isinstance(found, Binding):
        raise TypeError(f"{module}.BINDING is a {type(found).__name__}, not a Binding")
    return found


def binding(name: str) -> Binding:
    """The binding registered as ``name``; ``ConfigError`` if unknown or not installed."""
    found = _LOADED.get(name)
    if found is not None:
        return found
    loader = _LOADERS.get(name)
    module = _MODULES.get(name)
    if loader is None and module is None:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(names())}")
    try:
        found = loader() if loader is not None else _import(module)  # type: ignore[arg-type]
    except ImportError as exc:
        raise ConfigError(
            f"protocol {name!r} is not available in this installation ({exc}); its "
            "dependencies come with quorate: reinstall it (pip install . in a checkout)"
        ) from None
    _LOADED[name] = found
    return found


def byzantine_fault_tolerant(name: str) -> bool:
    """True when protocol ``name`` tolerates Byzantine replicas (its clients
    need f + 1 matching replies, its nodes sign); False for an unknown name."""
    try:
        return binding(name).fault_model == "byzantine"
    except ConfigError:
        return False
