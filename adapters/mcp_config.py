"""Which MCP servers a worker may reach: set by the operator only, never by a work item.

Two sources, merged in order: `MCP_SERVERS` (`name=http://host:port/mcp` or
`name=stdio:command args`, comma-separated) and `MCP_CONFIG`, a JSON file in the format desktop
MCP clients use: `{"mcpServers": {name: {"command", "args", "env"} | {"url", "headers"}}}`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from core.errors import ContractError, readable

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class McpServer(BaseModel):
    """One configured server. `env` and `headers` may hold secrets: they never leave the worker."""

    name: str
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> McpServer:
        if not _NAME.match(self.name):
            raise ValueError(f"server name {self.name!r} may use letters, digits, _ and - only")
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"server {self.name!r}: stdio needs a command")
        if self.transport == "http" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"server {self.name!r}: url must start with http:// or https://")
        return self

    def __repr__(self) -> str:  # no env or headers in logs
        target = self.url if self.transport == "http" else self.command
        return f"McpServer({self.name!r}, {self.transport}, {target!r})"

    __str__ = __repr__


def parse_mcp_servers(spec: str) -> list[McpServer]:
    """`MCP_SERVERS`: `weather=http://127.0.0.1:9000/mcp,files=stdio:npx -y @scope/server /tmp`."""
    servers = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, target = part.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ContractError(f"MCP_SERVERS: expected name=url or name=stdio:command, got {part!r}")
        name, target = name.strip(), target.strip()
        try:
            if target.startswith("stdio:"):
                argv = shlex.split(target.removeprefix("stdio:"))
                if not argv:
                    raise ContractError(f"MCP_SERVERS: server {name!r} has an empty stdio command")
                servers.append(McpServer(name=name, transport="stdio", command=argv[0], args=argv[1:]))
            else:
                servers.append(McpServer(name=name, transport="http", url=target))
        except ValidationError as exc:
            raise ContractError(readable(exc, "MCP_SERVERS")) from None
    return servers


def load_mcp_config(path: str | Path) -> list[McpServer]:
    """The desktop clients' `mcpServers` file."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ContractError(f"MCP_CONFIG: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"MCP_CONFIG: {path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    entries = doc.get("mcpServers") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise ContractError(f"MCP_CONFIG: {path} has no 'mcpServers' object")
    servers = []
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise ContractError(f"MCP_CONFIG: server {name!r} must be an object")
        if entry.get("disabled"):
            continue
        transport = "http" if "url" in entry else "stdio"
        try:
            servers.append(McpServer.model_validate({**entry, "name": name, "transport": transport}))
        except ValidationError as exc:
            raise ContractError(readable(exc, f"MCP_CONFIG {name}")) from None
    return servers


def configured_servers(mcp_servers: str, mcp_config: str | None) -> list[McpServer]:
    servers = parse_mcp_servers(mcp_servers)
    if mcp_config:
        servers += load_mcp_config(mcp_config)
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ContractError(f"MCP server {server.name!r} is configured twice")
        seen.add(server.name)
    return servers
