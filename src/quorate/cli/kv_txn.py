"""``quorate kv txn``: transactions against an HRB deployment, from the shell.

Theory of operation: each command builds one ``quorate.client.hrb.
AsyncHrbClient`` (the cluster directory ``quorate cluster up --protocol
hrb`` wrote, or ``--endpoints``), learns the deployment from a node, runs
one transaction and prints its outcome. A transaction whose keys all live in
its home shard is ordered by that shard alone; one touching other shards
goes through the core (atomic: applied in every shard or in none).

Operations of ``quorate kv txn run`` (one argument each)::

    KEY=VALUE          put
    KEY?               get (its value is printed)
    KEY+=N  KEY-=N     add N (an integer) or subtract it;
    KEY-=N,min=M       ... and abort the whole transaction if KEY would fall below M
    KEY==OLD->NEW      compare-and-set

``put``, ``get`` and ``transfer`` are the common cases spelled out.

Exit codes: 0 committed; 1 aborted (the reason follows ``aborted:``), no
node answered, or no outcome within ``--timeout`` (the transaction may or
may not apply); 2 a usage mistake (a malformed operation, no cluster).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

import typer

from quorate.cli.kv import Directory, Endpoints, Insecure, Timeout, TlsDir, TlsName, kv_app
from quorate.cli.main import fail
from quorate.client.contact import ClientError, ClusterUnreachable
from quorate.errors import ConfigError
from quorate.hrb.messages import TxnOp

txn_app = typer.Typer(
    help="Transactions across shards (an HRB deployment: quorate cluster up --protocol hrb).",
    no_args_is_help=True,
)
kv_app.add_typer(txn_app, name="txn")

_ADD = re.compile(r"^(?P<key>.+?)(?P<sign>[+-])=(?P<amount>\d+)(,min=(?P<minimum>-?\d+))?$")
_CAS = re.compile(r"^(?P<key>.+?)==(?P<old>.*)->(?P<new>.*)$")

Home = Annotated[int | None, typer.Option("--home", help="The home shard [default: the first key's shard].")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON object.")]


def parse_op(text: str) -> TxnOp:
    """One operation of ``quorate kv txn run`` (see the module docstring); ``ConfigError`` if malformed."""
    if text.endswith("?") and len(text) > 1:
        return TxnOp(text[:-1], "get")
    cas = _CAS.match(text)
    if cas is not None:
        return TxnOp(cas["key"], "cas", cas["new"], expected=cas["old"])
    add = _ADD.match(text)
    if add is not None:
        amount = int(add["amount"])
        minimum = None if add["minimum"] is None else int(add["minimum"])
        return TxnOp(add["key"], "add", delta=amount if add["sign"] == "+" else -amount, minimum=minimum)
    key, sep, value = text.partition("=")
    if sep and key:
        return TxnOp(key, "put", value)
    raise ConfigError(
        f"cannot read the operation {text!r}; write KEY=VALUE, KEY?, KEY+=N, KEY-=N[,min=M] or KEY==OLD->NEW"
    )


def _run(
    ops: list[TxnOp],
    home: int | None,
    as_json: bool,
    directory: Any,
    endpoints: str | None,
    insecure: bool,
    tls_dir: Any,
    tls_name: str,
    timeout_s: float,
) -> None:
    from quorate.cli.kv import Target
    from quorate.client.hrb import AsyncHrbClient

    options = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s).client_options()
    options.pop("tls_name")
    try:
        client = AsyncHrbClient(**options)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    async def go() -> Any:
        try:
            return await client.transact(ops, home_shard=home)
        finally:
            await client.close()

    try:
        outcome = asyncio.run(go())
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except (ClusterUnreachable, ClientError, TimeoutError) as exc:
        raise fail(str(exc), 1) from None
    reads = {key: value for key, value in outcome.reads}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "committed": outcome.committed,
                    "reason": outcome.reason,
                    "reads": reads,
                    "txn_id": outcome.txn_id.hex(),
                }
            )
        )
    elif outcome.committed:
        for key, value in reads.items():
            typer.echo(f"{key}\t{'' if value is None else value}")
        typer.echo("committed")
    if not outcome.committed:
        if not as_json:
            typer.echo(f"aborted: {outcome.reason}", err=True)
        raise typer.Exit(1)


@txn_app.command("run")
def run_command(
    operations: Annotated[list[str], typer.Argument(help="KEY=VALUE, KEY?, KEY+=N, KEY-=N[,min=M], KEY==OLD->NEW")],
    home: Home = None,
    as_json: AsJson = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = 30.0,
) -> None:
    """Run one transaction of any operations, atomically across shards."""
    try:
        ops = [parse_op(text) for text in operations]
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _run(ops, home, as_json, directory, endpoints, insecure, tls_dir, tls_name, timeout_s)


@txn_app.command("put")
def put_command(
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE ...")],
    home: Home = None,
    as_json: AsJson = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = 30.0,
) -> None:
    """Set several keys in one transaction."""
    ops = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"put takes KEY=VALUE, got {pair!r}")
        ops.append(TxnOp(key, "put", value))
    _run(ops, home, as_json, directory, endpoints, insecure, tls_dir, tls_name, timeout_s)


@txn_app.command("get")
def get_command(
    keys: Annotated[list[str], typer.Argument(help="KEY ... (all in the home shard: one read per shard otherwise)")],
    as_json: AsJson = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = 30.0,
) -> None:
    """Read keys through their shards' logs (linearizable)."""
    from quorate.cli.kv import Target
    from quorate.client.hrb import AsyncHrbClient

    options = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s).client_options()
    options.pop("tls_name")
    try:
        client = AsyncHrbClient(**options)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    async def go() -> dict[str, str | None]:
        try:
            return await client.read(keys)
        finally:
            await client.close()

    try:
        values = asyncio.run(go())
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except (ClusterUnreachable, ClientError, TimeoutError) as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(values))
        return
    for key, value in values.items():
        typer.echo(f"{key}\t{'' if value is None else value}")
    if any(value is None for value in values.values()):
        raise typer.Exit(1)


@txn_app.command("transfer")
def transfer_command(
    source: Annotated[str, typer.Argument(help="The account debited.")],
    target: Annotated[str, typer.Argument(help="The account credited.")],
    amount: Annotated[int, typer.Argument(help="A positive integer.")],
    minimum: Annotated[int, typer.Option("--minimum", help="Abort if SOURCE would fall below this.")] = 0,
    home: Home = None,
    as_json: AsJson = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = 30.0,
) -> None:
    """Move AMOUNT from SOURCE to TARGET, atomically, unless SOURCE would fall below --minimum."""
    from quorate.client.hrb import transfer_ops

    try:
        ops = list(transfer_ops(source, target, amount, minimum))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _run(ops, home, as_json, directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
