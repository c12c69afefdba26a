"""Substitutions inside a token, parsed into a tree so that every nested command can be checked.

The instrument rewrites three constructs before it runs a command:

- `$(COMMAND args)`: runs COMMAND and puts its reply body in its place;
- `${Var}` / `${Var:-default}`: a variable, or `default` (itself substituted) when unset;
- `$[ expression ]`: evaluates a Python expression on the instrument (its contents are
  substituted first: qslib's run_status() builds one from `${RunMacro}` and `${Stage}`).

`parse(token)` returns the nodes of a token in order; joining their `source` gives the token back
exactly. Every `$(`, `${` and `$[` found anywhere in the text starts a node, inside double quotes
too: a checker that misses a construct the instrument would run is a hole, one that sees too much
only refuses a command. A construct's end is found by counting only its own kind of bracket
(`values.group_end`); an unclosed one raises `ParseError`.
"""

import re
from dataclasses import dataclass

from labgate.scpi import values
from labgate.scpi.errors import ParseError

# Deepest nesting parsed. qslib nests two levels (`$[ "$(ENG?)" ... ]`); the bound keeps a
# hostile `$($($(...)))` from exhausting Python's recursion limit.
MAX_NESTING = 16

_START = re.compile(r"\$[(\[{]")
# qslib's variables are words (`RunTitle`, `Stage`); anything else in a name (`${$(X)}`) is
# refused rather than guessed at.
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    """Literal text between substitutions."""

    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSub:
    """`$(name options args)`: a nested command; `nodes` are the substitutions inside it."""

    source: str
    name: str
    options: tuple[tuple[str, str], ...]
    args: tuple[str, ...]
    nodes: tuple["Node", ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class VarSub:
    """`${name}` or `${name:-default}`; `default` is None when no default is given."""

    source: str
    name: str
    default: tuple["Node", ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExprSub:
    """`$[ expression ]`: Python run on the instrument. `source` is the whole `$[ ... ]`."""

    source: str
    expression: str
    nodes: tuple["Node", ...]


Node = Text | CommandSub | VarSub | ExprSub


def parse(token: str) -> tuple[Node, ...]:
    """The nodes of `token`, in order (see the module doc)."""
    return _parse(token, 0)


def walk(nodes: tuple[Node, ...]) -> list[Node]:
    """Every node, nested ones included, outermost first."""
    found: list[Node] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, CommandSub | ExprSub):
            stack.extend(reversed(node.nodes))
        elif isinstance(node, VarSub) and node.default is not None:
            stack.extend(reversed(node.default))
    return found


def _parse(text: str, depth: int) -> tuple[Node, ...]:
    if depth > MAX_NESTING:
        raise ParseError(f"substitutions nest deeper than {MAX_NESTING}: {text[:60]!r}")
    nodes: list[Node] = []
    pos = 0
    for start in _starts(text):
        if start < pos:
            continue  # inside a construct already taken whole
        if start > pos:
            nodes.append(Text(source=text[pos:start]))
        end = values.group_end(text, start)
        nodes.append(_construct(text[start:end], depth))
        pos = end
    if pos < len(text):
        nodes.append(Text(source=text[pos:]))
    return tuple(nodes)


def _starts(text: str) -> list[int]:
    return [match.start() for match in _START.finditer(text)]


def _construct(source: str, depth: int) -> Node:
    kind, inner = source[1], source[2:-1]
    if kind == "(":
        return _command(source, inner, depth)
    if kind == "{":
        name, sep, default = inner.partition(":-")
        if not _VAR_NAME.fullmatch(name):
            raise ParseError(f"variable {source[:60]!r}: {name[:40]!r} is not a variable name")
        return VarSub(source=source, name=name, default=_parse(default, depth + 1) if sep else None)
    return ExprSub(source=source, expression=inner, nodes=_parse(inner, depth + 1))


def _command(source: str, inner: str, depth: int) -> CommandSub:
    tokens = values.split(inner)
    if not tokens:
        raise ParseError(f"command substitution {source!r} names no command")
    options, args = values.split_options(tokens[1:])
    return CommandSub(
        source=source,
        name=tokens[0],
        options=options,
        args=args,
        nodes=_parse(inner, depth + 1),
    )
