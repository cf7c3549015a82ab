from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CurrentToken, IdPath, SessionDep
from app.schemas.tokens import TokenCreate, TokenCreated, TokenPublic, TokensPublic
from app.services import tokens as svc
from app.services.errors import Conflict

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def _public(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "role": row.role,
        "project_ids": row.project_ids,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    responses={404: {"description": "a project in project_ids does not exist"}},
)
def create_token(data: TokenCreate, session: SessionDep, token: CurrentToken) -> dict:
    """Create a token (admin only). The plain token is in this response and nowhere else."""
    svc.require_admin(token)
    row, plain = svc.create_token(session, data.name, data.role, data.project_ids)
    return _public(row) | {"token": plain}


@router.get("", response_model=TokensPublic)
def list_tokens(session: SessionDep, token: CurrentToken) -> dict:
    svc.require_admin(token)
    rows = svc.list_tokens(session)
    return {"data": [_public(r) for r in rows], "count": len(rows)}


@router.get("/me", response_model=TokenPublic)
def whoami(token: CurrentToken) -> dict:
    return _public(token)


@router.delete(
    "/{token_id:int}",
    response_model=TokenPublic,
    responses={409: {"description": "the token is the one making the request"}},
)
def revoke_token(token_id: IdPath, session: SessionDep, token: CurrentToken) -> dict:
    """Revoke a token (admin only). An admin cannot revoke the token it is using (so the last
    admin token is not lost by mistake): revoke it with another admin token."""
    svc.require_admin(token)
    if token_id == token.id:
        raise Conflict(
            "this is the token making the request; revoke it with another admin token",
            field="token_id",
        )
    return _public(svc.revoke(session, token_id))
