"""A member process for ``quorate bench recovery``'s loopback run: it serves
files of one directory over TCP until its standard input closes.

Protocol (one request per connection): the client sends a 2-byte length and a
file name; the server answers an 8-byte length and the file's bytes, or a
length of 2**64 - 1 for a name it does not have. The files are read into
memory before the port is printed, so a timed fetch measures the transfer,
not the disk.

Run: ``python -m quorate.bench.recovery_peer DIRECTORY`` prints
``port N`` on its first line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

NOT_FOUND = (1 << 64) - 1
_CHUNK_BYTES = 1 << 20


async def _serve(directory: Path) -> None:
    files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            name = (await reader.readexactly(size)).decode()
            data = files.get(name)
            if data is None:
                writer.write(NOT_FOUND.to_bytes(8, "big"))
            else:
                writer.write(len(data).to_bytes(8, "big"))
                view = memoryview(data)
                for start in range(0, len(data), _CHUNK_BYTES):
                    writer.write(view[start : start + _CHUNK_BYTES])
                    await writer.drain()
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    loop = asyncio.get_running_loop()
    # Standard input closing (the bench ending, or dying) stops the member.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


async def fetch(port: int, name: str) -> bytes:
    """The bytes of file ``name`` from the member on ``port`` (``FileNotFoundError`` if absent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        raw = name.encode()
        writer.write(len(raw).to_bytes(2, "big") + raw)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(8), "big")
        if size == NOT_FOUND:
            raise FileNotFoundError(f"the member on port {port} has no {name}")
        return await reader.readexactly(size)
    finally:
        writer.close()


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python -m quorate.bench.recovery_peer DIRECTORY", file=sys.stderr)
        sys.exit(2)
    asyncio.run(_serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
