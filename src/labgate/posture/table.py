"""The `[secure]` table rewritten inside a configuration file's text, the rest kept byte for byte.

Only the table's own lines are replaced (or the table appended when there is none), so comments
and layout elsewhere survive. The result is read back with `tomllib` before anyone writes it:
every other table must read exactly as before and `[secure]` as intended, or the edit is refused
(a `secure.fw = true` dotted key outside the table, say, which this does not rewrite).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from labgate.posture.mode import FEATURES, SecureConfig, Switches

_HEADER = re.compile(r"^[ \t]*\[[ \t]*secure[ \t]*\][ \t]*(#.*)?$")
_ANY_HEADER = re.compile(r"^[ \t]*\[")


class TableError(ValueError):
    """The file cannot be edited safely; the message says why."""


def apply_switches(mode: SecureConfig, switches: Switches) -> SecureConfig:
    values: dict[str, bool] = {name: getattr(mode, name) for name in FEATURES}
    values.update({name: True for name in switches.on})
    values.update({name: False for name in switches.off})
    return mode.model_copy(update={**values, "present": True})


def render_table(mode: SecureConfig) -> str:
    networks = ", ".join(f'"{network}"' for network in mode.client_networks)
    lines = ["[secure]", *(f"{name} = {str(getattr(mode, name)).lower()}" for name in FEATURES)]
    lines.append(f"client_networks = [{networks}]")
    return "\n".join(lines) + "\n"


def with_table(text: str, mode: SecureConfig) -> str:
    """`text` with its `[secure]` table replaced by `mode`'s (appended if it had none)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line.rstrip("\r\n"))]
    if len(starts) > 1:
        raise TableError("[secure] appears more than once")
    table = render_table(mode)
    if not starts:
        glue = "" if not text or text.endswith("\n") else "\n"
        new = f"{text}{glue}\n{table}" if text.strip() else table
    else:
        start = starts[0]
        end = next(
            (i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
        )
        # Blank lines and comments just before the next table belong to it, not to [secure].
        while end > start + 1 and (
            lines[end - 1].strip() in ("", "\n") or lines[end - 1].lstrip().startswith("#")
        ):
            end -= 1
        new = "".join(lines[:start]) + table + "".join(lines[end:])
    _same_but_secure(text, new, mode)
    return new


def _same_but_secure(old: str, new: str, mode: SecureConfig) -> None:
    try:
        before: dict[str, Any] = tomllib.loads(old)
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"not valid TOML: {exc}") from None
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:  # dotted keys or an inline table: not rewritten
        raise TableError(
            f"the edit would not be valid TOML ({exc}); the file is unchanged"
        ) from None
    before.pop("secure", None)
    written = after.pop("secure", None)
    if before != after or SecureConfig.from_table(written) != mode:
        raise TableError(
            "[secure] could not be rewritten on its own (is it written as dotted keys or inline?); "
            "the file is unchanged"
        )
