"""Settings: one environment-driven class (prefix ``MIXOPT_``)."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIXOPT_", extra="ignore")

    #: data directory: SQLite file, generated admin token, token shards, checkpoints
    home: Path = Field(
        default_factory=lambda: Path.home() / ".mixopt"
    )  # same default as mixopt.paths
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
    #: how often the embedded broker (SQLite) is polled when its queues are empty, seconds
    broker_poll_seconds: float = Field(default=0.2, gt=0, le=10)
    #: a running job whose heartbeat is older than this is considered lost and re-queued; a few
    #: missed heartbeats, not a job length (every running job heartbeats from a thread); also the
    #: age after which a worker's own heartbeat no longer counts for ``/readyz``
    stale_job_seconds: float = 30.0
    #: how often a running job (and a worker) writes its heartbeat; 0: stale_job_seconds / 5,
    #: at most 5 s
    heartbeat_seconds: float = 0.0
    #: how often beat looks for stale, lost or stuck jobs, seconds
    reap_interval_seconds: float = 15.0
    #: a ``pending`` job whose message was last sent longer ago than this is sent again (claims
    #: are conditional, so a duplicate message does nothing twice)
    pending_resend_seconds: float = 120.0
    #: at most this many pending jobs are re-sent per reaper tick
    resend_batch: int = 50
    #: a running job whose cancel was requested this long ago and still runs is terminated
    cancel_grace_seconds: float = 30.0
    #: Celery queue of the jobs that do not name one (fits, recommendations, suggestions,
    #: ingestion); training goes to ``gpu`` or the swarm's own queue
    job_queue: str = "default"
    #: queue of beat's housekeeping (reaper, online ticks): its own worker consumes it (``serve``
    #: starts one, concurrency 1; docker-compose's ``maintenance`` service), so a pool busy
    #: training never delays a re-send or an online tick past its interval
    maintenance_queue: str = "maintenance"
    #: level of Celery's routine lines about housekeeping (beat's sends, the reaper's and online
    #: ticks' received/succeeded): debug keeps an idle worker's log quiet (workers/logs.py)
    housekeeping_log_level: Literal["debug", "info"] = "debug"
    #: ``/readyz`` wants a live worker consuming each of these queues (comma-separated)
    ready_queues: str = "default"
    #: processes of the embedded worker started by ``mixopt serve``
    worker_concurrency: int = 2
    #: BLAS/OpenMP threads per worker process; 0: the machine's cores // the worker's concurrency
    #: (at least 1). OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/MKL_NUM_THREADS set by hand win.
    worker_threads: int = 0
    #: torch threads per training task (0: torch's default); set 1 with one worker process per core
    torch_threads: int = 0
    #: at most this many jobs train one validation's runs at once (its job and helper jobs)
    validation_parallel: int = Field(default=4, ge=1, le=64)
    #: how often beat looks for online sessions due a re-mix, seconds
    online_tick_seconds: float = 5.0
    #: largest number of runs accepted in one batch request (or one import)
    max_batch_runs: int = Field(default=50_000, ge=1)
    #: where domain data and tokenizer files may live (``os.pathsep``-separated); default
    #: ``<home>/data`` and the demo corpora ``<home>/demo-corpora``. Paths are resolved
    #: (symlinks, ``..``) and must stay inside one of these roots or of ``admin_data_roots``
    data_roots: str = ""
    #: roots only an admin token may register a source in (``os.pathsep``-separated)
    admin_data_roots: str = ""
    #: largest tokenizer JSON file that is parsed, bytes
    max_tokenizer_bytes: int = Field(default=64 * 2**20, ge=1)
    #: largest request body, bytes (checked before parsing; 413 above)
    max_body_bytes: int = Field(default=64 * 2**20, ge=1024)
    #: most columns of one CSV file of an import, checked on the header before any row is read
    max_csv_columns: int = Field(default=2000, ge=2)
    #: largest field of an imported CSV file, UTF-8 bytes; at most 128 KiB, the csv module's
    #: process-wide field_size_limit, which mixopt never changes
    max_csv_field_bytes: int = Field(default=64 * 2**10, ge=64, le=2**17)
    #: most domains a project may have (API and CSV/JSON import)
    max_domains: int = Field(default=1000, ge=1)
    #: largest serialised ``details`` of a run or ``params`` of a fit/recommendation/session, bytes
    #: (1 MiB: an exported online run's weight trajectory must import back)
    max_json_field_bytes: int = Field(default=2**20, ge=64)
    #: JSON request bodies, checked in one pass before anything parses them (app.api.json_limits):
    #: deepest nesting of objects/arrays (422); at most 500, under the parsers' recursion limits
    max_json_depth: int = Field(default=64, ge=2, le=500)
    #: longest string (key or value) in a JSON body, bytes as sent, escapes included (413): room
    #: for a ``details`` string of MIXOPT_MAX_JSON_FIELD_BYTES sent with ``\u`` escapes
    max_json_string_bytes: int = Field(default=4 * 2**20, ge=256)
    #: most keys in one JSON object of a request body (422)
    max_json_keys: int = Field(default=100_000, ge=1)
    #: most items in one JSON array of a request body (422); above MIXOPT_MAX_BATCH_RUNS and the
    #: 100,000 points of a loss curve
    max_json_items: int = Field(default=100_000, ge=1)
    #: most values (scalars, objects and arrays) in one JSON request body (413): bounds what
    #: parsing and validating a body holds in memory, whatever its shape (10-250 bytes a value
    #: parsed and validated). MIXOPT_MAX_BATCH_RUNS x 50: room for the largest batch the README
    #: documents (50,000 runs of 40 values: 15 domains, 15 metrics, tags, details)
    max_json_nodes: int = Field(default=2_500_000, ge=1000)
    #: most observations in one online-session request
    max_observations: int = Field(default=10_000, ge=1)
    #: most mixtures in one predict request
    max_predict_mixtures: int = Field(default=10_000, ge=1)
    #: largest uploaded expert probability file (``.npy``), bytes (413 above): 32 MiB holds 16M
    #: float16 (8M float32) token probabilities
    max_expert_probs_bytes: int = Field(default=32 * 2**20, ge=1024)
    #: most runs in one swarm
    max_swarm_count: int = Field(default=1024, ge=1)
    #: most training steps of one proxy run
    max_train_steps: int = Field(default=1_000_000, ge=1)
    #: most tokens in one training step (batch_size x block_size)
    max_tokens_per_step: int = Field(default=2**20, ge=8)
    #: Celery queues that swarms may route training jobs to (comma-separated)
    queues: str = "default,gpu"
    #: threads serving sync request handlers (anyio's limiter); the database pool is sized to it
    request_threads: int = Field(default=40, ge=1, le=1000)
    #: seconds a request waits for a database connection before a 503 with Retry-After
    db_pool_timeout: float = Field(default=10.0, gt=0)
    #: connections beyond ``request_threads`` (the embedded worker's threads, background work)
    db_max_overflow: int = Field(default=10, ge=0)
    #: failed logins / invalid tokens (bearer, dashboard cookie) allowed per client address in
    #: one window of ``auth_window_seconds``; past it that address's failing attempts are 429s
    #: (a valid token still passes: app.api.ratelimit)
    auth_failures_per_window: int = Field(default=20, ge=1)
    #: length of the fixed failure-counting window, seconds (whole seconds, at least 1)
    auth_window_seconds: float = Field(default=60.0, gt=0)
    #: failures allowed per presented credential (counted by its hash) in one window, whatever
    #: the address: a token guessed or replayed from many addresses
    auth_credential_failures_per_window: int = Field(default=20, ge=1)
    #: reverse proxies whose ``X-Forwarded-For`` is believed (comma-separated addresses or
    #: CIDRs); empty: never, the client address is the connection's peer
    trusted_proxies: str = ""
    #: default and largest page size for list endpoints
    page_size: int = 100
    max_page_size: int = 1000

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: str) -> str:
        for item in v.split(","):
            if item.strip():
                try:
                    ipaddress.ip_network(item.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"MIXOPT_TRUSTED_PROXIES: {item.strip()!r} is not an address or CIDR"
                    ) from None
        return v

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
        if self.heartbeat_seconds <= 0:
            self.heartbeat_seconds = min(5.0, self.stale_job_seconds / 5)
        if self.stale_job_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                "MIXOPT_STALE_JOB_SECONDS must be at least twice MIXOPT_HEARTBEAT_SECONDS "
                "(a job is stale after a few missed heartbeats)"
            )
        if self.env == "production" and (not self.admin_token or self.is_sqlite):
            # production deployments must not rely on a generated token on local disk
            raise ValueError(
                "MIXOPT_ENV=production requires MIXOPT_ADMIN_TOKEN and a server database "
                "(MIXOPT_DATABASE_URL=postgresql+psycopg://...)"
            )
        if self.env == "production" and len(self.admin_token or "") < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"MIXOPT_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters in "
                "production (generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if not self.queue_list:
            raise ValueError("MIXOPT_QUEUES must name at least one queue")
        return self

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.trusted_proxies.split(",")
            if p.strip()
        ]

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]

    @property
    def data_root_list(self) -> list[Path]:
        """Every allowed root, resolved (the admin-only ones included)."""
        roots = _paths(self.data_roots) or [self.home / "data", self.home / "demo-corpora"]
        return _dedup([*(r.resolve() for r in roots), *self.admin_root_list])

    @property
    def admin_root_list(self) -> list[Path]:
        return _dedup([r.resolve() for r in _paths(self.admin_data_roots)])

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """Embedded mode: SQLite database and a broker that needs no server."""
        return self.is_sqlite and self.broker_url.startswith("sqla+")


#: production refuses a shorter MIXOPT_ADMIN_TOKEN
MIN_ADMIN_TOKEN_CHARS = 32


def _paths(value: str) -> list[Path]:
    return [Path(p.strip()).expanduser() for p in value.split(os.pathsep) if p.strip()]


def _dedup(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


@lru_cache
def get_settings() -> Settings:
    return Settings()
