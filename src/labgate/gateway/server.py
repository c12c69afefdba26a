"""The running gateway: listeners, the admission of each connection, live reload, shutdown.

Admission runs in this order, each step refusing with a logged reason before the next costs more:
connection limit, TLS handshake (OpenSSL checks the client certificate against `client_ca` and the
CRL; the SNI callback refuses an unknown server name on a shared listener), admission (identity,
dates, CRL, trust, grant: `admission.admit`, asked again after the wait for a slot and on every
reload), per-identity limit, an upstream slot, the upstream login. Only then does a `Session`
relay anything.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import ssl
import weakref
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labgate.gateway.accept import ClientSide, Handshake, HelloTimeout, Shed, listen
from labgate.gateway.admission import Admission, Refused, admit
from labgate.gateway.audit import AuditLog
from labgate.gateway.auditchain import AuditError
from labgate.gateway.bundles import Bundle
from labgate.gateway.client_tls import peer_certificate
from labgate.gateway.config import Endpoint, GatewayConfig, InstrumentConfig, load_config
from labgate.gateway.errors import GatewayError, InstrumentBusy, ListenError, UpstreamError
from labgate.gateway.metrics import GatewayMetrics, served_certificates
from labgate.gateway.protocol import LineProtocol, protocol_for
from labgate.gateway.reach import InstrumentReach
from labgate.gateway.refusal import tell_refused
from labgate.gateway.session import Session, SessionInfo
from labgate.gateway.slots import UpstreamSlots
from labgate.gateway.state import LiveState, build_state, group_listeners
from labgate.gateway.upstream import UpstreamConnection, connect
from labgate.posture.mode import LEGACY_NOTICE

log = logging.getLogger("labgate.gateway")

# Replaced TLS contexts whose session caches may stay in memory at once (see `cache_allowed`):
# with `tls_session_cache` sessions of about 12 KiB each, 4 + 1 caches of 1,024 are about 60 MiB.
MAX_RETIRED_CACHES = 4
# How often a standalone gateway looks at its certificate's expiry (and warns within 30 days).
EXPIRY_CHECK_SECONDS = 6 * 3600


class Gateway:
    """`await start()`, read `addresses`, `await reload()` on demand, `await aclose()` to stop."""

    def __init__(self, config: GatewayConfig) -> None:
        self.metrics = GatewayMetrics()
        self._listeners = group_listeners(config.instruments)
        self.state = build_state(config, self._listeners)
        self.audit = AuditLog(
            config.audit_log,
            batch_size=config.audit_batch_size,
            flush_interval=config.audit_flush_interval,
        )
        self.metrics.audit_durable_seq.set_function(lambda: self.audit.durable_seq)
        self.metrics.audit_failing.set_function(lambda: int(self.audit.failed))
        self.metrics.watch_certificates(lambda: served_certificates(self.state.config))
        self._expiry_watch: asyncio.Task[None] | None = None
        self.slots = {
            i.name: UpstreamSlots(
                instrument=i.name,
                size=i.max_upstream,
                queue=i.upstream_queue,
                wait=i.upstream_wait,
                idle=i.upstream_idle,
                idle_timeout=i.upstream_idle_timeout,
            )
            for i in config.instruments
        }
        # The line protocol each instrument speaks (instruments are fixed for the process's life).
        self.protocols: dict[str, LineProtocol] = {
            i.name: protocol_for(i) for i in config.instruments
        }
        self.sessions: set[Session] = set()
        self.reach = InstrumentReach(self.slots, self.record, lambda: self.state.grants.grants)
        self.bundle: Bundle | None = None
        self.bundle_crl: Path | None = None
        self.addresses: dict[str, str] = {}
        self.metrics_address: str | None = None
        self._servers: list[asyncio.Server] = []
        self._metrics_server: Any = None
        self._connections = 0
        # Handshakes in progress, oldest first: all, with their source host, and by source host
        # (see `_shed_one`).
        self._unfinished: dict[Handshake, str] = {}
        self._handshaking: dict[str, dict[Handshake, None]] = {}
        self._per_identity: Counter[str] = Counter()
        self._next_conn = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired: list[weakref.ref[ssl.SSLContext]] = []  # replaced contexts, maybe alive
        # Held while certificate files are rewritten (a renewal) and while they are read again
        # (a reload), so that a reload never reads a new key beside the old certificate.
        self.files_lock = asyncio.Lock()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Bind every listener, then open the audit log, then serve.

        A start that fails closes whatever it had opened: a port already taken stops it before
        the audit log is touched, and a log that cannot be opened unbinds the listeners, so a
        failed start leaves neither a half-open log nor a bound port behind it."""
        try:
            await self._bind()
            await self.audit.start()
        except BaseException:
            await self._unbind()
            raise
        self.record({"event": "gateway_start", "instruments": list(self.slots),
                     "secure": self.state.config.secure.describe()})  # fmt: skip
        if not self.state.config.secure.present:
            log.info("%s", LEGACY_NOTICE)  # once, at start: a reload does not repeat it
        try:
            # Before serving: what each instrument's password reaches, all asked at once (one that
            # cannot be reached is warned about, and costs at most its upstream_timeout).
            self.reach.learn(self.state.config)
            await self.reach.settled()
            for server in self._servers:
                await server.start_serving()
            if self.state.config.control is None:
                # Nothing renews a standalone gateway's certificate: say so in time.
                self._expiry_watch = asyncio.get_running_loop().create_task(self._warn_expiring())
        except BaseException as exc:  # interrupted, or a bug: the log still ends with a stop
            await self.reach.aclose()
            await self._unbind()
            self.record({"event": "gateway_stop", "reason": f"start failed: {exc!r}"})
            await self.audit.aclose()
            raise

    async def _bind(self) -> None:
        instruments = self.state.config.instruments
        for index, listener in enumerate(self._listeners):
            key = f"instrument[{instruments.index(listener.instruments[0])}].listen"
            try:
                server = await listen(
                    listener.endpoint.host,
                    listener.endpoint.port,
                    lambda transport, index=index: self._accept(index, transport),  # type: ignore[misc]
                    start_serving=False,
                )
            except OSError as exc:
                raise ListenError(_cannot_listen(key, listener.endpoint, exc)) from exc
            self._servers.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            for instrument in listener.instruments:
                self.addresses[instrument.name] = str(Endpoint(host=host, port=port))
        endpoint = self.state.config.metrics_listen
        if endpoint is not None:
            from prometheus_client import start_http_server

            try:
                httpd, _ = start_http_server(
                    endpoint.port, endpoint.host, registry=self.metrics.registry
                )
            except OSError as exc:
                raise ListenError(_cannot_listen("gateway.metrics_listen", endpoint, exc)) from exc
            self._metrics_server = httpd
            host, port = httpd.server_address[:2]
            self.metrics_address = str(Endpoint(host=str(host), port=int(port)))

    async def _unbind(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.shutdown)
            self._metrics_server.server_close()
            self._metrics_server = None

    def ready_line(self) -> str:
        return json.dumps({"instruments": self.addresses, "metrics": self.metrics_address})

    async def _warn_expiring(self) -> None:
        from labgate.pki import expiry

        while True:
            now = datetime.now(UTC)
            found = expiry.held(served_certificates(self.state.config))
            for line in expiry.expiring(found, now=now):
                log.warning("%s", line)
            await asyncio.sleep(EXPIRY_CHECK_SECONDS)

    async def aclose(self) -> None:
        if self._expiry_watch is not None:
            self._expiry_watch.cancel()
            self._expiry_watch = None
        for server in self._servers:
            server.close()
        for session in list(self.sessions):
            session.close("gateway stopping")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.reach.aclose()
        for slots in self.slots.values():
            await slots.aclose()
        await self._unbind()
        self.record({"event": "gateway_stop"})
        await self.audit.aclose()

    # ------------------------------------------------------------------ reload

    def tls_sessions_kept(self) -> int:
        """TLS sessions held for resumption by the fullest listener's context."""
        return max((c.session_stats()["number"] for c in self.state.contexts.values()), default=0)

    @property
    def tls_session_cache_on(self) -> bool:
        """Whether the contexts in force keep TLS sessions (see `cache_allowed`)."""
        return all(c.options & ssl.OP_NO_TICKET for c in self.state.contexts.values())

    def cache_allowed(self) -> bool:
        """Whether new contexts may keep TLS sessions in memory.

        A context replaced by a reload lives on, cache and all, while a connection it accepted
        is open (OpenSSL ties a connection to the cache it was made with), so a long session
        can hold one cache while short ones fill and replace others. Once `MAX_RETIRED_CACHES`
        of them are held so, new contexts issue stateless tickets instead, which cost CPU but
        no memory, until those long sessions end."""
        self._retired = [ref for ref in self._retired if _holds_sessions(ref())]
        return len(self._retired) < MAX_RETIRED_CACHES

    async def reload(self, config: GatewayConfig | None = None, *, why: str = "") -> None:
        """Re-read the configuration and its files; apply them without dropping sessions.

        A failed reload keeps the running state and says why: a typo in a new grant must not
        take the gateway down.
        """
        try:
            if config is None:
                source = self.state.config.source
                config = (
                    await asyncio.to_thread(load_config, source) if source else self.state.config
                )
            state = await asyncio.to_thread(
                functools.partial(
                    build_state,
                    config,
                    self._listeners,
                    self.bundle,
                    self.bundle_crl,
                    session_cache=self.cache_allowed(),
                )
            )
        except GatewayError as exc:
            self.metrics.reloads.labels("failed").inc()
            self.record({"event": "reload_failed", "reason": str(exc)})
            log.warning("reload failed, keeping the running configuration: %s", exc)
            return
        self.apply(state, why=why)
        if not why:  # a reload of the files, not a fresh TLS session cache: ask again
            self.reach.learn(state.config)

    def use_bundle(self, bundle: Bundle | None, crl: Path | None) -> None:
        """Put a verified control-server bundle in force (None: the last one expired)."""
        self.bundle, self.bundle_crl = bundle, crl
        session_cache = self.cache_allowed()
        self.apply(
            build_state(
                self.state.config, self._listeners, bundle, crl, session_cache=session_cache
            )
        )

    def apply(self, state: LiveState, *, why: str = "") -> None:
        """Switch to new state; close or lower live sessions that it no longer allows."""
        self._retired += [weakref.ref(c) for c in self.state.contexts.values()]
        self.state = state
        self.metrics.reloads.labels("applied").inc()
        event: dict[str, object] = {"event": "reload", "grants": len(state.grants.grants),
                                    "secure": state.config.secure.describe()}  # fmt: skip
        if why:
            event["reason"] = why
        self.record(event)
        log.info("reloaded%s: %d grants in force", f" ({why})" if why else "",
                 len(state.grants.grants))  # fmt: skip
        self.reach.warn_above(state.grants.grants, unsafe_allow_full=state.config.unsafe_allow_full)
        for session in list(self.sessions):
            source = session.info.peer.rpartition(":")[0].strip("[]")
            if not state.config.secure.admits_source(source):  # [secure] fw, changed on reload
                self._close_session(session, f"{source} is outside [secure] client_networks")
                continue
            verdict = self._admission(session.info)
            if isinstance(verdict, Refused):
                withdrawn = verdict.kind == "no_grant"
                self._close_session(
                    session, f"grant withdrawn: {verdict.reason}" if withdrawn else verdict.reason
                )
                continue
            name = session.info.instrument.name
            level, limit = self.reach.cap(name, verdict.level)
            limit = limit or verdict.limit
            if level != session.filter.grant:
                if level < session.filter.grant:
                    log.info("session %d (%s on %s): grant lowered to %s", session.info.conn,
                             session.info.identity, name,
                             self.protocols[name].level_name(level))  # fmt: skip
                session.change_grant(level, limit_reason=limit)

    def _close_session(self, session: Session, reason: str) -> None:
        log.info("session %d (%s on %s) closed: %s", session.info.conn, session.info.identity,
                 session.info.instrument.name, reason)  # fmt: skip
        session.close(reason)

    # ------------------------------------------------------------------ admission

    def _accept(self, index: int, transport: asyncio.Transport) -> None:
        """A new connection (called before any byte is read): the connection limit, then the
        TLS handshake starts on the context in force now."""
        self._next_conn += 1
        conn = self._next_conn
        peer = _peer(transport)
        state = self.state
        source = _source_host(transport)
        if not state.config.secure.admits_source(source):  # [secure] fw: before any TLS byte
            self._refuse_early(conn, peer, "source_network",
                               f"{source} is outside [secure] client_networks")  # fmt: skip
            transport.abort()
            return
        limits = state.config.limits
        if self._connections >= limits.max_connections:
            # Silent connections make way for new ones; established sessions never do.
            silent = next((h for h in self._unfinished if h.in_hello), None)
            if silent is None:
                self._refuse_early(
                    conn, peer, "connection_limit", f"{limits.max_connections} connections open"
                )
                transport.abort()
                return
            self._shed(silent, f"{limits.max_connections} connections open; the oldest "
                               "without a ClientHello made way for a new one")  # fmt: skip
        handshakes = self._handshaking.setdefault(source, {})
        if len(handshakes) >= limits.max_handshakes_per_source:
            self._shed_one(handshakes, source, limits.max_handshakes_per_source)
        handshake = Handshake(
            transport,
            state.contexts[index],
            timeout=limits.handshake_timeout,
            hello_timeout=limits.client_hello_timeout,
        )
        self._connections += 1
        handshakes[handshake] = None
        self._unfinished[handshake] = source
        task = asyncio.get_running_loop().create_task(
            self._admit(index, conn, peer, source, transport, handshake, state)
        )
        self._tasks.add(task)  # kept, so the task is neither collected nor forgotten at shutdown
        task.add_done_callback(self._tasks.discard)

    async def _admit(
        self,
        index: int,
        conn: int,
        peer: str,
        source: str,
        transport: asyncio.Transport,
        handshake: Handshake,
        state: LiveState,
    ) -> None:
        try:
            await self._handshake_and_run(index, conn, peer, source, handshake, state)
        except Exception as exc:  # one connection's failure must never take the gateway down
            log.exception("connection %d from %s: unexpected failure", conn, peer)
            self.record({"event": "internal_error", "conn": conn, "peer": peer,
                         "reason": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        finally:
            self._connections -= 1
            if not transport.is_closing():
                transport.abort()

    async def _handshake_and_run(
        self,
        index: int,
        conn: int,
        peer: str,
        source: str,
        handshake: Handshake,
        state: LiveState,
    ) -> None:
        try:
            client = await handshake.done()  # the TLS protocol enforces the timeout itself
        except Shed as exc:
            self._refuse_early(conn, peer, "shed", str(exc))
            return
        except HelloTimeout as exc:
            self._refuse_early(conn, peer, "hello_timeout", str(exc))
            return
        except TimeoutError as exc:
            self._refuse_early(conn, peer, "handshake_timeout", str(exc))
            return
        except ssl.SSLError as exc:
            # OpenSSL's verify message when the certificate failed ("certificate revoked"),
            # else its reason code in words ("peer did not return a certificate").
            reason = getattr(exc, "verify_message", None) or (exc.reason or str(exc))
            reason = reason.replace("_", " ").lower()
            if reason == "callback failed":  # only the SNI callback can fail in a handshake
                reason = "the server name (SNI) names no instrument on this shared listener"
            self._refuse_early(conn, peer, "tls", f"TLS handshake failed: {reason}")
            return
        except (OSError, ConnectionError) as exc:
            self._refuse_early(
                conn, peer, "connection_lost", f"connection lost in handshake: {exc!r}"
            )
            return
        finally:
            self._handshake_over(source, handshake)
        try:
            await self._verified(index, conn, peer, client, state.anchors, handshake.server_name)
        finally:
            client.abort()

    async def _verified(
        self,
        index: int,
        conn: int,
        peer: str,
        client: ClientSide,
        admitted_under: frozenset[bytes],
        hello_name: str | None,
    ) -> None:
        self.metrics.handshakes.inc()
        assert client.transport is not None
        ssl_object = client.transport.get_extra_info("ssl_object")
        # OpenSSL's server name: in a resumed TLS 1.2 session the one the session was made with.
        made_for = getattr(ssl_object, "labgate_server_name", None)
        instrument = self._instrument_for(index, made_for)
        certificate = peer_certificate(ssl_object, anchors=admitted_under)
        if instrument is None or certificate is None:  # the SNI callback and OpenSSL refuse these
            self._refuse_early(conn, peer, "tls", "no instrument or no client certificate")
            return
        base = {"conn": conn, "peer": peer, "identity": certificate.identity,
                "fingerprint": certificate.fingerprint, "instrument": instrument.name}  # fmt: skip
        if len(self._listeners[index].instruments) > 1 and (made_for or "").lower() != hello_name:
            # A TLS 1.2 session made for one instrument, resumed under another's name: it would
            # land on the first. It cannot be made a full handshake now; the client is told.
            await self._refuse(client, base, "server_name",
                               f"this TLS session was made for instrument {instrument.name!r} "
                               f"but the server name asks for {hello_name!r}: connect again "
                               "without resuming it", error_class="AccessDenied")  # fmt: skip
            return
        info = SessionInfo(conn=conn, peer=peer, instrument=instrument,
                           certificate=certificate, admitted_under=admitted_under)  # fmt: skip
        verdict = self._admission(info)
        if isinstance(verdict, Refused):
            await self._refuse(client, base, verdict.kind, verdict.reason,
                               error_class="AccessDenied")  # fmt: skip
            return
        identity = certificate.identity or ""
        per_identity = self.state.config.limits.max_connections_per_identity
        if self._per_identity[identity] >= per_identity:
            await self._refuse(client, base, "identity_limit",
                               f"{identity} already has {per_identity} sessions open")  # fmt: skip
            return
        self._per_identity[identity] += 1
        try:
            await self._run_upstream(info, client, base)
        finally:
            self._per_identity[identity] -= 1
            if not self._per_identity[identity]:
                del self._per_identity[identity]

    async def _run_upstream(
        self,
        info: SessionInfo,
        client: ClientSide,
        base: dict[str, object],
    ) -> None:
        name = info.instrument.name
        slots = self.slots[name]
        try:
            await self.reach.known(name)  # waits only while the first answer is awaited
            upstream, warm = await self._lease(info.instrument)
            handed = False
            try:
                # Judged again now: a reload during the wait for a slot may have withdrawn the
                # grant or revoked the certificate, and no session may start on the old answer.
                verdict = self._admission(info)
                if isinstance(verdict, Refused):
                    await self._refuse(client, base, verdict.kind,
                                       f"{verdict.reason} (while waiting for the instrument)",
                                       error_class="AccessDenied")  # fmt: skip
                    return
                grant = verdict.level
                level, limit = self.reach.cap(name, grant)
                limit = limit or verdict.limit
                session = Session(
                    info=info,
                    grant=level,
                    limit_reason=limit,
                    client=client,
                    upstream=upstream,
                    warm=warm,
                    limits=self.state.config.limits,
                    record=self.record,
                    durable=self.audit.when_durable,
                    metrics=self.metrics,
                    give_back=lambda up, keep: slots.give_back(up, keep=keep),
                )
                # Which connection serves whom: the instrument's own log knows only its session
                # number, and a warm connection serves several users one after another.
                level_name = self.protocols[name].level_name
                event = {"event": "connect", **base, "grant": level_name(grant),
                         "upstream": "warm" if warm else "new",
                         "upstream_session": upstream.session_number}  # fmt: skip
                if limit:
                    event["level_limit"] = level_name(level)  # its password reaches no more
                if verdict.limit:
                    event["limit_reason"] = verdict.limit  # [secure] full capped the grant
                self.record(event)
                self.sessions.add(session)
                self.metrics.child(self.metrics.sessions_started, name).inc()
                self.metrics.child(self.metrics.sessions, name).inc()
                handed = True  # from here the session gives the connection back
                try:
                    await session.run()
                finally:
                    self.sessions.discard(session)
                    self.metrics.child(self.metrics.sessions, name).dec()
            finally:
                if not handed:
                    await slots.give_back(upstream, keep=False)
        except InstrumentBusy as exc:
            self.metrics.upstream_busy.labels(name).inc()
            await self._refuse(
                client, base, "instrument_busy", str(exc), error_class="InstrumentBusy"
            )
        except UpstreamError as exc:
            await self._refuse(client, base, "upstream", str(exc), error_class="IOError")

    async def _lease(self, instrument: InstrumentConfig) -> tuple[UpstreamConnection, bool]:
        """A logged-in upstream connection holding one of the instrument's slots: a warm one
        (True), which the session puts back at the baseline level before anything of its own,
        else a new one (False)."""
        slots = self.slots[instrument.name]
        upstream = await slots.take(_still_quiet)
        if upstream is not None:
            return upstream, True
        try:
            protocol = self.protocols[instrument.name]
            limits = self.state.config.limits.framing
            return await connect(instrument, limits=limits, protocol=protocol), False
        except BaseException:
            await slots.give_back(None, keep=False)
            raise

    def _admission(self, info: SessionInfo) -> Admission:
        """The one admission verdict (see `admission`), under the state in force now."""
        return admit(self.state, info.certificate, instrument=info.instrument.name,
                     admitted_under=info.admitted_under, now=datetime.now(UTC))  # fmt: skip

    def _instrument_for(self, index: int, server_name: str | None) -> InstrumentConfig | None:
        instruments = self._listeners[index].instruments
        if len(instruments) == 1:
            return instruments[0]
        wanted = (server_name or "").lower()
        return next((i for i in instruments if i.name.lower() == wanted), None)

    # ------------------------------------------------------------------ refusals and records

    def _handshake_over(self, source: str, handshake: Handshake) -> None:
        if self._unfinished.pop(handshake, None) is None:
            return  # a shed one is gone already
        handshakes = self._handshaking[source]
        del handshakes[handshake]
        if not handshakes:
            del self._handshaking[source]  # no entry kept per address ever seen

    def _shed(self, handshake: Handshake, reason: str) -> None:
        """Drop an unfinished handshake now; its task records why."""
        self._handshake_over(self._unfinished[handshake], handshake)
        handshake.shed(reason)

    def _shed_one(self, handshakes: dict[Handshake, None], source: str, limit: int) -> None:
        """Make room for a new handshake from `source`: drop its oldest one still without a
        ClientHello, else its oldest. A prompt client's handshake is the newest and past its
        ClientHello at once, so a host opening slow ones sheds its own, not its neighbours'."""
        victim = next((h for h in handshakes if h.in_hello), None)
        silent = victim is not None
        if victim is None:
            victim = next(iter(handshakes))
        what = "the oldest without a ClientHello" if silent else "the oldest"
        self._shed(victim, f"{limit} TLS handshakes from {source} in progress; {what} made way "
                           "for a new one")  # fmt: skip

    def _refuse_early(self, conn: int, peer: str, kind: str, reason: str) -> None:
        self.metrics.handshake_failures.labels(kind).inc()
        self.record({"event": "handshake_failure", "conn": conn, "peer": peer,
                      "kind": kind, "reason": reason})  # fmt: skip
        log.info("connection %d from %s refused: %s", conn, peer, reason)

    async def _refuse(
        self,
        client: ClientSide,
        base: dict[str, object],
        kind: str,
        reason: str,
        *,
        error_class: str = "IOError",
    ) -> None:
        """Refuse a verified client, telling it why (see `refusal`). The instrument failing the
        gateway (unreachable, wrong pin, wrong password) is an operator's problem: a warning."""
        self.metrics.handshake_failures.labels(kind).inc()
        self.record({"event": "refused", **base, "kind": kind, "reason": reason})
        level = logging.WARNING if kind == "upstream" else logging.INFO
        log.log(level, "connection %s (%s on %s) refused: %s", base.get("conn"),
                base.get("identity"), base.get("instrument"), reason)  # fmt: skip
        protocol = self.protocols[str(base["instrument"])]
        await tell_refused(client, error_class=error_class, reason=reason, protocol=protocol)

    def record(self, event: Mapping[str, object], *, urgent: bool = False) -> int | None:
        """Audit `event`: its seq, or None when the log refused it (the error is logged)."""
        try:
            return self.audit.record(event, urgent=urgent)
        except AuditError as exc:
            log.error("audit record lost: %s", exc)
            return None


def _still_quiet(upstream: UpstreamConnection) -> bool:
    """Whether a warm connection may be lent: the instrument has neither hung up nor sent
    anything unasked while it waited (its stream notices both as they happen)."""
    return upstream.stream.quiet


def _holds_sessions(context: ssl.SSLContext | None) -> bool:
    return context is not None and context.session_stats()["number"] > 0


def _cannot_listen(key: str, endpoint: Endpoint, exc: OSError) -> str:
    # asyncio's own message repeats the address as a tuple; the errno's words are enough.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{key} = {str(endpoint)!r}: cannot listen there: {reason}"


def _source_host(transport: asyncio.BaseTransport) -> str:
    """The peer's address without its port: what the per-source limits count by."""
    address = transport.get_extra_info("peername")
    return str(address[0]) if address else "unknown"


def _peer(transport: asyncio.BaseTransport) -> str:
    address = transport.get_extra_info("peername")
    if not address:
        return "unknown"
    return str(Endpoint(host=str(address[0]), port=int(address[1])))
