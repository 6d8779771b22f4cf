"""The MCP server: AI assistants start, follow, resume and cancel workflow runs as MCP
tools (``runyard mcp`` over stdio, streamable HTTP at ``/mcp`` on the API server).

:mod:`runyard.mcp.port` is what the tools need of Runyard (:class:`RunsPort`, over the
service or the HTTP SDK); :mod:`runyard.mcp.server` builds the MCP server from a port."""

from .port import ClientPort, RunPage, RunsPort, RunView, ServicePort, Usage, WorkflowInfo

__all__ = ["ClientPort", "RunPage", "RunView", "RunsPort", "ServicePort", "Usage", "WorkflowInfo"]
