"""``quorate check FILE``: is a recorded history linearizable?

Prints the verdict for a person: one line, and on a violation the smallest set
of operations found that cannot be ordered, one per line. ``--json`` prints one
JSON object instead (verdict, counts, the explanation's operations). Exit codes
say the verdict so scripts need not parse the output: 0 linearizable, 1 not
linearizable, 2 the checker gave up within ``--timeout``, 3 the input could not
be read (a one-line message on stderr names the line and the problem).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated

import typer

from quorate.check import HistoryError, check_history
from quorate.cli.main import app, fail

EXIT_LINEARIZABLE = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_UNKNOWN = 2
EXIT_BAD_INPUT = 3

_EXIT_FOR_VERDICT = {
    "linearizable": EXIT_LINEARIZABLE,
    "not_linearizable": EXIT_NOT_LINEARIZABLE,
    "unknown": EXIT_UNKNOWN,
}


def _timeout_seconds(text: str) -> float:
    # Parsed here rather than by the option parser, whose usage errors exit 2,
    # the code reserved for "gave up".
    try:
        seconds = float(text)
    except ValueError:
        raise fail(f"--timeout must be a number of seconds, got {text!r}", EXIT_BAD_INPUT) from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise fail(f"--timeout must be a positive number of seconds, got {text!r}", EXIT_BAD_INPUT)
    return seconds


@app.command("check")
def check_command(
    file: Annotated[
        Path, typer.Argument(help="History: a JSON array or JSON Lines of Jepsen-style events.")
    ],
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout", metavar="SECONDS", help="Give up (exit 2) after this many seconds."
        ),
    ] = "60",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of text.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Print nothing; only the exit code tells.")
    ] = False,
) -> None:
    """Check a history of read/write/cas operations for linearizability, key by key."""
    timeout_s = _timeout_seconds(timeout)
    try:
        result = check_history(file, timeout_s=timeout_s, clock=time.monotonic)
    except HistoryError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    if as_json and not quiet:
        typer.echo(json.dumps(result.to_json()))
    elif not quiet:
        typer.echo(result.render())
    raise typer.Exit(_EXIT_FOR_VERDICT[result.verdict])
