"""Instruments and who may do what on them: grants grouped by instrument (administrators add,
change the level of, and remove them; anyone else sees their own, as `GET /api/v1/grants`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter, ValidationError

from labgate.control import grants, overview
from labgate.control.errors import InvalidInput
from labgate.control.http.console.gate import AdminPerson, Person, Posted
from labgate.control.http.console.pages import ConsoleRoute, notice, page, parsed, see_other
from labgate.control.http.dependencies import RowId, RuntimeDep, SessionDep
from labgate.control.schemas import GrantCreate, Level
from labgate.control.tables import Grant

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
LEVELS = ("Guest", "Observer", "Controller", "Administrator", "Full")
_LEVEL: TypeAdapter[str] = TypeAdapter(Level)


@router.get("/console/instruments", response_class=HTMLResponse)
def instruments(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    visitor: Person,
    notice_key: Annotated[str | None, Query(alias="notice", max_length=40)] = None,
) -> Response:
    by_instrument: dict[str, list[Grant]] = defaultdict(list)
    for grant in grants.visible_grants(session, visitor.principal):
        by_instrument[grant.instrument].append(grant)
    served: dict[str, list[str]] = defaultdict(list)
    for gateway, names in runtime.settings.gateway_instruments.items():
        for name in names:
            served[name].append(gateway)
    unserved = (
        overview.instruments_without_gateway(session, runtime.settings.gateway_instruments)
        if visitor.principal.is_admin
        else ()
    )
    shown = sorted(set(by_instrument) | set(served), key=lambda n: (n != "*", n))
    return page(
        request,
        "console/instruments.html",
        here="instruments",
        names=shown,
        grants=by_instrument,
        served=served,
        unserved=unserved,
        listed=bool(runtime.settings.gateway_instruments),
        levels=LEVELS,
        notice=notice(notice_key),
    )


@router.post("/console/grants")
def add(runtime: RuntimeDep, session: SessionDep, admin: AdminPerson, fields: Posted) -> Response:
    body = parsed(
        GrantCreate,
        {
            "principal": fields.get("principal", ""),
            "instrument": fields.get("instrument", ""),
            "level": fields.get("level", ""),
        },
    )
    grants.create_grant(
        session,
        admin.principal,
        who=body.principal,
        instrument=body.instrument,
        level=body.level,
        now=runtime.clock(),
    )
    return see_other("/console/instruments?notice=grant-added")


@router.post("/console/grants/{grant_id}/level")
def change_level(
    grant_id: RowId, runtime: RuntimeDep, session: SessionDep, admin: AdminPerson, fields: Posted
) -> Response:
    try:
        level = _LEVEL.validate_python(fields.get("level", ""))
    except ValidationError:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}") from None
    grants.change_level(session, admin.principal, grant_id, level=level, now=runtime.clock())
    return see_other("/console/instruments?notice=grant-changed")


@router.post("/console/grants/{grant_id}/remove")
def remove(
    grant_id: RowId, runtime: RuntimeDep, session: SessionDep, admin: AdminPerson, _: Posted
) -> Response:
    grants.delete_grant(session, admin.principal, grant_id, now=runtime.clock())
    return see_other("/console/instruments?notice=grant-removed")
