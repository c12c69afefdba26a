"""Everything one simulated instrument holds, shared by all its sessions.

One clock task moves simulated time: it lets temperatures drift, advances a run, and tells
subscribed sessions (`MESSage Temperature`, `MESSage Run`). `time_scale` is simulated seconds per
real second, so a 30 s hold takes 0.3 s at scale 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from labgate.instrument.filestore import FileStore
from labgate.instrument.hardware import Hardware
from labgate.instrument.randomkey import RandomKeys
from labgate.instrument.run import ProtocolDefinition, Run

log = logging.getLogger("labgate.instrument")

# Real seconds between clock ticks: smooth enough for run events, cheap on a shared machine.
TICK_SECONDS = 0.05
# Temperature reports every this many simulated seconds, kept between these real intervals.
TEMPERATURE_EVERY = 10.0
TEMPERATURE_REAL_BOUNDS = (0.1, 10.0)
# Drawer and cover moves take this long on the machine (simulated seconds); kept below a
# real-time bound so a slow time scale never makes a client's 600 s NEXT timeout matter.
MOTION_SECONDS = 2.0
MOTION_REAL_BOUNDS = (0.005, 5.0)

Listener = Callable[[str, str], None]
"""A session's event sink: (topic, text)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """How a run ended (for the `RP` that started it)."""

    title: str
    outcome: str


class InstrumentState:
    """The machine: hardware, protocols, the current run, files, the `RAND?` key, and who
    listens to events."""

    def __init__(self, *, files: FileStore, time_scale: float) -> None:
        self.hardware = Hardware()
        self.files = files
        self.time_scale = time_scale
        self.protocols: dict[str, ProtocolDefinition] = {}
        self.random_keys = RandomKeys()
        self.run: Run | None = None
        self._run_done: asyncio.Future[Finished] | None = None
        self._listeners: set[Listener] = set()
        self._clock: asyncio.Task[None] | None = None
        self.next_session = 474800

    # -- lifecycle --------------------------------------------------------------------------
    def start_clock(self) -> None:
        self._clock = asyncio.create_task(self._tick_forever(), name="labgate-sim-clock")

    async def stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock

    def new_session_number(self) -> int:
        self.next_session += 1
        return self.next_session

    # -- events -----------------------------------------------------------------------------
    def listen(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def unlisten(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def announce(self, topic: str, text: str) -> None:
        # Delivered on the next loop turn, so the reply to the command that caused an event
        # (the NEXT of an RP, say) goes out before the event does.
        asyncio.get_running_loop().call_soon(self._deliver, topic, text)

    def _deliver(self, topic: str, text: str) -> None:
        for listener in list(self._listeners):
            listener(topic, text)

    # -- time -------------------------------------------------------------------------------
    def motion_seconds(self) -> float:
        low, high = MOTION_REAL_BOUNDS
        return min(max(MOTION_SECONDS / self.time_scale, low), high)

    async def _tick_forever(self) -> None:
        low, high = TEMPERATURE_REAL_BOUNDS
        report_every = min(max(TEMPERATURE_EVERY / self.time_scale, low), high)
        last = time.monotonic()
        last_report = last
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            self.advance((now - last) * self.time_scale)
            last = now
            if now - last_report >= report_every:
                last_report = now
                self.announce("Temperature", self.hardware.temperature_message())

    def advance(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass for the hardware and the run."""
        run = self.run
        if run is not None:
            for event in run.advance(seconds):
                self.announce("Run", event)
            self._follow_run(run)
        self.hardware.tick(seconds)

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, run: Run) -> asyncio.Future[Finished]:
        self.run = run
        self._run_done = asyncio.get_running_loop().create_future()
        self.announce("Run", f"Starting {run.title}")
        self.announce("Run", f"Stage {run.stage}")
        self.hardware.hold(run.current_step().temperatures)
        return self._run_done

    def end_run(self, events: list[str]) -> None:
        """After AbortRun (or anything that finished the run outside the clock)."""
        for event in events:
            self.announce("Run", event)
        if self.run is not None:
            self._follow_run(self.run)

    def _follow_run(self, run: Run) -> None:
        if run.outcome is None:
            self.hardware.hold(run.current_step().temperatures)
            return
        self.hardware.release()
        self.run = None
        log.info("run %s %s", run.title, run.outcome.lower())
        if self._run_done is not None and not self._run_done.done():
            self._run_done.set_result(Finished(title=run.title, outcome=run.outcome))

    def variables(self) -> dict[str, str]:
        """Instrument variables for `${Name}`; run variables exist only during a run."""
        return self.run.variables() if self.run is not None else {}
