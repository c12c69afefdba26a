"""Protocols and the run state machine.

A protocol is stored as its name, options and exact body text (so `PROT?` gives back what
`PROTOCOL` sent), plus an outline of stages, repeats and step holds that drives a run. A run walks
stage by stage, cycle by cycle, step by step through simulated time; `PAUSe` freezes it, `StopRun`
ends it when the current cycle ends, `AbortRun` ends it now. Each move yields an event text for
`MESSage Run` subscribers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# A step with no HOLD still takes a moment on a real block (the ramp); one simulated second.
MIN_STEP_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StepPlan:
    temperatures: tuple[float, ...]
    hold: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StagePlan:
    repeat: int
    steps: tuple[StepPlan, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolDefinition:
    """A protocol as `PROTOCOL` defined it."""

    name: str
    volume: str
    runmode: str
    body_tag: str
    body: str
    stages: tuple[StagePlan, ...]


def log_folder(title: str) -> str:
    """Where a run's files live, as a file store name (qslib writes `${LogFolder}/tcprotocol.xml`).

    The machine's is the absolute `/data/vendor/IS/experiments/TITLE/apldbio/sds`, the folder qslib
    syncs from (`experiments:TITLE/` listed, `.../apldbio/sds/` stripped). The simulator names the
    same folder inside its store, never a path of the host.
    """
    return f"experiments:{title}/apldbio/sds"


@dataclass(slots=True)
class Run:
    """A run in progress. Stage, cycle and step numbers start at 1, as the instrument's do."""

    title: str
    protocol: ProtocolDefinition
    started_at: float = field(default_factory=time.time)
    state: str = "Running"
    stage: int = 1
    cycle: int = 1
    step: int = 1
    point: int = 1
    elapsed: float = 0.0
    stopping: bool = False
    outcome: str | None = None

    def current_step(self) -> StepPlan:
        return self.protocol.stages[self.stage - 1].steps[self.step - 1]

    def variables(self) -> dict[str, str]:
        return {
            "RunTitle": self.title,
            "Stage": str(self.stage),
            "Cycle": str(self.cycle),
            "Step": str(self.step),
            "Point": str(self.point),
            "RunMacro": self.protocol.name,
            "Protocol": self.protocol.name,
            "SampleVolume": self.protocol.volume,
            "RunMode": self.protocol.runmode,
            "RunStartTime": f"{self.started_at:.3f}",
            "LogFolder": log_folder(self.title),
        }

    def redefine(self, protocol: ProtocolDefinition) -> str | None:
        """Follow a new definition of the running protocol (qslib's `change_protocol` sends one
        mid-run); the reason it cannot, if the step the run stands on is gone from it."""
        if self.stage > len(protocol.stages):
            return f"the run is in stage {self.stage}; the new protocol has {len(protocol.stages)}"
        steps = len(protocol.stages[self.stage - 1].steps)
        if self.step > steps:
            return f"the run is at step {self.step} of stage {self.stage}; it now has {steps}"
        # A repeat at or below the current cycle ends the stage when this cycle ends: what
        # qslib's change_protocol_from_now counts on when it sets the repeat to the cycle.
        self.protocol = protocol
        return None

    def status(self) -> str:
        """`ISTAT?`: the instrument's run state word."""
        return self.state

    def pause(self) -> list[str]:
        if self.state != "Running":
            return []
        self.state = "Paused"
        return ["Paused"]

    def resume(self) -> list[str]:
        if self.state != "Paused":
            return []
        self.state = "Running"
        return ["Resumed"]

    def stop(self) -> list[str]:
        """Finish when the current cycle ends."""
        self.stopping = True
        return ["Stopping"]

    def abort(self) -> list[str]:
        return self._finish("Aborted")

    def advance(self, seconds: float) -> list[str]:
        """Let `seconds` of simulated time pass; the events that happened, in order."""
        events: list[str] = []
        while self.outcome is None and self.state == "Running" and seconds > 0:
            remaining = max(self.current_step().hold, MIN_STEP_SECONDS) - self.elapsed
            if seconds < remaining:
                self.elapsed += seconds
                break
            seconds -= remaining
            events += self._next_step()
        return events

    def _next_step(self) -> list[str]:
        self.elapsed = 0.0
        stage = self.protocol.stages[self.stage - 1]
        if self.step < len(stage.steps):
            self.step += 1
            return [f"Step {self.step}"]
        self.step = 1
        if self.stopping:
            return self._finish("Stopped")
        if self.cycle < stage.repeat:
            self.cycle += 1
            return [f"Cycle {self.cycle}", f"Step {self.step}"]
        if self.stage < len(self.protocol.stages):
            self.stage += 1
            self.cycle = 1
            return [f"Stage {self.stage}", f"Cycle {self.cycle}", f"Step {self.step}"]
        return self._finish("Ended")

    def _finish(self, outcome: str) -> list[str]:
        self.outcome = outcome
        self.state = "Idle"
        return [outcome]
