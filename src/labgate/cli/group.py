"""The command group every `labgate` group is: tidy help, and the boundary for operational errors.

Both are done here once, for every sub-command, present and future, rather than in each one.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from labgate.cli import boundary, helptext


class Group(TyperGroup):
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            helptext.tidy(command.get_params(ctx))
        return command

    def get_help(self, ctx: Any) -> str:
        helptext.tidy(self.get_params(ctx))
        return str(super().get_help(ctx))

    def invoke(self, ctx: Any) -> Any:
        helptext.tidy(self.get_params(ctx))
        try:
            return super().invoke(ctx)
        except typer.Exit:
            raise
        except Exception as error:
            if not boundary.is_operational(error):
                raise
            raise boundary.report(error) from None
