"""API tokens: creation, lookup by hash, revocation, and who may see which project."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.services.errors import Forbidden, Invalid, NotFound
from app.store.models import ApiToken, Project, TokenProject, utcnow

TOKEN_PREFIX = "mxo_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session,
    name: str,
    role: str,
    project_ids: list[int] | None = None,
    token: str | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token (hashed) and return it with its plain text, shown only once."""
    if role not in ("admin", "write", "read"):
        raise Invalid(f"role must be admin, write or read, not {role!r}", field="role")
    project_ids = sorted(set(project_ids or []))
    if role == "admin" and project_ids:
        raise Invalid(
            "an admin token sees every project; do not list project_ids", field="project_ids"
        )
    if project_ids:
        found = set(session.scalars(select(Project.id).where(Project.id.in_(project_ids))))
        missing = [p for p in project_ids if p not in found]
        if missing:
            raise NotFound(f"projects not found: {missing}", field="project_ids")
    plain = token or generate_token()
    row = ApiToken(name=name, token_hash=hash_token(plain), prefix=plain[:8], role=role)
    row.project_links = [TokenProject(project_id=p) for p in project_ids]
    session.add(row)
    session.commit()
    return row, plain


def authenticate(session: Session, plain: str) -> ApiToken | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plain)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def ensure_admin_token(session: Session, plain: str, name: str = "bootstrap admin") -> ApiToken:
    """Make sure ``plain`` is a valid admin token (idempotent; used at start-up)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plain)))
    if row is None:
        row, _ = create_token(session, name, "admin", token=plain)
    return row


# -- access control ---------------------------------------------------------------------
def is_admin(token: ApiToken) -> bool:
    return token.role == "admin"


def can_see(token: ApiToken, project_id: int) -> bool:
    return is_admin(token) or project_id in token.project_ids


def require_write(token: ApiToken) -> None:
    if token.role == "read":
        raise Forbidden("this token is read-only")


def require_admin(token: ApiToken) -> None:
    if not is_admin(token):
        raise Forbidden("this operation needs an admin token")


def grant(session: Session, token: ApiToken, project_id: int) -> None:
    """Give a non-admin token access to a project it just created."""
    if not is_admin(token):
        token.project_links.append(TokenProject(project_id=project_id))
