"""The MCP face of quorate: tools, resources and subscriptions for agents,
backed by the replicated store (``quorate mcp``). Re-exports only."""

from quorate.mcp.backend import Backend, EmbeddedCluster
from quorate.mcp.server import QuorateMcp
from quorate.mcp.tools import TOOL_NAMES, Tools

__all__ = ["TOOL_NAMES", "Backend", "EmbeddedCluster", "QuorateMcp", "Tools"]
