"""Entry point of the ``quorate`` command.

User mistakes (bad flags, unreadable files, impossible scenarios) end with a
one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from quorate import __version__
from quorate.errors import ConfigError

app = typer.Typer(
    name="quorate",
    help="Consensus and shared state for groups of processes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.echo(f"quorate: error: {message}", err=True)
    return typer.Exit(code)


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``.
    import importlib

    for name in ("quorate.cli.commands",):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def main() -> None:
    _register()
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"quorate: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("quorate: interrupted", err=True)
        sys.exit(130)
