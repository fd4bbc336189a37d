"""Log redaction: known secrets never reach a log line, in either format, wherever they hide
(message, traceback, stack, extra fields), and every kind of secret is known.

Real `logging` records through the handler `logs.setup` installs, captured from stderr.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from adapters import logs
from adapters.settings import Settings

SECRET = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def emit_everywhere(secret: str) -> None:
    """One record carrying the secret in its message, extras, traceback and stack."""
    log = logging.getLogger("tests.redaction")
    try:
        raise ValueError(f"connect failed with password {secret}")
    except ValueError:
        log.exception(
            "calling with %s", secret,
            extra={"detail": f"token={secret}", "payload": {"auth": secret}, "count": 3},
            stack_info=True,
        )


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
def test_secret_is_masked_in_message_traceback_stack_and_extras(capsys: pytest.CaptureFixture[str], json_lines: bool) -> None:
    logs.setup("info", "test", json_lines=json_lines, secrets=[SECRET])
    emit_everywhere(SECRET)
    out = capsys.readouterr().err
    assert "connect failed with password ***" in out and "Stack (most recent call last)" in out
    assert SECRET not in out
    if json_lines:
        [line] = out.splitlines()
        record = json.loads(line)
        assert record["msg"] == "calling with ***"
        assert record["detail"] == "token=***" and record["payload"] == "{'auth': '***'}" and record["count"] == 3
        assert record["exc"].endswith("ValueError: connect failed with password ***")


def test_secret_with_characters_json_escapes_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    secret = 'pa"ss\\w\u00f6rd-' + uuid.uuid4().hex[:6]
    logs.setup("info", "test", json_lines=True, secrets=[secret])
    emit_everywhere(secret)
    out = capsys.readouterr().err
    for form in (secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], json.dumps(repr(secret)[1:-1])[1:-1]):
        assert form not in out
    assert json.loads(out)["detail"] == "token=***"


def test_temporal_api_key_from_the_environment_is_masked(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """temporalio reads TEMPORAL_API_KEY itself (environment configuration), not through Settings."""
    monkeypatch.setenv("TEMPORAL_API_KEY", SECRET)
    logs.setup("info", "test", json_lines=True, secrets=Settings().secret_values())
    logging.getLogger("tests.redaction").warning("rpc metadata: authorization=Bearer %s", SECRET)
    assert json.loads(capsys.readouterr().err)["msg"] == "rpc metadata: authorization=Bearer ***"


def test_temporal_api_key_from_a_profile_file_is_a_secret(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = tmp_path / "temporal.toml"
    profile.write_text(f'[profile.default]\naddress = "localhost:7233"\napi_key = "{SECRET}"\n')
    monkeypatch.delenv("TEMPORAL_API_KEY", raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    assert SECRET in Settings().secret_values()


def test_every_kind_of_secret_is_known(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LLM key, Redis password, MCP env and header values, and a header's credentials alone
    (`Bearer <token>`: a log line may show the token without its scheme)."""
    monkeypatch.delenv("TEMPORAL_API_KEY", raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "a": {"command": "x", "env": {"TOKEN": "env-value-1234"}},
        "b": {"url": "http://h/mcp", "headers": {"Authorization": "Bearer tok-5678", "X-Key": "plain-key-9"}},
    }}))
    settings = Settings(llm_api_key="llm-key-0000", redis_pass="redis-pass-1", mcp_config=str(config))
    assert set(settings.secret_values()) == {"llm-key-0000", "redis-pass-1", "env-value-1234", "Bearer tok-5678", "tok-5678", "plain-key-9"}
