"""``/api/v1/sites``: sites and their time zones."""

from fastapi import APIRouter, HTTPException, Response, status

from central.api.deps import AdminToken, CentralDep, ReadToken
from central.api.schemas import SiteCreate, SitePublic, SiteUpdate
from central.registry import Conflict, NotFound

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])


@router.get("", response_model=list[SitePublic])
def list_sites(central: CentralDep, _: ReadToken) -> list[SitePublic]:
    return [SitePublic.of(row) for row in central.registry.sites()]


@router.post("", response_model=SitePublic, status_code=status.HTTP_201_CREATED)
def create_site(body: SiteCreate, central: CentralDep, _: AdminToken) -> SitePublic:
    try:
        row = central.registry.create_site(body.name, body.timezone, body.description)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return SitePublic.of(row)


@router.get("/{name}", response_model=SitePublic)
def get_site(name: str, central: CentralDep, _: ReadToken) -> SitePublic:
    row = central.registry.site(name)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {name!r}")
    return SitePublic.of(row)


@router.patch("/{name}", response_model=SitePublic)
def update_site(name: str, body: SiteUpdate, central: CentralDep, _: AdminToken) -> SitePublic:
    try:
        row = central.registry.update_site(name, body.model_dump(exclude_unset=True))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return SitePublic.of(row)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_site(name: str, central: CentralDep, _: AdminToken) -> Response:
    """409 while gateways still belong to the site."""
    try:
        central.registry.delete_site(name)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
