"""The floor under ``quorate bench mcp``: an MCP server whose one tool does nothing.

Run as ``python -m quorate.bench.mcp_echo``: the SDK's ``MCPServer`` over
stdio with one tool, ``echo``, that hands its argument back. A call to it
costs what every MCP tool call costs on this machine — the client SDK,
JSON-RPC framing over two pipes, the server SDK's argument validation and
result building — and nothing else, so ``quorate bench mcp`` can say how
much of a ``memory_usage`` store is the MCP transport and how much is
quorate's replicated write.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def echo(value: str) -> dict[str, str]:
    """Return the value unchanged."""
    return {"value": value}


def main() -> None:
    server: MCPServer[object] = MCPServer("echo")
    server.add_tool(echo, name="echo", description=echo.__doc__)
    server.run()


if __name__ == "__main__":
    main()
