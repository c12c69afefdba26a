"""What the running gateway holds that a reload replaces: TLS contexts, grants, revocations.

A reload builds a whole new `LiveState` off to the side and swaps it in at once, so a handshake
always sees one consistent set of certificate, CA, CRL and grants. Each listener gets a context of
its own, so that on an address shared by several instruments the SNI callback can refuse, inside
the handshake, a server name that names none of them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labgate.gateway.bundles import Bundle
from labgate.gateway.client_tls import TlsFiles, build_client_context, trust_anchors
from labgate.gateway.config import Endpoint, GatewayConfig, InstrumentConfig
from labgate.gateway.grants import GrantTable
from labgate.gateway.revocation import RevocationList


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveState:
    """Everything a reload replaces at once; a handshake uses the contexts current at its start."""

    config: GatewayConfig
    contexts: Mapping[int, ssl.SSLContext]  # by listener index
    grants: GrantTable
    revoked: tuple[RevocationList, ...]
    anchors: frozenset[bytes]  # the client CA file's certificates (DER)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    endpoint: Endpoint
    instruments: tuple[InstrumentConfig, ...]


def group_listeners(instruments: tuple[InstrumentConfig, ...]) -> tuple[Listener, ...]:
    """One listener per listen address; port 0 always gets a listener (and free port) of its own."""
    listeners: list[Listener] = []
    for instrument in instruments:
        shared = next(
            (
                i
                for i, lst in enumerate(listeners)
                if lst.endpoint == instrument.listen and instrument.listen.port != 0
            ),
            None,
        )
        if shared is None:
            listeners.append(Listener(endpoint=instrument.listen, instruments=(instrument,)))
        else:
            old = listeners[shared]
            listeners[shared] = Listener(
                endpoint=old.endpoint, instruments=(*old.instruments, instrument)
            )
    return tuple(listeners)


def build_state(
    config: GatewayConfig,
    listeners: tuple[Listener, ...],
    bundle: Bundle | None = None,
    bundle_crl: Path | None = None,
    *,
    session_cache: bool = True,
) -> LiveState:
    """The state for a configuration and, if one is in force, the control server's bundle:
    its grants join the file's (for instruments this gateway knows), its CRL joins the file's."""
    crls = tuple(p for p in (config.crl, bundle_crl if bundle else None) if p is not None)
    files = TlsFiles(cert=config.cert, key=config.key, client_ca=config.client_ca, crls=crls)
    contexts = {}
    for index, listener in enumerate(listeners):
        context = build_client_context(files, session_cache=session_cache)
        context.sni_callback = _sni_callback(listener)
        contexts[index] = context
    names = {i.name for i in config.instruments} | {"*"}
    extra = tuple(g for g in bundle.grants if g.instrument in names) if bundle else ()
    return LiveState(
        config=config,
        contexts=contexts,
        grants=GrantTable.of((*config.grants, *extra), allow_full=config.unsafe_allow_full),
        revoked=tuple(r for p in crls for r in RevocationList.load_all(p)),
        anchors=trust_anchors(config.client_ca),
    )


def _sni_callback(listener: Listener) -> Any:
    names = {i.name.lower() for i in listener.instruments}
    shared = len(names) > 1

    def choose(ssl_object: Any, server_name: str | None, _context: ssl.SSLContext) -> int | None:
        # On a shared listener the server name is the only way to tell instruments apart: refuse
        # an unknown one inside the handshake, before any certificate is even looked at.
        ssl_object.labgate_server_name = server_name
        if shared and (server_name or "").lower() not in names:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    return choose
