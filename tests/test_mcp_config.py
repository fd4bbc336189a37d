"""Which MCP servers a worker may reach: MCP_SERVERS and the desktop clients' config file."""

from __future__ import annotations

import json

import pytest

from adapters.mcp_config import configured_servers, load_mcp_config, parse_mcp_servers
from core.errors import ContractError


def test_mcp_servers_variable_and_config_file(tmp_path) -> None:
    servers = parse_mcp_servers("weather=http://127.0.0.1:9000/mcp, files=stdio:npx -y @scope/server '/tmp/a b'")
    assert [(s.name, s.transport) for s in servers] == [("weather", "http"), ("files", "stdio")]
    assert servers[1].command == "npx" and servers[1].args == ["-y", "@scope/server", "/tmp/a b"]
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "git": {"command": "uvx", "args": ["mcp-server-git"], "env": {"TOKEN": "s3cret"}},
                    "remote": {"url": "https://example.invalid/mcp", "headers": {"Authorization": "Bearer s3cret"}},
                    "off": {"command": "x", "disabled": True},
                }
            }
        )
    )
    loaded = load_mcp_config(path)
    assert [(s.name, s.transport) for s in loaded] == [("git", "stdio"), ("remote", "http")]
    assert "s3cret" not in repr(loaded) and "s3cret" not in str(loaded[1])
    with pytest.raises(ContractError, match="configured twice"):
        configured_servers("git=http://h/mcp", str(path))
    with pytest.raises(ContractError, match="expected name=url or name=stdio:command"):
        parse_mcp_servers("just-a-name")
    with pytest.raises(ContractError, match="url must start with http"):
        parse_mcp_servers("x=ftp://nope")
