"""``RememberingVerifier``: a core member's signature checks, each valid one
made once.

Theory of operation. A command from a shard reaches a core member more than
once and is checked each time: when it arrives (``CoreState.precheck``, before
the member proposes it), again when a shard leader resends it unchanged
because the core has not decided yet, and once more when the ordered log
applies it (``CoreState.apply``: a Byzantine member may have ordered
anything). A shard's vote carries the leader's signature and a quorum of
members' acknowledgements (18 signatures at a shard of 25), so these repeated
checks were most of what a core member's CPU did under cross-shard load.

The verifier remembers the ``(signer, data, signature)`` triples it found
valid (the most recent ``capacity`` of them) and answers those from memory.
Only successes are kept: a signature that fails is checked again every time
it is shown. Every member still checks every signature itself before it
believes it, so a Byzantine member or shard gains nothing: whether a
signature verifies is a fixed fact about its bytes and the signer's key.
Eviction changes who may sign, not whether a signature verifies, and the
state machine checks membership apart from the signature.
"""

from __future__ import annotations

from collections import OrderedDict

from quorate.core.signing import Verifier
from quorate.errors import ConfigError
from quorate.ids import NodeId

__all__ = ["DEFAULT_REMEMBERED", "RememberingVerifier"]

DEFAULT_REMEMBERED = 32768
"""Valid signatures kept: about 1,800 shard votes of 18 signatures, several
seconds of cross-shard load in flight at a large deployment."""


class RememberingVerifier:
    """A ``Verifier`` that checks a valid signature once (module docstring)."""

    __slots__ = ("_inner", "_valid", "capacity", "checked", "remembered")

    def __init__(self, inner: Verifier, capacity: int = DEFAULT_REMEMBERED) -> None:
        if capacity < 1:
            raise ConfigError(f"a remembering verifier keeps at least one signature, got {capacity}")
        self._inner = inner
        self._valid: OrderedDict[tuple[int, bytes, bytes], None] = OrderedDict()
        self.capacity = capacity
        self.checked = 0
        """Signatures handed to the inner verifier."""
        self.remembered = 0
        """Checks answered from memory."""

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        if not (isinstance(node, int) and isinstance(data, bytes) and isinstance(signature, bytes)):
            self.checked += 1
            return self._inner.verify(node, data, signature)
        key = (int(node), data, signature)
        valid = self._valid
        if key in valid:
            valid.move_to_end(key)
            self.remembered += 1
            return True
        self.checked += 1
        ok = self._inner.verify(node, data, signature)
        if ok:
            valid[key] = None
            if len(valid) > self.capacity:
                valid.popitem(last=False)
        return ok
