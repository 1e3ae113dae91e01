"""The checker agrees with hand-made histories: each file's name says its verdict.

Files are in ``histories/``: ``linearizable_*`` and ``not_linearizable_*``, as
JSON arrays (``.json``) or JSON Lines (``.jsonl``).
Reference: Herlihy & Wing 1990, section 3 (definition of linearizability).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quorate.check import Explanation, check_history, load_history

HISTORIES = Path(__file__).parent / "histories"
FILES = sorted(HISTORIES.glob("*.json*"))


def _explanation(name: str) -> Explanation:
    result = check_history(HISTORIES / name)
    assert result.verdict == "not_linearizable"
    assert result.explanation is not None
    return result.explanation


def test_there_are_both_kinds_and_both_formats() -> None:
    names = [f.name for f in FILES]
    assert any(n.startswith("linearizable_") and n.endswith(".json") for n in names)
    assert any(n.startswith("linearizable_") and n.endswith(".jsonl") for n in names)
    assert any(n.startswith("not_linearizable_") and n.endswith(".json") for n in names)
    assert any(n.startswith("not_linearizable_") and n.endswith(".jsonl") for n in names)


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_verdict_matches_the_file_name(path: Path) -> None:
    expected = "not_linearizable" if path.name.startswith("not_") else "linearizable"
    result = check_history(path)
    assert result.verdict == expected
    assert result.linearizable is (expected == "linearizable")
    assert (result.explanation is not None) is (expected == "not_linearizable")


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_a_path_given_as_str_and_the_events_as_dicts_agree(path: Path) -> None:
    import json

    text = path.read_text()
    events = (
        json.loads(text)
        if path.suffix == ".json"
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    assert check_history(str(path)).verdict == check_history(events).verdict


def test_stale_read_explanation_keeps_both_writes_and_the_read() -> None:
    explanation = _explanation("not_linearizable_stale_read.jsonl")
    assert explanation.key == "x"
    assert [(op.f, op.value) for op in explanation.operations] == [
        ("write", 1),
        ("write", 2),
        ("read", 1),
    ]
    assert explanation.minimal
    text = explanation.render()
    assert text.startswith('key "x": these 3 operations cannot be linearized:')
    assert "process 1 read 1" in text
    assert "[call 4, return 5]" in text


def test_read_of_a_value_never_written_shrinks_to_that_read() -> None:
    explanation = _explanation("not_linearizable_never_written.jsonl")
    assert [(op.process, op.f, op.value) for op in explanation.operations] == [(1, "read", 7)]


def test_wrong_cas_explanation_names_the_cas() -> None:
    explanation = _explanation("not_linearizable_wrong_cas.jsonl")
    fs = [op.f for op in explanation.operations]
    assert "cas" in fs
    assert explanation.stuck_at is not None and explanation.stuck_at.f == "cas"


def test_info_write_seen_then_undone_needs_all_three() -> None:
    explanation = _explanation("not_linearizable_info_happened_then_undone.jsonl")
    assert sorted((op.f, op.value, op.outcome) for op in explanation.operations) == [
        ("read", 1, "ok"),
        ("read", 2, "ok"),
        ("write", 1, "ok"),
        ("write", 2, "info"),
    ]


def test_violation_on_one_key_names_that_key() -> None:
    explanation = _explanation("not_linearizable_value_from_other_key.jsonl")
    assert explanation.key == "y"
    assert all(op.key == "y" for op in explanation.operations)


def test_keys_are_counted() -> None:
    result = check_history(HISTORIES / "linearizable_keys_independent.jsonl")
    assert (result.keys, result.keys_checked, result.operations) == (3, 3, 5)


def test_explanation_json_is_plain_data() -> None:
    import json

    result = check_history(HISTORIES / "not_linearizable_stale_read.jsonl")
    document = result.to_json()
    assert json.loads(json.dumps(document)) == document
    explanation = document["explanation"]
    assert isinstance(explanation, dict)
    assert explanation["key"] == "x"
    assert {"process": 1, "f": "read", "value": 1, "call": 4, "return": 5, "outcome": "ok"} in (
        explanation["operations"]
    )


def test_unfinished_invoke_at_the_end_counts_as_info() -> None:
    ops = load_history(HISTORIES / "linearizable_info_process_reused_and_cut_off.jsonl")
    last = ops[-1]
    assert (last.process, last.f, last.value, last.outcome) == (1, "write", 9, "info")
