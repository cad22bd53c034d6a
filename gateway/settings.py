"""Process settings from ROUTEWAY_* variables; the only module that reads the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.secret import Secret


class Settings(BaseSettings):
    """Everything a process needs that does not belong in a routing policy."""

    # OTEL_* fields are read under their standard names (validation_alias) and set by field name in code.
    model_config = SettingsConfigDict(env_prefix="ROUTEWAY_", extra="ignore", validate_by_name=True)

    config: Path = Field(default=Path("policies"), description="YAML file or folder of YAML files")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "INFO"
    access_log: bool = True
    # Comma-separated client keys accepted in `Authorization: Bearer`; empty means no authentication,
    # which is served only on a loopback address unless allow_open says otherwise (gateway/exposure.py).
    api_keys: str = ""
    admin_key: str = ""  # the only key /admin/* accept; never one of api_keys
    # A request whose predicted cost (prompt + max output at the candidate's prices) is above this many US
    # dollars is refused before any upstream call (access.guards.MaxCostGuard); None: no cap.
    max_request_usd: float | None = Field(default=None, gt=0)
    # Virtual keys (access/keys.py, docs/tenancy.md): kept in Redis when redis_url is set, else in this
    # SQLite file. A key's record is cached per process for key_cache_s, the bound on how long a revoked
    # key keeps working on another replica. require_keys: no anonymous callers even without static keys.
    keys_db: Path = Path("routeway.db")
    keys_redis_prefix: str = "routeway:keys:v1"
    key_cache_s: float = Field(default=2.0, gt=0, le=5)
    require_keys: bool = False
    # Virtual keys' limits and budgets (access/limits.py): Redis keys under this prefix, one hash tag per
    # key. With Redis unreachable, rate limits fail open to this replica's share (limit / live replicas)
    # and budgets fail closed unless budget_fail_open; the ledger keeps ledger_days days.
    limits_redis_prefix: str = "routeway:limits:v1"
    budget_fail_open: bool = False
    ledger_days: int = Field(default=400, gt=0)
    allow_open: bool = False  # serve without client keys on a non-loopback address (logged as a WARNING)
    reload_policies: bool = True
    # A larger request body is refused with 413 before it is buffered (images and long prompts fit).
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # All request bodies buffered at once in this process; a request that would cross it gets a 503.
    max_buffered_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # The HTTP edge (gateway/api/server.py), enforced before any route or authentication runs.
    max_header_bytes: int = Field(default=64 * 1024, gt=0)  # request line + headers; larger is a 431
    max_header_count: int = Field(default=100, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)  # a request head not whole by then: closed
    keep_alive_timeout_s: int = Field(default=5, gt=0)  # an idle keep-alive connection: closed
    max_connections: int = Field(default=4096, gt=0)  # open connections; beyond it a request gets 503
    max_inflight: int = Field(default=2048, gt=0)  # requests being served (streams included); then 503
    redis_url: str | None = None
    # The URL names one node of a Redis Cluster (the client finds the others); keys then carry a hash tag.
    redis_cluster: bool = False
    # Telemetry: how fast old measurements stop counting, and how often replicas share through Redis.
    telemetry_half_life_s: float = Field(default=30.0, gt=0)
    telemetry_flush_ms: int = Field(default=100, gt=0)
    telemetry_refresh_ms: int = Field(default=250, gt=0)
    telemetry_replica_ttl_s: float = Field(default=3.0, gt=0)  # a silent replica stops counting after this
    telemetry_redis_prefix: str = "routeway:telemetry:v1"
    redis_timeout_ms: int = Field(default=50, gt=0)
    # Stored responses (Responses API `store`, `previous_response_id`): in Redis when redis_url is set,
    # else in this process (then within responses_memory_max_bytes, oldest out first).
    responses_ttl_s: float = Field(default=30 * 86400, gt=0)  # OpenAI keeps stored responses 30 days
    responses_memory_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    responses_max_record_bytes: int = Field(default=8 * 1024 * 1024, gt=0)  # one conversation, stored
    responses_redis_prefix: str = "routeway:responses:v1"
    responses_store_timeout_ms: int = Field(default=1000, gt=0)  # one Redis call: a blob may be megabytes
    # Upstream connection pool, shared by every backend.
    upstream_pool_size: int = 4096  # a cap queues requests silently: keep it above the expected streams
    upstream_pool_per_host: int = 0
    # Upstream bodies: a larger one, compressed or once decompressed, fails the attempt (see bounded.py).
    max_upstream_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_sse_event_bytes: int = Field(
        default=1024 * 1024, gt=0
    )  # one upstream SSE event, or a line never ended
    # Sampled request log (off without a path): JSONL of request shapes, replayable by `routeway bench`.
    request_log: Path | None = None
    request_log_sample: float = Field(default=0.01, ge=0, le=1)  # share of chat requests written
    request_log_prompts: bool = False  # also write the messages (prompt text): opt in knowingly
    request_log_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)  # then rotated
    request_log_backups: int = Field(default=3, ge=0)
    # Shadow traffic (a route's `shadow:` in the policy): shadow requests in flight at once in this process;
    # a sampled request beyond it is not mirrored (counted in routeway_shadow_skipped_total).
    shadow_max_concurrent: int = Field(default=16, ge=1, le=1024)
    # Vertex backends' Application Default Credentials file (a service account key, an authorized user or a
    # workload identity federation config), under Google's standard name; unset: google-auth's own search
    # (gcloud's ADC file, then the metadata server of GCE, GKE workload identity or Cloud Run).
    google_application_credentials: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ROUTEWAY_GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "google_application_credentials",
        ),
    )
    # Backends' `metrics_url` scrapes (telemetry/loadsignals.py): one page's size and time, at most.
    load_scrape_max_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    load_scrape_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Prometheus text at GET /metrics.
    metrics: bool = True
    # With --workers > 1: the folder where workers share their metrics (made fresh by `routeway serve`;
    # a temporary one when unset), and how stale another worker's values may be in a scrape.
    metrics_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("ROUTEWAY_METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR", "metrics_dir"),
    )
    metrics_share_interval_s: float = Field(default=1.0, gt=0)
    # How many recent routing decisions the dashboard keeps (references to the finished request records).
    dashboard_decisions: int = Field(default=100, ge=1, le=10_000)
    # Tracing: the standard OTEL_* variables. No endpoint means no tracer at all.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf", validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    # "k=v,k=v" lists: exporter headers (e.g. a backend's auth) and extra resource attributes.
    otel_exporter_otlp_headers: str = Field(default="", validation_alias="OTEL_EXPORTER_OTLP_HEADERS")
    otel_exporter_otlp_timeout_ms: int = Field(default=10_000, validation_alias="OTEL_EXPORTER_OTLP_TIMEOUT")
    otel_service_name: str = Field(default="routeway", validation_alias="OTEL_SERVICE_NAME")
    otel_resource_attributes: str = Field(default="", validation_alias="OTEL_RESOURCE_ATTRIBUTES")
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field(default="parentbased_always_on", validation_alias="OTEL_TRACES_SAMPLER")
    otel_traces_sampler_arg: float | None = Field(default=None, validation_alias="OTEL_TRACES_SAMPLER_ARG")
    otel_bsp_schedule_delay_ms: int = Field(default=5_000, validation_alias="OTEL_BSP_SCHEDULE_DELAY")
    # Spans waiting for export; past it they are dropped and counted (routeway_trace_spans_dropped_total).
    otel_bsp_max_queue_size: int = Field(default=2048, gt=0, validation_alias="OTEL_BSP_MAX_QUEUE_SIZE")
    otel_bsp_max_export_batch_size: int = Field(
        default=512, gt=0, validation_alias="OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
    )
    # The routing span's whole candidate ranking and dropped list (off: the costliest attributes).
    trace_candidates: bool = False
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")

    def client_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())


def read_secret(env_name: str) -> Secret | None:
    """The value of the env var a policy names for a credential, wrapped so no log line can show it."""
    value = os.environ.get(env_name)
    return Secret(value) if value else None


def aws_credentials() -> Any:
    """The standard AWS credential chain as botocore resolves it (AWS_* variables, the shared config and
    credentials files with AWS_PROFILE, web identity, container and instance roles): botocore Credentials,
    refreshable when the source expires, or None. Blocking (it may ask a metadata service): call it in a
    thread. botocore reads those variables itself; this is the one place that asks it to."""
    import botocore.session  # late: only AWS backends pay for importing botocore

    return botocore.session.Session().get_credentials()


def use_aws_keys(key_id: str, secret: str) -> None:
    """Puts AWS keys first in this process's credential chain (and its workers'), for `routeway demo`,
    whose simulated Bedrock account verifies signatures by them; the metadata service is not asked."""
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_EC2_METADATA_DISABLED": "true"}
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)


def export_for_workers(settings: Settings) -> None:
    """Hands CLI-chosen settings to uvicorn worker processes, which rebuild Settings from the environment."""
    names = ("config", "host", "port", "log_level", "access_log", "reload_policies", "allow_open", "workers")
    for name in (*names, "metrics_dir", "google_application_credentials"):
        if getattr(settings, name) is not None:
            os.environ[f"ROUTEWAY_{name.upper()}"] = str(getattr(settings, name))
