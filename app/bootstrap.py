"""Start-up: migrations in embedded mode and the first admin token."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.core.config import Settings, get_settings
from app.services import tokens as token_service
from app.store import migrate
from app.store.db import session_scope

log = logging.getLogger("mixopt")


def admin_token_file(settings: Settings) -> Path:
    return settings.home / "admin_token"


def prepare(settings: Settings | None = None) -> str | None:
    """Migrate (embedded mode) and make sure an admin token exists.

    Returns the admin token's plain text when this process knows it (from
    ``MIXOPT_ADMIN_TOKEN`` or the generated file in ``MIXOPT_HOME``), else None.
    """
    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    if settings.auto_migrate and settings.is_sqlite:
        migrate.upgrade(settings.database_url)
    plain = settings.admin_token
    if plain is None and settings.is_sqlite:
        path = admin_token_file(settings)
        if path.exists():
            plain = path.read_text().strip()
        else:
            plain = token_service.generate_token()
            path.write_text(plain + "\n")
            os.chmod(path, 0o600)
            log.warning("generated an admin token, stored in %s", path)
    if plain:
        with session_scope() as session:
            token_service.ensure_admin_token(session, plain)
    return plain
