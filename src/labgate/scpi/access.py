"""Access levels and the level each command needs: the instrument's rules and labgate's.

What LABGATE refuses below Full, and why:

- `SYST:*` (a shell), `eval?` and any `$[ ... ]` but qslib's fixed ones (Python on the
  instrument), and `CONF*` (reads and writes the instrument's passwords): each is root.
- `RAND?`: the instrument mints a 6-digit key, valid 10 minutes, that gives Administrator
  through `AUTH`. Minting instrument credentials is above any grant labgate hands out.
- A name the instrument splices into Python, commands or file names that is not a safe name:
  the protocol name and options of `PROTOCOL`, the arguments and options of `RP`, the names
  `EXP:NEW`, `EXP:RUN` and `EXP:ATTR=` take. qslib's fixed `run_status()` expression is Python
  built from `${RunMacro}` (the protocol's name), so whoever names a protocol would write code
  that runs for every Observer (see `arguments`). Likewise a `PROTOCOL` body with a line qslib
  never writes (another command, `SET -variable=` anything but a plain value): the instrument
  runs those lines later, on its own authority (see `protocols`).
- A file path that leaves the instrument's file namespaces (`FILE:*`, `EXP:*`): absolute, with
  a `..` segment, a backslash, a quote, a control character or a `$` substitution the gateway
  cannot know, or outside `arguments.NAMESPACES`; else an Observer reads the instrument's whole
  disk. The one substitution passed is qslib's own `FILE:WRITE ${LogFolder}/tcprotocol.xml`
  (and `qsl-tcprotocol.xml`).
- A `;` in any argument or option value, or, outside a tag, any character a common line
  splitter may break at (see `arguments.LINE_BREAKS`): the firmware's parser is not known, and
  either may end one command and start another there.
- Every command it does not know, and any text whose substitutions it cannot parse: nobody can
  say what the instrument would run.

The instrument knows five levels, in this order; a session at one level may do everything the
levels below it may. Two tables say which level each command needs:

- `INSTRUMENT`: what the machine itself enforces (it drives the simulator). Its weakness is the
  reason labgate exists: `SYST:EXEC` (a shell), `eval?` (Python) and `$[ ... ]` (Python inside any
  argument) are reachable at Controller, so Controller is root.
- `LABGATE`: the gateway's policy. The same, except for the refusals listed above.

`check()` judges a whole command: its own name, and every nested `$( ... )` and `$[ ... ]` found
anywhere in it (name, option values, arguments, body), at any depth. Text it cannot parse is
judged at the table's `unparsable` level, since nobody can say what the instrument would run.
Under a table with an `unsafe_argument` level (LABGATE's is Full), the names and paths that
`arguments` judges are checked too, in the command itself and in every nested one.
"""

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from labgate.scpi import arguments, names, sensitive, substitution
from labgate.scpi.errors import ParseError
from labgate.scpi.messages import Command


class AccessLevel(IntEnum):
    """Guest < Observer < Controller < Administrator < Full."""

    GUEST = 0
    OBSERVER = 1
    CONTROLLER = 2
    ADMINISTRATOR = 3
    FULL = 4

    @classmethod
    def parse(cls, text: str) -> "AccessLevel":
        """`"observer"`, `"OBSERVER"`, `"Observer"` -> OBSERVER; ValueError naming the text."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            labels = ", ".join(level.label for level in cls)
            raise ValueError(f"unknown access level {text!r}; expected one of {labels}") from None

    @property
    def label(self) -> str:
        """The instrument's spelling: `Observer`."""
        return self.name.capitalize()


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed:
    """The command may run; `required` is the highest level any part of it needed. `sets_level`:
    the level the session takes once the instrument says OK (an ACC it is sent)."""

    required: AccessLevel
    sets_level: AccessLevel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """The command may not run: `command` is the part that needed `required`, `reason` says why.

    `refusal` is the error class the client is answered with: `InsufficientAccess` when a higher
    level would pass it, `InvocationError` when no level does (a session-state command nested),
    `AccessLevelExceeded` for an ACC above the grant."""

    required: AccessLevel
    command: str
    reason: str
    refusal: str = "InsufficientAccess"


Decision = Allowed | Denied

GUEST, OBSERVER, CONTROLLER, ADMINISTRATOR, FULL = AccessLevel

# The expressions qslib 0.15.3 sends itself, byte for byte (machine_status() and run_status()).
# Only these pass labgate. They still reach the instrument's Python, and the run_status() ones
# splice the variables ${RunMacro} and ${Stage} into its source text.
FIXED_EXPRESSIONS: frozenset[str] = frozenset(
    {
        '$[ "$(ENG?)" or "unknown" ]',
        "$[ top.getChild('PROTOcolDEFinition').variables.get('${RunMacro}-Stages'.lower(), -1) ]",
        "$[ top.getChild('PROTOcolDEFinition').variables.get("
        "'${RunMacro}-Stage${Stage}-Count'.lower(), -1) ]",
    }
)

