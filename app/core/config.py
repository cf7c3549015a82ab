"""Settings: one environment-driven class (prefix ``MIXOPT_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIXOPT_", extra="ignore")

    #: data directory: SQLite file, generated admin token, token shards, checkpoints
    home: Path = Field(default_factory=lambda: Path.home() / ".mixopt")  # same default as mixopt.paths
    #: SQLAlchemy URL; default ``sqlite:///<home>/mixopt.db``
    database_url: str = ""
    #: Celery broker; default: kombu's SQLAlchemy transport over ``<home>/broker.db``
    broker_url: str = ""
    #: bootstrap admin token (plain text); when unset embedded mode generates one
    admin_token: str | None = None
    #: ``development`` allows generated secrets; ``production`` refuses them
    env: Literal["development", "production"] = "development"
    #: run migrations at start-up of the API (embedded mode); deployments run ``mixopt db upgrade``
    auto_migrate: bool = True
    #: hard time limit of one task, seconds (training jobs checkpoint and resume)
    task_time_limit: int = 6 * 3600
    #: seconds before an unacknowledged message is delivered again (Redis); keep it above the
    #: longest expected task unless jobs are idempotent (they are: see workers.tasks.common)
    broker_visibility_timeout: int = 7200
    #: a running job whose heartbeat is older than this is considered lost and re-queued
    stale_job_seconds: int = 300
    #: how often beat looks for stale jobs, seconds
    reap_interval_seconds: float = 60.0
    #: processes of the embedded worker started by ``mixopt serve``
    worker_concurrency: int = 2
    #: torch threads per training task (0: torch's default); set 1 with one worker process per core
    torch_threads: int = 0
    #: how often beat looks for online sessions due a re-mix, seconds
    online_tick_seconds: float = 5.0
    #: largest number of runs accepted in one batch request
    max_batch_runs: int = 50_000
    #: default and largest page size for list endpoints
    page_size: int = 100
    max_page_size: int = 1000

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, v: object) -> object:
        return Path(str(v)).expanduser() if v is not None else v

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'mixopt.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.home / 'broker.db'}"
        if self.env == "production" and (not self.admin_token or self.is_sqlite):
            # production deployments must not rely on a generated token on local disk
            raise ValueError("MIXOPT_ENV=production requires MIXOPT_ADMIN_TOKEN and a server database "
                             "(MIXOPT_DATABASE_URL=postgresql+psycopg://...)")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """Embedded mode: SQLite database and a broker that needs no server."""
        return self.is_sqlite and self.broker_url.startswith("sqla+")


@lru_cache
def get_settings() -> Settings:
    return Settings()
