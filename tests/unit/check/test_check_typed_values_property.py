"""Re-typed histories get the verdict the typed rule implies.

Take a history from clients of an atomic register (integer values and keys),
and re-type some occurrences: ``1`` becomes ``true``, ``0`` becomes ``false``,
an integer becomes the float of the same value, values get wrapped in an
array or object. Under the rule of ``quorate.check.values`` a boolean is a
value of its own and a float is the integer it equals, so the checker must
give the re-typed history exactly the verdict (and the explanation) it gives
a twin in which each boolean is replaced by a string no other value equals
and each float by its integer: the twin's values are plain and can only be
compared one way.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.check import CheckResult, check_history, simulate_register_history

Event = dict[str, object]
Wrap = Callable[[object], object]

WRAPS: dict[str, Wrap] = {
    "plain": lambda v: v,
    "array": lambda v: [v, "tail"],
    "object": lambda v: {"inner": [v], "other": None},
}


def _twins(atom: object, rng: random.Random, share: float) -> tuple[object, object]:
    """One occurrence of an integer (or null) as (re-typed, plain twin)."""
    if not isinstance(atom, int) or rng.random() >= share:
        return atom, atom
    if atom in (0, 1) and rng.random() < 0.7:
        return bool(atom), f"boolean {bool(atom)}"
    return float(atom), atom


def _value(raw: object, rng: random.Random, share: float, wrap: Wrap) -> tuple[object, object]:
    if raw is None:
        return None, None  # the initial value: a read of it must stay a read of it
    if isinstance(raw, list):  # cas [expected, new]
        pairs = [_value(item, rng, share, wrap) for item in raw]
        return [typed for typed, _ in pairs], [plain for _, plain in pairs]
    typed, plain = _twins(raw, rng, share)
    return wrap(typed), wrap(plain)


def retype(
    events: list[Event], rng: random.Random, share: float, wrap: Wrap
) -> tuple[list[Event], list[Event]]:
    """(re-typed history, plain twin). A key is re-typed per operation (its
    invoke and its completion alike, as the format requires); a value per event."""
    typed_events: list[Event] = []
    plain_events: list[Event] = []
    key_of_pending: dict[object, tuple[object, object]] = {}
    for event in events:
        if event["type"] == "invoke":
            key_of_pending[event["process"]] = _twins(event["key"], rng, share)
        typed_key, plain_key = key_of_pending[event["process"]]
        typed_value, plain_value = _value(event["value"], rng, share, wrap)
        typed_events.append({**event, "key": typed_key, "value": typed_value})
        plain_events.append({**event, "key": plain_key, "value": plain_value})
    return typed_events, plain_events


def _outline(result: CheckResult) -> tuple[object, ...]:
    explanation = result.explanation
    if explanation is None:
        return (result.verdict,)
    return (
        result.verdict,
        tuple((op.call_index, op.return_index) for op in explanation.operations),
    )


@settings(max_examples=300, deadline=None)
@given(
    rng=st.randoms(use_true_random=False),
    operations=st.integers(1, 50),
    keys=st.integers(1, 3),
    processes=st.integers(1, 5),
    values=st.integers(1, 3),
    info_rate=st.sampled_from([0.0, 0.1]),
    share=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
    wrap=st.sampled_from(sorted(WRAPS)),
)
def test_a_retyped_history_gets_the_verdict_of_its_plain_twin(
    rng: random.Random,
    operations: int,
    keys: int,
    processes: int,
    values: int,
    info_rate: float,
    share: float,
    wrap: str,
) -> None:
    events = simulate_register_history(
        rng, operations, keys, processes, values, fail_rate=0.05, info_rate=info_rate
    )
    typed, plain = retype(events, rng, share, WRAPS[wrap])
    assert _outline(check_history(typed)) == _outline(check_history(plain))


def test_the_property_sees_both_verdicts_and_would_catch_python_equality() -> None:
    """On fixed seeds the re-typed histories are sometimes linearizable and
    sometimes not, and some of them would pass if ``true`` were ``1`` (their
    un-re-typed original is linearizable by construction)."""
    verdicts = set()
    caught_only_by_types = 0
    for seed in range(40):
        rng = random.Random(seed)
        events = simulate_register_history(rng, 20, keys=2, processes=4, values=2)
        typed, plain = retype(events, rng, 0.05, WRAPS["plain"])
        verdict = check_history(typed).verdict
        assert verdict == check_history(plain).verdict
        verdicts.add(verdict)
        caught_only_by_types += verdict == "not_linearizable"
    assert verdicts == {"linearizable", "not_linearizable"}
    assert caught_only_by_types >= 5
