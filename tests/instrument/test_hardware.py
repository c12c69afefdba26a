"""The machine's parts: temperatures settle towards set points; replies in the machine's words."""

from __future__ import annotations

import random

from labgate.instrument.hardware import AMBIENT, Hardware


def test_block_and_samples_settle_on_a_held_temperature() -> None:
    hardware = Hardware(rng=random.Random(1))
    hardware.hold((95.0,))
    for _ in range(100):
        hardware.tick(1.0)
    assert all(abs(value - 95.0) < 1.0 for value in hardware.block)
    assert all(abs(value - 95.0) < 1.0 for value in hardware.sample)
    hardware.release()
    for _ in range(100):
        hardware.tick(1.0)
    assert all(abs(value - AMBIENT) < 1.0 for value in hardware.sample)


def test_power_off_stops_heating() -> None:
    hardware = Hardware(rng=random.Random(2))
    hardware.hold((60.0,))
    hardware.power = False
    for _ in range(50):
        hardware.tick(1.0)
    assert all(abs(value - AMBIENT) < 1.0 for value in hardware.block)
    assert hardware.lamp_status().startswith("Off ")


def test_replies_use_the_instruments_shapes() -> None:
    hardware = Hardware()
    assert hardware.settings().startswith("-Zone1=25 -Zone2=25")
    assert hardware.settings().endswith("-Fan1=44 -Cover=105")
    assert hardware.controls().endswith("-Fan1=True -Cover=False")
    assert hardware.led_status() == "GREEN ON"
    hardware.led_color, hardware.led_mode = None, "OFF"
    assert hardware.led_status() == "- OFF"
    message = hardware.temperature_message()
    assert message.startswith("-sample=") and "-block=" in message and "-cover=" in message
