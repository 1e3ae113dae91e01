"""The README's example of distributed keys and private votes runs as written."""

from __future__ import annotations

import pathlib

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"
SECTION = "### Distributed keys and private votes"


def test_the_readme_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("```", start)]
    assert "run_in_memory(group)" in code and "OpenTally" in code
    exec(compile(code, f"{README}:{SECTION}", "exec"), {"__name__": "readme_example"})
