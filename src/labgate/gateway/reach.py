"""How far the gateway's own login reaches on each instrument, and the sessions capped to it.

The gateway logs in with the instrument's password, and the instrument lets that connection rise
no higher than the password allows. A grant above it (an Administrator grant on a Controller
password) cannot be served: the session's `ACC` would be refused by the instrument ahead of its
next command, and the session would die for a reason its client never sees. So at start and on
every reload the gateway logs in on a connection of its own (through the instrument's upstream
slots, like any session) and asks for each level from the highest a grant may give downwards.
Each grant above the answer is warned about once, and a session's level is capped to it: its
`ACC` above the cap is refused by the gateway with `AccessLevelExceeded`, naming the instrument's
limit. An instrument that cannot be asked (unreachable, say) keeps what was last learnt; a session
that starts while its instrument is being asked for the first time waits for the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from labgate.gateway.config import GatewayConfig, Grant, InstrumentConfig
from labgate.gateway.errors import InstrumentBusy, UpstreamError
from labgate.gateway.grants import HIGHEST_WITHOUT_FULL
from labgate.gateway.protocol import protocol_for
from labgate.gateway.slots import UpstreamSlots
from labgate.gateway.upstream import UpstreamConnection, connect, highest_level
from labgate.scpi.access import AccessLevel

log = logging.getLogger("labgate.gateway")

Record = Callable[[Mapping[str, object]], object]  # the audit log; its answer is not needed


class InstrumentReach:
    """The highest level the gateway's login reaches on each instrument, as last learnt."""

    def __init__(
        self,
        slots: Mapping[str, UpstreamSlots],
        record: Record,
        grants: Callable[[], Iterable[Grant]],
    ) -> None:
        self._slots = slots
        self._record = record
        self._grants = grants  # the grants in force now, the control server's among them
        self.levels: dict[str, AccessLevel] = {}
        self._asking: dict[str, asyncio.Task[None]] = {}
        self._warned: set[tuple[str, str, AccessLevel, AccessLevel]] = set()

    def learn(self, config: GatewayConfig) -> None:
        """Ask every instrument again, each in a task of its own (see `settled`)."""
        up_to = AccessLevel.FULL if config.unsafe_allow_full else HIGHEST_WITHOUT_FULL
        for instrument in config.instruments:
            old = self._asking.get(instrument.name)
            if old is not None and not old.done():
                old.cancel()
            task = asyncio.get_running_loop().create_task(self._ask(instrument, config, up_to))
            self._asking[instrument.name] = task

    async def known(self, instrument: str) -> None:
        """Return at once when something is known of the instrument; else wait for its answer
        (a reload's question does not hold sessions up behind a busy instrument)."""
        if instrument not in self.levels:
            await self.settled(instrument)

    async def settled(self, instrument: str | None = None) -> None:
        """Wait until the instrument (every one, for None) has answered, or failed to."""
        tasks = [t for name, t in self._asking.items() if instrument in (None, name)]
        if tasks:
            # Shielded: a session given up while it waits does not stop the asking.
            await asyncio.wait([asyncio.shield(t) for t in tasks])

    async def aclose(self) -> None:
        for task in self._asking.values():
            task.cancel()
        await asyncio.gather(*self._asking.values(), return_exceptions=True)

    def cap(self, instrument: str, grant: AccessLevel) -> tuple[AccessLevel, str]:
        """A session's highest level: its grant, or the instrument's reach when that is lower
        (with the reason its `ACC` refusal gives)."""
        reach = self.levels.get(instrument)
        if reach is None or grant <= reach:
            return grant, ""
        return reach, f"the instrument's password for {instrument} reaches {reach.label} only"

    def warn_above(self, grants: Iterable[Grant], *, unsafe_allow_full: bool) -> None:
        """One warning for each grant above what its instrument's password reaches."""
        for grant in grants:
            level = grant.level
            if level is AccessLevel.FULL and not unsafe_allow_full:
                level = HIGHEST_WITHOUT_FULL
            for name, reach in self.levels.items():
                if grant.instrument not in (name, "*") or level <= reach:
                    continue
                key = (grant.identity, name, level, reach)
                if key in self._warned:
                    continue
                self._warned.add(key)
                log.warning(
                    "grant of %s to %s on %s is above %s, the most the instrument's password "
                    "reaches: those sessions get %s at most",
                    level.label, grant.identity, name, reach.label, reach.label,
                )  # fmt: skip

    async def _ask(
        self, instrument: InstrumentConfig, config: GatewayConfig, up_to: AccessLevel
    ) -> None:
        name = instrument.name
        slots = self._slots[name]
        try:
            upstream = await slots.take(_quiet)
        except InstrumentBusy as exc:
            log.warning("instrument %r: not asked what its password reaches: %s", name, exc)
            return
        warm, answered = upstream is not None, False
        try:
            if upstream is None:
                upstream = await connect(instrument, limits=config.limits.framing)
            level = await highest_level(upstream, instrument, up_to=up_to)
            answered = True
        except UpstreamError as exc:
            log.warning(
                "instrument %r: cannot learn the highest level its password reaches: %s", name, exc
            )
            return
        finally:
            # A warm connection goes back warm: the next session on it sets its own level first.
            keep = answered and warm and upstream is not None and upstream.stream.quiet
            await slots.give_back(upstream, keep=keep)
        known = self.levels.get(name)
        self.levels[name] = level
        label = protocol_for(instrument).level_name(level)
        self._record({"event": "instrument_reach", "instrument": name, "level": label})
        if known is not level:
            log.info("instrument %r: the gateway's login reaches %s", name, label)
        self.warn_above(self._grants(), unsafe_allow_full=config.unsafe_allow_full)


def _quiet(upstream: UpstreamConnection) -> bool:
    return upstream.stream.quiet
