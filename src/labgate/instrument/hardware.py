"""The instrument's physical parts: drawer, cover, power, heated zones, status LED.

Temperatures move towards their set points with first-order lags and a little noise, so two
readings a moment apart differ the way a real block's do. Time is simulated seconds, already
scaled by the caller.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

ZONES = 6
AMBIENT = 25.0
COVER_HOT = 105.0
LAMP_WARM = 39.8
# Time constants (simulated seconds): the block ramps in seconds, the cover takes a minute.
BLOCK_LAG = 4.0
SAMPLE_LAG = 3.0
COVER_LAG = 20.0
NOISE = 0.03
LED_COLORS = ("RED", "GREEN", "BLUE", "YELLOW", "CYAN", "MAGENTA", "WHITE")
LED_MODES = ("ON", "OFF", "BLINK")


def _zone_values() -> list[float]:
    return [AMBIENT] * ZONES


@dataclass(slots=True)
class Hardware:
    """Mutable state of the machine's parts; only the simulator's event loop changes it."""

    drawer: str = "Closed"
    cover: str = "Down"
    power: bool = True
    block_control: bool = False
    block_setpoints: list[float] = field(default_factory=_zone_values)
    cover_control: bool = False
    cover_setpoint: float = COVER_HOT
    fan_setpoint: float = 44.0
    block: list[float] = field(default_factory=_zone_values)
    sample: list[float] = field(default_factory=_zone_values)
    cover_temperature: float = AMBIENT + 5.0
    heatsink: float = AMBIENT + 2.0
    lamp: float = LAMP_WARM - 3.2
    led_color: str | None = "GREEN"
    led_mode: str = "ON"
    rng: random.Random = field(default_factory=random.Random)

    def tick(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass."""
        if seconds <= 0:
            return
        heating = self.power and self.block_control
        for zone in range(ZONES):
            target = self.block_setpoints[zone] if heating else AMBIENT
            self.block[zone] = self._approach(self.block[zone], target, BLOCK_LAG, seconds)
            self.sample[zone] = self._approach(
                self.sample[zone], self.block[zone], SAMPLE_LAG, seconds
            )
        cover_target = self.cover_setpoint if self.power and self.cover_control else AMBIENT + 5
        self.cover_temperature = self._approach(
            self.cover_temperature, cover_target, COVER_LAG, seconds
        )
        lamp_target = LAMP_WARM if self.power else AMBIENT
        self.lamp = self._approach(self.lamp, lamp_target, COVER_LAG, seconds)
        self.heatsink = self._approach(self.heatsink, AMBIENT + 2, COVER_LAG, seconds)

    def _approach(self, value: float, target: float, lag: float, seconds: float) -> float:
        moved = target + (value - target) * math.exp(-seconds / lag)
        return moved + self.rng.gauss(0.0, NOISE)

    def hold(self, temperatures: tuple[float, ...]) -> None:
        """Drive the block zones to a run step's temperatures (one value repeats to all)."""
        self.block_control = True
        self.cover_control = True
        values = list(temperatures) or [AMBIENT]
        self.block_setpoints = [values[min(zone, len(values) - 1)] for zone in range(ZONES)]

    def release(self) -> None:
        """The run is over: stop heating."""
        self.block_control = False
        self.cover_control = False

    # Replies, formatted as the instrument formats them.
    def lamp_status(self) -> str:
        return f"{'On' if self.power else 'Off'} {self.lamp:.1f}"

    def block_status(self) -> str:
        return f"{'ON' if self.block_control else 'OFF'} {self.block_setpoints[0]:.1f}"

    def settings(self) -> str:
        zones = " ".join(
            f"-Zone{number}={_number(value)}"
            for number, value in enumerate(self.block_setpoints, start=1)
        )
        return f"{zones} -Fan1={_number(self.fan_setpoint)} -Cover={_number(self.cover_setpoint)}"

    def controls(self) -> str:
        zones = " ".join(f"-Zone{number}={self.block_control}" for number in range(1, ZONES + 1))
        return f"{zones} -Fan1=True -Cover={self.cover_control}"

    def led_status(self) -> str:
        if self.led_color is None:
            return "- OFF"
        return f"{self.led_color} {self.led_mode}"

    def temperature_message(self) -> str:
        return (
            f"-sample={_series(self.sample)} -heatsink={self.heatsink:.1f}"
            f" -cover={self.cover_temperature:.1f} -block={_series(self.block)}"
        )


def format_series(values: list[float]) -> str:
    return " ".join(f"{value:.1f}" for value in values)


def _series(values: list[float]) -> str:
    return ",".join(f"{value:.1f}" for value in values)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
