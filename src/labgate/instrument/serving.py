"""Running a simulator in the foreground until SIGINT or SIGTERM, as `labgate sim` does."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from labgate.instrument.config import SimulatorConfig
from labgate.instrument.simulator import start

log = logging.getLogger("labgate.instrument")


async def serve(config: SimulatorConfig) -> None:
    """Start, print the one JSON ready line on stdout, wait for a stop signal, stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    simulator = await start(config)
    try:
        sys.stdout.write(json.dumps(simulator.ready_line()) + "\n")
        sys.stdout.flush()
        await stop.wait()
        log.info("stop signal received")
    finally:
        await simulator.aclose()


def serve_until_signalled(config: SimulatorConfig) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    asyncio.run(serve(config))
    return 0
