"""A dot map's join must not depend on Python's string hashing: its key order
reaches the wire, and the simulator replays a run from its seed alone."""

import subprocess
import sys

SNIPPET = """
from quorate.crdt.causal import CausalContext
from quorate.crdt.dotstore import DotMapKind, DotSetKind

kind = DotMapKind(DotSetKind())
a = {f"a{i}": {(1, i + 1)} for i in range(12)}
b = {f"b{i}": {(2, i + 1)} for i in range(12)}
ca = CausalContext({1: 12})
cb = CausalContext({2: 12})
print(list(kind.join(a, ca, b, cb)))
"""


def _keys_under(hash_seed: str) -> str:
    env = {"PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_join_order_is_the_same_under_any_string_hash_seed() -> None:
    first = _keys_under("1")
    assert first == _keys_under("2")
    assert first.startswith("['a0', 'a1'")
