"""Typed dependencies for routes: the running Central, and the caller's token role.

Only ``/healthz`` and ``/readyz`` are open; everything else needs
``Authorization: Bearer <token>``. No or unknown token → 401; a ``read`` token
on a write → 403.
"""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from central.service import Central
from central.tokens import TokenInfo

_bearer = HTTPBearer(auto_error=False)


def get_central(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


CentralDep = Annotated[Central, Depends(get_central)]


def require_read(
    central: CentralDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenInfo:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    info = central.tokens.verify(credentials.credentials)
    if info is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown token", headers={"WWW-Authenticate": "Bearer"}
        )
    return info


def require_admin(token: Annotated[TokenInfo, Depends(require_read)]) -> TokenInfo:
    if token.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin token")
    return token


ReadToken = Annotated[TokenInfo, Depends(require_read)]
AdminToken = Annotated[TokenInfo, Depends(require_admin)]