# Every command either side knows, by canonical name (see `names`): (instrument, labgate).
# Where the two differ is where labgate closes a hole.
# fmt: off
_LEVELS: dict[str, tuple[AccessLevel, AccessLevel]] = {
    # canonical name         (instrument,    labgate)
    # session: reachable before any password
    "CHAL?":                   (GUEST,         GUEST),
    "AUTH":                    (GUEST,         GUEST),
    "ACCESS":                  (GUEST,         GUEST),
    "ACCESS?":                 (GUEST,         GUEST),
    "QUIT":                    (GUEST,         GUEST),
    # queries
    "HELP?":                   (OBSERVER,      OBSERVER),
    "RET":                     (OBSERVER,      OBSERVER),
    "DRAWER?":                 (OBSERVER,      OBSERVER),
    "ENG?":                    (OBSERVER,      OBSERVER),
    "POW?":                    (OBSERVER,      OBSERVER),
    "BLOCK?":                  (OBSERVER,      OBSERVER),
    "LST?":                    (OBSERVER,      OBSERVER),
    "ISTAT?":                  (OBSERVER,      OBSERVER),
    "RUNTITLE?":               (OBSERVER,      OBSERVER),
    "PROTOCOL?":               (OBSERVER,      OBSERVER),
    "TBC:SAMPLETEMPERATURES?": (OBSERVER,      OBSERVER),
    "TBC:BLOCKTEMPERATURES?":  (OBSERVER,      OBSERVER),
    "TBC:COVERTEMPERATURES?":  (OBSERVER,      OBSERVER),
    "TBC:SETT?":               (OBSERVER,      OBSERVER),
    "TBC:CONT?":               (OBSERVER,      OBSERVER),
    "TBC:CONTROLZONES?":       (OBSERVER,      OBSERVER),
    "LED:STATUS?":             (OBSERVER,      OBSERVER),
    "LED:LEDTEMPERATURE?":     (OBSERVER,      OBSERVER),
    "FILE:LIST?":              (OBSERVER,      OBSERVER),
    "FILE:READ?":              (OBSERVER,      OBSERVER),
    "FILE:ZIPREAD?":           (OBSERVER,      OBSERVER),
    "EXP:LIST?":               (OBSERVER,      OBSERVER),
    "EXP:READ?":               (OBSERVER,      OBSERVER),
    "EXP:ZIPREAD?":            (OBSERVER,      OBSERVER),
    "SUBS+":                   (OBSERVER,      OBSERVER),
    "UNS":                     (OBSERVER,      OBSERVER),
    # the machine: drawer, cover, power, lamp, runs, protocols, files, experiments
    "OPEN":                    (CONTROLLER,    CONTROLLER),
    "CLOSE":                   (CONTROLLER,    CONTROLLER),
    "COVERDOWN":               (CONTROLLER,    CONTROLLER),
    "POW":                     (CONTROLLER,    CONTROLLER),
    "BLOCK":                   (CONTROLLER,    CONTROLLER),
    "LED:LIGHTOFF":            (CONTROLLER,    CONTROLLER),
    **{verb: (CONTROLLER, CONTROLLER) for verb in names.LED_VERBS},
    "RP":                      (CONTROLLER,    CONTROLLER),
    "ABORTRUN":                (CONTROLLER,    CONTROLLER),
    "STOPRUN":                 (CONTROLLER,    CONTROLLER),
    "PAUSE":                   (CONTROLLER,    CONTROLLER),
    "RESUME":                  (CONTROLLER,    CONTROLLER),
    "PROTOCOL":                (CONTROLLER,    CONTROLLER),
    "FILE:WRITE":              (CONTROLLER,    CONTROLLER),
    "FILE:REMOVE":             (CONTROLLER,    CONTROLLER),
    "FILE:MOVE":               (CONTROLLER,    CONTROLLER),
    "EXP:NEW":                 (CONTROLLER,    CONTROLLER),
    "EXP:DELETE":              (CONTROLLER,    CONTROLLER),
    "EXP:ZIPWRITE":            (CONTROLLER,    CONTROLLER),
    "EXP:RUN":                 (CONTROLLER,    CONTROLLER),
    "EXP:ATTR=":               (CONTROLLER,    CONTROLLER),
    # the holes: a shell, Python, the system and its configuration (passwords included)
    "SYSTEM:EXEC":             (CONTROLLER,    FULL),
    "SYSTEM:SETT:NICK?":       (OBSERVER,      FULL),
    "EVAL?":                   (CONTROLLER,    FULL),
    "CONFIG?":                 (ADMINISTRATOR, FULL),  # reads passwords; instrument: a guess
    "CONFIG=":                 (ADMINISTRATOR, FULL),  # writes access; instrument: a guess
    "CONFIG*":                 (ADMINISTRATOR, FULL),
    # a 6-digit key, valid 10 minutes, that AUTH turns into Administrator (qslib's
    # generate_random_key(): "Requires Controller"); minting credentials is above any grant
    "RAND?":                   (CONTROLLER,    FULL),
}
# fmt: on


