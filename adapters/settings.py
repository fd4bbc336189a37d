"""Configuration, read once from the environment, validated, then passed down.

The variable names are the Go worker's (CONTRACT 5) plus Temporal's usual ones. Secrets
(`LLM_API_KEY`, `REDIS_PASS`) are `SecretStr`: they print as `**********` and never travel
into workflow inputs or history.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from adapters.mcp_config import load_mcp_config
from core.errors import ContractError, readable
from core.node_config import Provider


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _temporal_api_keys(environ: Mapping[str, str]) -> list[str]:
    """The Temporal API key, which temporalio reads itself (environment configuration): from
    `TEMPORAL_API_KEY` or the active profile of `TEMPORAL_CONFIG_FILE`; not a Settings field."""
    from temporalio.envconfig import ClientConfigProfile

    keys = [environ.get("TEMPORAL_API_KEY", "")]
    try:
        keys.append(ClientConfigProfile.load(override_env_vars=dict(environ)).api_key or "")
    except RuntimeError:
        pass  # an unreadable profile file: the client reports it when it connects
    return keys


class Settings(BaseModel):
    worker_id: str = "executor-1"

    redis_addr: str = "localhost:6379"
    redis_pass: SecretStr = SecretStr("")
    redis_db: int = Field(default=0, ge=0)
    redis_username: str | None = None  # Redis 6 ACL user; default user when unset
    redis_tls: bool = False
    redis_max_connections: int = Field(default=200, ge=1)  # per process; more callers wait for one
    redis_tls_ca_file: str | None = None  # CA bundle to verify the server; system CAs when unset
    redis_tls_cert_file: str | None = None  # client certificate (PEM), for servers that require one
    redis_tls_key_file: str | None = None  # its private key (PEM), when not in the certificate's file

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "dago-node-executor"

    llm_provider: Provider = "anthropic"  # the default provider; LLM_BASE_URL and LLM_API_KEY are its
    llm_providers: list[Provider] = Field(default_factory=list)  # more providers nodes may name (llm_config.provider)
    llm_api_key: SecretStr = SecretStr("")
    anthropic_api_key: SecretStr = SecretStr("")  # the SDK's own variable, used when LLM_API_KEY is unset
    openai_api_key: SecretStr = SecretStr("")  # the openai provider's key when it is not LLM_PROVIDER
    openai_base_url: str | None = None  # the openai provider's endpoint when it is not LLM_PROVIDER
    llm_prices_file: str | None = None  # JSON price table merged over the built-in one (cost_usd)
    prompt_caching: bool = True  # cache breakpoints on Messages API requests (activities/providers/prompt_cache.py)
    llm_model: str = "claude-sonnet-4-20250514"
    llm_base_url: str | None = None
    llm_timeout: float = Field(default=600.0, gt=0)

    llm_max_attempts: int = Field(default=8, ge=1, le=100)
    llm_max_connections: int = Field(default=2000, ge=1)  # HTTP connections to the provider per worker
    worker_max_activities: int = Field(default=2000, ge=1)  # activities in flight per worker (mostly waiting)
    worker_max_cached_workflows: int = Field(default=2000, ge=0)  # workflows kept in memory (sticky cache)
    # passthrough: the workflow code is imported once per process; full: every run re-imports it
    # in Temporal's sandbox, which stops a non-deterministic call at run time
    # (executor/worker.py workflow_runner, docs/performance.md)
    workflow_sandbox: Literal["full", "passthrough"] = "passthrough"
    worker_versioning: bool = True  # Worker Deployment versioning (executor/deployment.py, docs/upgrades.md)
    worker_deployment_name: str = Field(default="dago-node-executor", pattern=r"^[^.]+$")
    worker_build_id: str | None = None  # default: the package version and a hash of the source
    worker_become_current: Literal["if-none", "never"] = "if-none"  # make this version current when none is
    llm_models: list[str] = Field(default_factory=list)  # named in metrics; other models count as "other"
    activity_heartbeat_timeout: float = Field(default=20.0, ge=1)
    continue_as_new_events: int = Field(default=5000, ge=50, le=50_000)
    node_timeout: float = Field(default=3600.0, gt=0, le=30 * 86_400)

    mcp_servers: str = ""
    mcp_config: str | None = None
    tool_timeout: float = Field(default=120.0, gt=0)
    tool_max_attempts: int = Field(default=5, ge=1, le=100)
    mcp_connect_timeout: float = Field(default=30.0, gt=0)  # MCP handshake, and tools/list, per attempt

    max_iterations: int = Field(default=10, ge=1, le=10_000)
    # Budgets of an agent node that sets none (0: none): all tokens of its model calls, its estimated cost.
    node_max_total_tokens: int = Field(default=0, ge=0)
    node_max_cost_usd: float = Field(default=0.0, ge=0)
    approvers: list[str] = Field(default_factory=list)  # who may decide approvals when a node names none; empty: anyone
    log_level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    health_port: int = Field(default=8081, ge=0, le=65535)  # 0: no health endpoint
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no Prometheus endpoint

    work_streams: list[str] = Field(
        default_factory=lambda: ["executor.work", "dago:events:executor.work"]
    )
    consumer_group: str = "executor-workers"
    completed_stream: str = "dago:events:node.completed"
    failed_stream: str = "dago:events:node.failed"
    dead_letter_stream: str = "executor.work.dead"
    report_failures_on_completed: bool = False
    local_steps: bool = True  # resolve as a local activity (a round trip fewer per node); core/step_io.py NodeInput
    template_missing: Literal["fail", "keep"] = "fail"
    max_rendered_bytes: int = Field(default=1_048_576, ge=1024)  # a node's rendered templates, in total
    max_entry_bytes: int = Field(default=1_048_576, ge=1024)
    ingress_group_start: Literal["0", "$"] = "0"  # where a new consumer group starts on an existing stream
    ingress_batch: int = Field(default=32, ge=1, le=1000)
    ingress_block_ms: int = Field(default=2000, ge=10)
    ingress_retry_max_seconds: float = Field(default=10.0, ge=0.1, le=300)  # longest wait between attempts after an outage
    reclaim_idle_ms: int = Field(default=60_000, ge=100)  # a consumer silent this long is presumed dead
    reclaim_interval_ms: int = Field(default=5_000, ge=50)
    max_deliveries: int = Field(default=5, ge=1, le=1000)
    state_ttl_seconds: int = Field(default=86_400, ge=1)
    emitted_marker_ttl_seconds: int = Field(default=7 * 86_400, ge=60)
    payload_storage: Literal["redis", "s3", "off"] = "redis"  # where payloads above the threshold go (adapters/payload_storage.py)
    payload_storage_threshold: int = Field(default=128 * 1024, ge=1)
    payload_storage_ttl_seconds: int | None = Field(default=None, ge=3600)  # kept at least this long; default: derived from NODE_TIMEOUT
    payload_storage_s3_bucket: str | None = None
    transcript_cache_size: int = Field(default=64, ge=0)  # agent conversations a worker keeps decoded (adapters/transcript_store.py)
    payload_storage_s3_endpoint: str | None = None  # an S3-compatible server (MinIO, ...); AWS when unset
    claim_check_bytes: int | None = Field(default=None, ge=0)  # the released name of PAYLOAD_STORAGE_THRESHOLD; 0: off
    claim_check_ttl_seconds: int | None = Field(default=None, ge=3600)  # the released name of PAYLOAD_STORAGE_TTL_SECONDS
    encryption_keys: SecretStr = SecretStr("")  # id=<base64 AES-256 key>,...; with none (and no file) payloads are plain
    encryption_key_file: str | None = None  # one id=<base64> a line
    encryption_key_id: str | None = None  # the key new payloads use; required when there are several
    codec_server_token: SecretStr = SecretStr("")  # the codec server refuses to start without one
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(default=8234, ge=0, le=65535)
    codec_cors_origins: list[str] = Field(default_factory=list)  # the Temporal UI's origin(s), e.g. http://localhost:8233
    watchdog_interval: float = Field(default=30.0, ge=0)  # (ingress) seconds between watchdog passes; 0: off
    stuck_after: float = Field(default=600.0, gt=0)  # a workflow task failing this long: reported and terminated
    stranded_after: float = Field(default=600.0, gt=0)  # nodes of a worker version without workers this long: reported and terminated
    watchdog_lookback: float = Field(default=86_400.0, gt=0)  # how far back a starting watchdog looks for closed runs

    @field_validator("work_streams", "llm_models", "approvers", "llm_providers", mode="before")
    @classmethod
    def _streams(cls, value: object) -> object:
        return _split(value) if isinstance(value, str) else value

    @field_validator("codec_cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        return _split(value) if isinstance(value, str) else value

    @field_validator("redis_addr")
    @classmethod
    def _redis_addr(cls, value: str) -> str:
        value = value.strip()
        scheme, sep, rest = value.rpartition("://")
        if sep and scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"expected host, host:port, redis:// or rediss:// URL, got scheme {scheme!r}")
        if not sep and value.count(":") == 1 and not value.partition(":")[2].isdigit():
            raise ValueError(f"port must be a number in {value!r}")
        if not (rest if sep else value):
            raise ValueError("empty address")
        return value

    @model_validator(mode="after")
    def _redis_client_cert_needs_tls(self) -> Settings:
        # A certificate given for a plain connection would be silently unused.
        tls = self.redis_tls or self.redis_addr.startswith("rediss://")
        if (self.redis_tls_cert_file or self.redis_tls_key_file) and not tls:
            raise ValueError("REDIS_TLS_CERT_FILE / REDIS_TLS_KEY_FILE need TLS: set REDIS_TLS=true or a rediss:// REDIS_ADDR")
        if self.redis_tls_key_file and not self.redis_tls_cert_file:
            raise ValueError("REDIS_TLS_KEY_FILE needs REDIS_TLS_CERT_FILE (the certificate it belongs to)")
        return self

    @model_validator(mode="after")
    def _lookback_within_marker_ttl(self) -> Settings:
        # Past the marker's TTL, a closed run that did emit would look as if it had not.
        if self.watchdog_lookback >= self.emitted_marker_ttl_seconds:
            raise ValueError(
                f"WATCHDOG_LOOKBACK ({self.watchdog_lookback:g}s) must be shorter than "
                f"EMITTED_MARKER_TTL_SECONDS ({self.emitted_marker_ttl_seconds}s)"
            )
        return self

    @model_validator(mode="after")
    def _payload_storage(self) -> Settings:
        # The released names (CLAIM_CHECK_*) still work; the new ones win when both are set.
        if self.claim_check_bytes is not None and "payload_storage_threshold" not in self.model_fields_set:
            if self.claim_check_bytes == 0 and "payload_storage" not in self.model_fields_set:
                self.payload_storage = "off"
            self.payload_storage_threshold = self.claim_check_bytes or self.payload_storage_threshold
        if self.claim_check_ttl_seconds is not None and "payload_storage_ttl_seconds" not in self.model_fields_set:
            self.payload_storage_ttl_seconds = self.claim_check_ttl_seconds
        if self.payload_storage == "s3" and not self.payload_storage_s3_bucket:
            raise ValueError("PAYLOAD_STORAGE=s3 needs PAYLOAD_STORAGE_S3_BUCKET")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def secret_values(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Values never to print: the API key, the Redis password, the Temporal API key, MCP env
        and header values (and a header's credentials alone: `Bearer <token>` → `<token>`)."""
        values = [self.llm_api_key.get_secret_value(), self.anthropic_api_key.get_secret_value(), self.redis_pass.get_secret_value()]
        values.append(self.openai_api_key.get_secret_value())
        values += _temporal_api_keys(os.environ if environ is None else environ)
        values += [self.codec_server_token.get_secret_value()]
        values += [entry.partition("=")[2].strip() for entry in self.encryption_keys.get_secret_value().replace(",", "\n").splitlines()]
        if self.mcp_config:
            try:
                for server in load_mcp_config(self.mcp_config):
                    values += [*server.env.values(), *server.headers.values()]
                    values += [v.split()[-1] for v in server.headers.values() if len(v.split()) > 1]
            except ContractError:
                pass  # reported when the worker loads it
        return [v for v in values if v]

    def llm_key(self) -> str:
        """The provider key: `LLM_API_KEY` (the Go worker's name), else the SDK's `ANTHROPIC_API_KEY`;
        empty when neither is set."""
        return self.llm_api_key.get_secret_value() or self.anthropic_api_key.get_secret_value()

    def enabled_providers(self) -> list[str]:
        """The providers this worker serves: `LLM_PROVIDER` first, then `LLM_PROVIDERS`."""
        return list(dict.fromkeys([self.llm_provider, *self.llm_providers]))

    def result_stream(self, status: str) -> str:
        """Where a result goes; failures too go to `completed` for unmodified orchestrators."""
        if status == "completed" or self.report_failures_on_completed:
            return self.completed_stream
        return self.failed_stream

    @property
    def redis_url(self) -> str:
        """`REDIS_ADDR` as a URL: `host`, `host:port` and `[v6]:port` become `redis://…`."""
        addr = self.redis_addr.strip()
        if "://" in addr:
            return addr
        host, port = addr, "6379"
        if addr.startswith("["):  # [::1]:6379
            host, _, rest = addr.partition("]")
            host, port = host + "]", rest.removeprefix(":") or "6379"
        elif addr.count(":") == 1:
            host, _, port = addr.partition(":")
        return f"redis://{host or 'localhost'}:{port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every field reads the upper-case variable of the same name; unset means default."""
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()]
            for name in cls.model_fields
            if env.get(name.upper(), "") != ""
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ContractError(readable(exc, "configuration")) from None
