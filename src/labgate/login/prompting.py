"""Asking a person for a password: without echo on a terminal, one line of input otherwise.

A password is never a command-line argument (other users see those in `ps`) nor an environment
variable (inherited by every child and often logged). When standard input is not a terminal,
as in a script or a test, each answer is read as one line from it:
`printf '%s\n' "$PASSWORD" | labgate login https://server`. Prompts and notes go to stderr.
"""

from __future__ import annotations

import getpass
import sys

from labgate.login.errors import LoginError, PasswordRefused


class TerminalPrompts:
    def password(self, prompt: str) -> str:
        if sys.stdin.isatty():
            return getpass.getpass(prompt)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
        sys.stderr.write("\n")
        if not line:
            raise LoginError("no password on standard input (it is not a terminal, and at its end)")
        return line.rstrip("\r\n")

    def new_password(self) -> str:
        first = self.password("new password: ")
        if not first:
            raise PasswordRefused("the new password is empty")
        if self.password("new password again: ") != first:
            raise PasswordRefused("the two new passwords differ")
        return first

    def say(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