# eq=False: a table is compared and hashed by identity (it is part of a judge's cache key).
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CommandTable:
    """The level each command needs, under one authority."""

    name: str
    levels: Mapping[str, AccessLevel]
    """Canonical command name -> level."""
    families: tuple[tuple[str, AccessLevel], ...]
    """For names not in `levels`: (fnmatch pattern over canonical names, level); first match."""
    unknown: AccessLevel
    """Any other command."""
    fixed_expression: AccessLevel
    """A `$[ ... ]` that is one of FIXED_EXPRESSIONS."""
    other_expression: AccessLevel
    """Any other `$[ ... ]`."""
    unparsable: AccessLevel
    """A command whose substitutions cannot be parsed (an unclosed `$(`, say)."""
    unsafe_argument: AccessLevel | None = None
    """A name the instrument would splice into code or a path that `arguments` refuses; None:
    arguments are not judged."""
    holder_keeps_state: bool = False
    """Whoever holds the session keeps its state (see `sensitive`): a command that could be a
    session-state one is refused nested, at every level, and so is a nested command whose name is
    not written out plainly; at the top, a name that could be one but is no spelling of it."""

    def level_of(self, name: str) -> AccessLevel:
        """The level the command called `name` (any spelling) needs by itself."""
        canonical = names.canonical(name)
        level = self.levels.get(canonical)
        if level is not None:
            return level
        for pattern, family_level in self.families:
            if fnmatch.fnmatchcase(canonical, pattern):
                return family_level
        return self.unknown


INSTRUMENT = CommandTable(
    name="instrument",
    levels=MappingProxyType({name: pair[0] for name, pair in _LEVELS.items()}),
    # What the machine does with names we have not listed (a guess: other queries are
    # Observer, other verbs of the machine's sub-systems Controller).
    families=(
        ("SYSTEM:*", CONTROLLER),
        ("*?", OBSERVER),
        ("LED:*", CONTROLLER),
        ("TBC:*", CONTROLLER),
        ("FILE:*", CONTROLLER),
        ("EXP:*", CONTROLLER),
    ),
    unknown=OBSERVER,
    # qslib's status calls run these at Observer on the machine; any other expression needs
    # Controller, which is the hole: Controller runs arbitrary Python.
    fixed_expression=OBSERVER,
    other_expression=CONTROLLER,
    unparsable=OBSERVER,
)

