"""`/acme/...`: the ACME (RFC 8555) protocol over the domain in `labgate.control.acme`.

Thin: each route hands the raw JWS and the URL it was sent to to the domain and writes the
answer with `Replay-Nonce`, `Link: rel="index"` (and `rel="up"`) and `Location`. Not in the
OpenAPI schema: ACME is its own protocol, described by its directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from labgate.control.acme import accounts, challenges, messages, orders, revocation
from labgate.control.acme.context import Urls
from labgate.control.acme.errors import MethodNotAllowed, UnsupportedMediaType
from labgate.control.acme.resources import Resource
from labgate.control.http.dependencies import RuntimeDep, SessionDep
from labgate.control.http.problems import acme_headers, base_url
from labgate.control.runtime import Runtime

router = APIRouter(prefix="/acme", tags=["acme"], include_in_schema=False)

JOSE = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One ACME POST: its JWS body, the URL it was sent to, and the request's transaction."""

    runtime: Runtime
    urls: Urls
    url: str
    body: bytes
    session: Session

    def verify(self, *, jwk_allowed: bool = False, kid_allowed: bool = True) -> messages.Signed:
        return messages.verify(
            self.runtime.acme,
            self.session,
            self.urls,
            self.body,
            url=self.url,
            jwk_allowed=jwk_allowed,
            kid_allowed=kid_allowed,
        )

    def headers(self) -> dict[str, str]:
        return acme_headers(self.runtime, self.urls, self.session)

    def answer(self, resource: Resource) -> JSONResponse:
        headers = self.headers()
        links = [headers["Link"]]
        if resource.up is not None:
            links.append(f'<{resource.up}>;rel="up"')
        headers["Link"] = ", ".join(links)
        if resource.location is not None:
            headers["Location"] = resource.location
        status = 201 if resource.created else 200
        return JSONResponse(resource.body, status_code=status, headers=headers)


async def _jose_body(request: Request) -> bytes:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != JOSE:
        raise UnsupportedMediaType(f"an ACME POST is {JOSE}, not {media or 'untyped'}")
    return await request.body()


async def request_urls(request: Request, runtime: RuntimeDep) -> Urls:
    return Urls(base=base_url(runtime, request))


UrlsDep = Annotated[Urls, Depends(request_urls)]


async def exchange(
    request: Request, runtime: RuntimeDep, session: SessionDep, urls: UrlsDep
) -> Exchange:
    body = await _jose_body(request)
    return Exchange(
        runtime=runtime, urls=urls, url=urls.base + request.url.path, body=body, session=session
    )


ExchangeDep = Annotated[Exchange, Depends(exchange)]


@router.get("/directory")
def directory(runtime: RuntimeDep, urls: UrlsDep) -> JSONResponse:
    body = urls.directory_object(eab_required=runtime.acme.eab_required)
    return JSONResponse(body, headers=acme_headers(runtime, urls))


@router.head("/new-nonce")
def new_nonce_head(runtime: RuntimeDep, urls: UrlsDep) -> Response:
    return Response(status_code=200, headers=acme_headers(runtime, urls))


@router.get("/new-nonce")
def new_nonce(runtime: RuntimeDep, urls: UrlsDep) -> Response:
    return Response(status_code=204, headers=acme_headers(runtime, urls))


@router.post("/new-account")
def new_account(x: ExchangeDep) -> JSONResponse:
    signed = x.verify(jwk_allowed=True, kid_allowed=False)
    return x.answer(accounts.new_account(x.runtime.acme, x.session, x.urls, signed))


@router.post("/account/{ident}")
def account(ident: str, x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    return x.answer(accounts.update_account(x.runtime.acme, x.session, x.urls, signed, ident))


@router.post("/account/{ident}/orders")
def account_orders(ident: str, x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    return x.answer(orders.list_orders(x.session, x.urls, signed, ident))


@router.post("/key-change")
def key_change(x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    return x.answer(accounts.change_key(x.runtime.acme, x.session, x.urls, signed))


@router.post("/new-order")
def new_order(x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    return x.answer(orders.new_order(x.runtime.acme, x.session, x.urls, signed))


@router.post("/order/{ident}")
def order(ident: str, x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    now = x.runtime.clock()
    return x.answer(orders.get_order(x.session, x.urls, signed, ident, now=now))


@router.post("/authz/{ident}")
def authorization(ident: str, x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    now = x.runtime.clock()
    return x.answer(orders.get_authorization(x.session, x.urls, signed, ident, now=now))


@router.post("/challenge/{ident}")
def challenge(
    ident: str,
    request: Request,
    body: Annotated[bytes, Depends(_jose_body)],
    runtime: RuntimeDep,
    urls: UrlsDep,
) -> JSONResponse:
    # No request transaction: validation reaches the network between two of its own.
    url = urls.base + request.url.path
    resource = challenges.respond(runtime.acme, urls, body, url=url, ident=ident)
    headers = acme_headers(runtime, urls)
    headers["Link"] += f', <{resource.up}>;rel="up"'
    return JSONResponse(resource.body, headers=headers | {"Location": str(resource.location)})


@router.post("/finalize/{ident}")
def finalize(ident: str, x: ExchangeDep) -> JSONResponse:
    signed = x.verify()
    return x.answer(orders.finalize(x.runtime.acme, x.session, x.urls, signed, ident))


@router.post("/certificate/{ident}")
def certificate(ident: str, x: ExchangeDep) -> Response:
    signed = x.verify()
    chain = orders.certificate_chain(x.session, x.urls, signed, ident)
    headers = x.headers()
    headers["Link"] += f', <{chain.up}>;rel="up"'
    return Response(chain.pem, media_type=PEM_CHAIN, headers=headers)


@router.post("/revoke-cert")
def revoke_cert(x: ExchangeDep) -> Response:
    signed = x.verify(jwk_allowed=True)
    revocation.revoke(x.runtime.acme, x.session, signed)
    return Response(status_code=200, headers=x.headers())


@router.get("/{kind}/{ident}")
def fetched_with_get(kind: str, ident: str) -> Response:
    raise MethodNotAllowed(f"{kind} resources are read with POST-as-GET (RFC 8555 6.3), not GET")
