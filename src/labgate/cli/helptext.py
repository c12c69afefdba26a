"""How labgate's help reads: a flag shows no value, a value is named by what it holds.

Typer labels each option with its Python annotation (`--json <bool>`, `--dns <list[str]>`,
`--out <path>`) and a required argument as `{url}`. Before a command's help is printed, its
parameters get the names of Unix manuals instead: a flag has none, a value is named in capitals
(`--out PREFIX`, `URL`, a name from the parameter when none was given), a choice lists its values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typer.core import TyperArgument


class Argument(TyperArgument):
    """An argument shown as `URL` (required) or `[URL]` in the usage line, never `{url}`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name column already says it (`URL`, `FILE`)

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name if self.nargs == 1 else f"{name}..."


def tidy(params: Iterable[Any]) -> None:
    for param in params:
        if getattr(param, "_labgate_tidy", False):
            continue
        param._labgate_tidy = True
        if isinstance(param, TyperArgument) and not isinstance(param, Argument):
            param.__class__ = Argument  # the same object, only its usage piece differs
        if getattr(param, "is_flag", False):
            param.metavar = ""
            continue
        if param.metavar is None:
            param.metavar = _name(param)


def _name(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None) if getattr(descriptor, "is_choice", 0) else None
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    # The last word of the parameter's name says what it holds: state_dir -> DIR, timeout.
    return str(param.name or "value").rsplit("_", 1)[-1].upper()
