"""The jobs sweeper: a thread per server process that times out jobs past their deadline and
moves rollouts on, every `jobs_sweep_seconds`.

Every replica runs one; they need no coordination, since each change it makes is a
compare-and-set (labgate.control.jobs, labgate.control.rollouts): two sweepers meeting on one
job move it once. Reads enforce the same deadlines, so a sweeper only makes them visible sooner.
"""

from __future__ import annotations

import logging
import threading

from labgate.control import jobs, rollouts
from labgate.control.runtime import Runtime
from labgate.control.transactions import unit_of_work

log = logging.getLogger("labgate.control")


def sweep_once(runtime: Runtime) -> int:
    """One pass; how many jobs and rollouts it moved."""
    with unit_of_work(runtime.sessions) as session:
        moved = jobs.sweep(session, now=runtime.clock())
    with unit_of_work(runtime.sessions) as session:
        moved += rollouts.advance_all(session, now=runtime.clock())
    return moved


class JobSweeper:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labgate-job-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        interval = self.runtime.settings.jobs_sweep_seconds
        while not self._stop.wait(interval):
            try:
                sweep_once(self.runtime)
            except Exception as error:  # the next pass tries again; reads enforce deadlines too
                log.warning("job sweeper: %s: %s", type(error).__name__, error)