LABGATE = CommandTable(
    name="labgate",
    levels=MappingProxyType({name: pair[1] for name, pair in _LEVELS.items()}),
    families=(("SYSTEM:*", FULL), ("CONFIG*", FULL)),
    unknown=FULL,
    fixed_expression=OBSERVER,
    other_expression=FULL,
    unparsable=FULL,
    unsafe_argument=FULL,
    holder_keeps_state=True,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Need:
    level: AccessLevel | None  # None: no level passes it
    part: str
    reason: str


def check(command: Command, level: AccessLevel, table: CommandTable) -> Decision:
    """May a session at `level` run `command` under `table`? Every nested part is judged."""
    needs = list(_needs(command, table))
    never = next((need for need in needs if need.level is None), None)
    if never is not None:
        return Denied(
            required=AccessLevel.FULL,
            command=never.part,
            reason=f"{never.reason} ({table.name} policy)",
            refusal="InvocationError",
        )
    highest = max(needs, key=_level)
    if _level(highest) > level:
        return Denied(
            required=_level(highest),
            command=highest.part,
            reason=f"{highest.reason}; the session has {level.label} ({table.name} policy)",
        )
    return Allowed(required=_level(highest))


def required_level(command: Command, table: CommandTable) -> AccessLevel:
    """The highest level any part of `command` needs under `table` (Full where none passes)."""
    return max(_level(need) for need in _needs(command, table))


def _level(need: _Need) -> AccessLevel:
    return AccessLevel.FULL if need.level is None else need.level


def _needs(command: Command, table: CommandTable) -> Iterator[_Need]:
    yield _own_need(command.name, table, nested_in=None)
    body = None if command.body is None else command.body.content
    calls: list[_Call] = [(command.canonical, command.options, command.args, body)]
    try:
        nodes = [node for text in _texts(command) for node in substitution.parse(text)]
    except ParseError as exc:
        yield _Need(
            level=table.unparsable,
            part=command.canonical,
            reason=f"its substitutions cannot be parsed ({exc}), so it needs "
            f"{table.unparsable.label}",
        )
        if table.holder_keeps_state:
            yield from _hidden_state_needs(command)
        nodes = []
    yield from _substitution_needs(nodes, table, calls)
    # Arguments last: where a nested command needs as much, naming that command says more.
    for call in calls:
        yield from _unsafe(*call, table)


def _own_need(name: str, table: CommandTable, *, nested_in: str | None) -> _Need:
    """What the command called `name` (as written) needs by itself: one rule for a command at
    the top and for one nested in `nested_in` (the source of its substitution) alike."""
    canonical = names.canonical(name)
    runs = canonical if nested_in is None else f"nested {_short(nested_in)} runs {canonical}"
    if table.holder_keeps_state:
        if not sensitive.plain_name(name):
            where = "the" if nested_in is None else f"nested {_short(nested_in)}: its"
            return _Need(
                level=None,
                part=_short(name),
                reason=f"{where} command name {_short(name)!r} is not written out "
                "plainly (a substitution, a quote, a leading ':' or a control character); the "
                "instrument may read it as any command, one that changes the connection's state "
                "included",
            )
        if sensitive.is_session_state(name):
            if nested_in is not None:
                return _Need(
                    level=None,
                    part=canonical,
                    reason=f"{runs}, which acts on the connection's own state (login, level, "
                    "subscriptions, its end); that is the session holder's alone, so it is "
                    "never forwarded nested",
                )
            if canonical not in sensitive.SESSION_STATE:
                return _Need(
                    level=None,
                    part=canonical,
                    reason=f"{_short(name)!r} could be a spelling of a command that acts on the "
                    "connection's own state, but it is none that the gateway knows",
                )
    level = table.level_of(name)
    return _Need(
        level=level,
        part=canonical,
        reason=f"{runs}, which needs {level.label}"
        if nested_in is not None
        else f"{canonical} needs {level.label}",
    )


def _hidden_state_needs(command: Command) -> Iterator[_Need]:
    """For text whose substitutions do not parse: every `$(` found by a plain scan, so that a
    session-state command cannot hide behind an unclosed bracket."""
    for text in _texts(command):
        for name in sensitive.nested_names(text):
            if not sensitive.plain_name(name) or sensitive.is_session_state(name):
                yield _Need(
                    level=None,
                    part=command.canonical,
                    reason=f"its substitutions cannot be parsed, and a `$(` in them names "
                    f"{_short(name)!r}, which may act on the connection's own state",
                )
                return


_Call = tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], str | None]
"""A command as the argument rules see it: canonical name, options, arguments, body."""


def _substitution_needs(
    nodes: list[substitution.Node], table: CommandTable, calls: list[_Call]
) -> Iterator[_Need]:
    """What every nested command and expression needs; nested commands are added to `calls`."""
    for node in substitution.walk(tuple(nodes)):
        if isinstance(node, substitution.CommandSub):
            yield _own_need(node.name, table, nested_in=node.source)
            calls.append((names.canonical(node.name), node.options, node.args, None))
        elif isinstance(node, substitution.ExprSub):
            if node.source in FIXED_EXPRESSIONS:
                yield _Need(
                    level=table.fixed_expression,
                    part=_short(node.source),
                    reason=f"qslib's fixed expression needs {table.fixed_expression.label}",
                )
            else:
                yield _Need(
                    level=table.other_expression,
                    part=_short(node.source),
                    reason=f"expression {_short(node.source)} runs Python on the instrument and "
                    f"is not one of qslib's fixed expressions; it needs "
                    f"{table.other_expression.label}",
                )


def _unsafe(
    name: str,
    options: tuple[tuple[str, str], ...],
    args: tuple[str, ...],
    body: str | None,
    table: CommandTable,
) -> Iterator[_Need]:
    if table.unsafe_argument is None:
        return
    for unsafe in arguments.judge(name, options, args, body):
        yield _Need(
            level=table.unsafe_argument,
            part=unsafe.command,
            reason=f"{unsafe.reason}; it needs {table.unsafe_argument.label}",
        )


def _texts(command: Command) -> Iterator[str]:
    """Every piece of a command the instrument may substitute in."""
    yield command.name
    for _, value in command.options:
        yield value
    yield from command.args
    if command.body is not None:
        yield command.body.content


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
