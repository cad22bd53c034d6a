"""Process settings from ROUTEWAY_* variables; the only module that reads the environment."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a process needs that does not belong in a routing policy."""

    model_config = SettingsConfigDict(env_prefix="ROUTEWAY_", extra="ignore")

    config: Path = Field(default=Path("policies"), description="YAML file or folder of YAML files")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "INFO"
    access_log: bool = True
    # Comma-separated client keys accepted in `Authorization: Bearer`; empty means no authentication.
    api_keys: str = ""
    reload_policies: bool = True
    redis_url: str | None = None
    # Upstream connection pool, shared by every backend.
    upstream_pool_size: int = 512
    upstream_pool_per_host: int = 0

    def client_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())


def read_secret(env_name: str) -> str | None:
    """Return the value of the env var a policy names for a credential (never logged by callers)."""
    value = os.environ.get(env_name)
    return value if value else None


def export_for_workers(settings: Settings) -> None:
    """Hands CLI-chosen settings to uvicorn worker processes, which rebuild Settings from the environment."""
    for name in ("config", "host", "port", "log_level", "access_log", "reload_policies"):
        os.environ[f"ROUTEWAY_{name.upper()}"] = str(getattr(settings, name))
