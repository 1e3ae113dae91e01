"""Entry point of the ``quorate`` command.

User mistakes (bad flags, unreadable files, impossible scenarios) end with a
one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

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


sim_app = typer.Typer(help="Run a protocol in the deterministic simulator.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks; --json prints one machine-readable object.", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")
app.add_typer(bench_app, name="bench")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.echo(f"quorate: error: {message}", err=True)
    return typer.Exit(code)


PIP_NAMES = {
    "nacl": "pynacl",
    "blspy": "blspy",
    "pycrdt": "pycrdt",
    "uvloop": "uvloop",
    "hdrh": "hdrhistogram",
    "psutil": "psutil",
    "matplotlib": "matplotlib",
    "mcp": "mcp",
    "prometheus_client": "prometheus-client",
    "starlette": "starlette",
    "sse_starlette": "sse-starlette",
    "uvicorn": "uvicorn",
    "playwright": "playwright",
    "pymetis": "pymetis",
    "networkx": "networkx",
}
"""Module name -> the package ``pip`` installs it from."""
EXTRAS = {
    "hdrhistogram": "bench",
    "psutil": "bench",
    "matplotlib": "bench",
    "pymetis": "sharding",
    "networkx": "sharding",
}
"""Packages of an optional extra: the message names the whole extra."""
EXTRA_PACKAGES = {"bench": "hdrhistogram psutil matplotlib", "sharding": "pymetis networkx"}


def missing_package(exc: ImportError) -> str | None:
    """The ``pip`` package whose absence raised ``exc``, or ``None`` when
    ``exc`` is not about a third-party package (a bug: let it show)."""
    return PIP_NAMES.get((exc.name or "").split(".")[0])


def missing_module(exc: ImportError) -> str:
    """One line naming the missing package and the command that installs it
    (``pip install NAME`` works from a checkout and from an index alike)."""
    package = missing_package(exc)
    if package is None:
        return f"cannot import {exc.name or 'a module'}: {exc}"
    extra = EXTRAS.get(package)
    if extra is not None:
        return (
            f"{package} is not installed; this command needs the {extra} extra: "
            f"pip install {EXTRA_PACKAGES[extra]}"
        )
    return f"{package} is not installed: pip install {package}"


def shown(value: object) -> str:
    """A measured figure for a person: ``-`` when there is none (nothing
    completed), never ``None``."""
    return "-" if value is None else str(value)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; values read as TOML scalars (true, 3,
    0.5, "x") or else taken as plain strings."""
    import tomllib

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--option takes KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        options[key.strip()] = value
    return options


def _register() -> None:
    """Import every module of ``quorate.cli``; each adds its commands to ``app``,
    ``sim_app`` or ``bench_app`` when imported."""
    import importlib
    import pkgutil

    import quorate.cli as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "main":
            importlib.import_module(f"quorate.cli.{info.name}")


def main() -> None:
    _register()
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"quorate: error: {exc}", err=True)
        sys.exit(2)
    except ImportError as exc:
        if missing_package(exc) is None:
            raise
        typer.echo(f"quorate: error: {missing_module(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("quorate: interrupted", err=True)
        sys.exit(130)
