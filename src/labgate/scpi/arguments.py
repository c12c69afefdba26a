"""Arguments the instrument turns into code and file paths: what labgate passes below Full.

Theory of operation
-------------------
Checking command names and substitutions is not enough: some arguments are data that the
instrument later splices into text it runs.

qslib's `run_status()` sends, as one of its fixed expressions,

    $[ top.getChild('PROTOcolDEFinition').variables.get('${RunMacro}-Stages'.lower(), -1) ]

and the instrument substitutes `${RunMacro}` into that Python source before it evaluates it.
`RunMacro` is the name of the protocol the current run uses (the simulator models it so), and
the expression is sent at Observer by every client that asks how a run is going. So whoever names
a protocol writes Python that later runs for everyone: a protocol called
`x'+__import__('os').system('...')+'` turns qslib's own status call into a shell. The same holds
for the run's title (`${RunTitle}`, which qslib splices into `AbortRun ${RunTitle}` and into
folder and file names), and for the options `PROTOCOL` and `RP` store as variables
(`${SampleVolume}`, `${RunMode}`).

Read from qslib 0.15.3's source, these are the commands that set such names:

- `PROTOCOL [-volume=V] [-runmode=M] NAME <multiline.protocol>...`: NAME becomes `${Protocol}`
  and, once a run uses it, `${RunMacro}`; the options become `${SampleVolume}`, `${RunMode}`.
- `RP [-samplevolume=V] [-runmode=M] PROTOCOL TITLE`: starts a run; TITLE becomes `${RunTitle}`.
- `EXP:NEW TITLE TEMPLATE`: the run's folder (`experiments:TITLE/`).
- `EXP:RUN -asynchronous <block> zip "TITLE.eds" "TITLE" </block>` (qslib's `compile_eds`).
- `EXP:ATTR= "TITLE" collected True`.

`PROT? NAME` reads a stored protocol by name (perhaps a file), so its NAME is held to the same
rule; qslib asks `PROT? ${Protocol}`, a variable only a judged `PROTOCOL` or `RP` set, and that
one token passes as it is.

labgate passes these below Full only when every such argument (and every option value) is a
safe name: 1 to `MAX_NAME` characters of `A-Z a-z 0-9 _ . + -`, the first one a letter, digit
or `_`, written bare or in double quotes. No quote can close the string literal the name lands
in, no backslash can escape it, no `$` can make the instrument substitute something labgate
never saw (a `$(...)` reply or a variable), no whitespace can split it into two tokens, and no
leading `.` or `-` can make it `..` or an option. Anything else needs Full, and the decision names
the argument. Names qslib makes itself pass: `Prot_2026-11-23T05-29-40` (its default protocol
name), run names with spaces turned into `_` (`runtitle_safe`), volumes such as `50` or `25.5`.

The protocol body is itself commands the instrument runs later, among them `SET -variable=value`
(qslib's pre-run cover temperature): `protocols` says what a body may hold. Names that were
stored before the gateway saw them (a protocol made on the touch screen) are beyond its reach.

Paths
-----
`FILE:READ?`, `FILE:LIST?`, `FILE:ZIPREAD?`, `FILE:WRITE`, `FILE:REMOVE`, `FILE:MOVE` take
instrument paths, `context:relative/path` (`public_run_complete:run.eds`); the `EXP:` commands
take paths relative to the experiments folder (`run/apldbio/sds/...`). The instrument's Observer
level would otherwise read anything on its disk. Below Full labgate passes a path only when,
quotes removed, it

- is relative: no leading `/` or `~`, neither before nor after the context;
- has no `..` segment, and no glob segment that starts with `.` (`.*`, `.?`): a glob matches `..`
  only through a pattern that starts with a literal `.`, as POSIX and Python globs treat dots;
- holds no backslash, quote, control character (NUL included) or `$`: the gateway cannot know
  what a `${...}` or `$(...)` will be when the instrument fills it in, and a quote or backslash
  would be read one way here and maybe another there;
- names one context (a second `:` is read differently by different parsers) and, for `FILE:`
  commands, one of `NAMESPACES`, written as `context:` or as the first folder
  (`public_run_complete/x.bin`): without one, a path is relative to a folder nobody named.
  `EXP:` paths name no context at all.

What qslib itself sends passes: `public_run_complete:*eds`, `public_run_complete:`,
`experiments:RUN/`, `"experiments:RUN.eds"`, `RUN/apldbio/sds/filter/*_filterdata.xml`, and,
the one substitution, `FILE:WRITE` of exactly `LOG_FOLDER_FILES` (qslib's `change_protocol`
rewrites the running protocol's files in `${LogFolder}`). Exactly those two: were `${LogFolder}`
unset, the instrument would read `/tcprotocol.xml`, so no path of the writer's choosing may follow.
Option values of these commands (`-encoding=base64`) must be safe names; `-verbose` is a flag.
A `FILE:` command with no path at all needs Full too (`EXP:LIST?` alone lists the runs).

Archives
--------
`EXP:ZIPWRITE FOLDER <message>BASE64</message>` (qslib's `Experiment.run`) makes the instrument
unpack a zip into `experiments:FOLDER/`: each member's name is a path too. `archive` reads the
archive from the relayed bytes (every local header and the central directory, which must agree,
each member really inflated under a cap) and every member name must pass `member_problem`: the
rules above for an `EXP:` path, on the name exactly as stored. `FILE:ZIPWRITE`, the `FILE:` twin
that `FILE:ZIPREAD?` suggests, is judged the same way should it ever be granted below Full.

Separators
----------
SCPI lets one line carry several commands separated by `;` (IEEE 488.2). Whether the
instrument's parser does so is not known; if it does, `DRAW? ;SYST:EXEC ...` would be judged as a
query and run a shell. So below Full no argument or option value of any command may hold a `;`,
quoted or not (a quote is read one way here and maybe another there). qslib never sends one.
Likewise for line breaks other than b"\\n" (which the framing already ends a message at, outside
tags): every character in `LINE_BREAKS`, outside a tag, needs Full. Tags carry multi-line text
(files, protocols) by design, and a protocol body's lines are judged by `protocols`.
"""

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from labgate.scpi import archive, protocols, values
from labgate.scpi.errors import ParseError

# A name becomes a folder (`TITLE/`) and a file (`TITLE.eds`): 128 leaves room for the
# instrument's suffixes under the usual 255-byte file name limit and is plenty for a title.
MAX_NAME = 128
SAFE_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.+-]{{0,{MAX_NAME - 1}}}")
_SAFE_CHAR = re.compile(r"[A-Za-z0-9_.+-]")
# A bare word after a dash carries no value (`-asynchronous`, `-verbose`): a flag, not a name.
_FLAG = re.compile(r"-[A-Za-z][A-Za-z0-9_]*")
# The one thing qslib's compile_eds() asks EXP:RUN to run inside its block.
_EXP_RUN_VERBS = frozenset({"zip"})

# The instrument's file namespaces a session below Full may name: the two qslib uses and the two
# more the simulator models after the real machine.
NAMESPACES = frozenset({"public_run_complete", "experiments", "protocols", "calibrations"})
# qslib's change_protocol() rewrites these in the running experiment's folder.
LOG_FOLDER_FILES = frozenset({"${LogFolder}/tcprotocol.xml", "${LogFolder}/qsl-tcprotocol.xml"})
_LIST_FLAGS = frozenset({"-verbose"})
# What qslib's get_running_protocol() asks PROT? for.
_RUNNING_PROTOCOL = "${Protocol}"
_GLOB_MAGIC = re.compile(r"[*?\[]")
# Every character a common line splitter may end a line at: C's getline (b"\n", and a "\r" that
# many strip), Java's readLine ("\r"), Python's str.splitlines (all of these), and NUL, where a
# C string ends. The firmware's parser is not known; outside tags, below Full, none may occur.
LINE_BREAKS = {
    "\n": "a line feed",
    "\r": "a carriage return",
    "\x0b": "a vertical tab",
    "\x0c": "a form feed",
    "\x1c": "a file separator",
    "\x1d": "a group separator",
    "\x1e": "a record separator",
    "\x85": "a next-line character (NEL)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
    "\x00": "a NUL, where a C string ends",
}
_LINE_BREAK = re.compile("[" + "".join(LINE_BREAKS) + "]")
_NEVER_IN_PATHS = ("\\", "$", '"', "'")
# Read as quotes or tags by `values.unquote`, which a member name, stored as is, never goes through.
_NEVER_IN_MEMBERS = ('"', "'", "<", ">")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsafe:
    """An argument labgate passes only at Full: `command` (canonical), which `argument`, why."""

    command: str
    argument: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Parts:
    command: str
    options: tuple[tuple[str, str], ...]
    args: tuple[str, ...]
    body: str | None


def judge(
    command: str,
    options: tuple[tuple[str, str], ...],
    args: tuple[str, ...],
    body: str | None = None,
) -> Iterator[Unsafe]:
    """Every argument of the command called `command` (canonical) that needs Full, and why."""
    yield from _separators(command, options, args)
    rule = _RULES.get(command)
    if rule is not None:
        yield from rule(_Parts(command=command, options=options, args=args, body=body))
    # Last: where a rule of the command's own finds a control character, its reason says more.
    yield from _line_breaks(command, options, args)


def _separators(
    command: str, options: tuple[tuple[str, str], ...], args: tuple[str, ...]
) -> Iterator[Unsafe]:
    tokens = [(f"option -{key}", value) for key, value in options]
    tokens += [(f"argument {index}", token) for index, token in enumerate(args, 1)]
    for argument, token in tokens:
        if ";" in token:
            yield Unsafe(
                command=command,
                argument=argument,
                reason=f"{command}'s {argument} {_show(token)} holds ';', which may end one "
                "command and start another on the instrument",
            )


def _line_breaks(
    command: str, options: tuple[tuple[str, str], ...], args: tuple[str, ...]
) -> Iterator[Unsafe]:
    tokens = [(f"option -{key}", value) for key, value in options]
    tokens += [(f"argument {index}", token) for index, token in enumerate(args, 1)]
    for argument, token in tokens:
        if _LINE_BREAK.search(token) is not None:
            found = _LINE_BREAK.search(_outside_tags(token))
            if found is not None:
                char = found.group(0)
                yield Unsafe(
                    command=command,
                    argument=argument,
                    reason=f"{command}'s {argument} {_show(token)} holds {LINE_BREAKS[char]} "
                    f"({char!r}) outside a tag, which a line splitter (C getline, Python "
                    "splitlines, Java readLine) may take for the end of one command and the "
                    "start of another on the instrument",
                )


def _outside_tags(token: str) -> str:
    """`token` with every whole `<tag>...</tag>` block in it left out."""
    kept: list[str] = []
    pos = 0
    while (lt := token.find("<", pos)) != -1:
        try:
            end = values.tag_block_end(token, lt)
        except ParseError:
            end = lt + 1  # an unmatched tag is text here
        kept.append(token[pos:lt] if end > lt + 1 else token[pos:end])
        pos = end
    kept.append(token[pos:])
    return "".join(kept)


def name_problem(token: str) -> str | None:
    """Why raw `token` is not a safe name, or None when it is one."""
    quoted = len(token) >= 2 and token[0] == token[-1] == '"'
    value = token[1:-1] if quoted else token
    if SAFE_NAME.fullmatch(value):
        return None
    if not value:
        return "is empty"
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long, more than {MAX_NAME}"
    if not _SAFE_CHAR.fullmatch(value[0]) or value[0] in ".+-":
        return f"starts with {value[0]!r}"
    bad = next(char for char in value if not _SAFE_CHAR.fullmatch(char))
    return f"holds {bad!r}"


def path_problem(token: str, *, experiments: bool = False, log_folder: bool = False) -> str | None:
    """Why raw `token` is not a path labgate passes below Full, or None when it is one.

    `experiments`: a path relative to the experiments folder (the `EXP:` commands), which names
    no context. `log_folder`: `LOG_FOLDER_FILES` pass (qslib's `FILE:WRITE`).
    """
    try:
        value = values.unquote(token)
    except ParseError:
        return "cannot be read as one value"
    if log_folder and value in LOG_FOLDER_FILES:
        return None
    # A layer that folds compatibility forms would read 'a\u2025/b' (two-dot leader) as 'a../b'
    # and a fullwidth solidus as '/': judge the folded text too.
    folded = unicodedata.normalize("NFKC", value)
    problem = _form_problem(value, experiments=experiments)
    if problem is None and folded != value:
        problem = _form_problem(folded, experiments=experiments)
        return None if problem is None else f"{problem} once Unicode forms are folded (NFKC)"
    return problem


def member_problem(name: str) -> str | None:
    """Why the archive member `name`, exactly as stored, is not a path the instrument may unpack
    below Full (an `EXP:` path's rules), or None when it is one."""
    found = next((char for char in _NEVER_IN_MEMBERS if char in name), None)
    if found is not None:
        return f"holds {found!r}"
    return path_problem(name, experiments=True)


def _form_problem(value: str, *, experiments: bool) -> str | None:
    control = next((char for char in value if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        return f"holds the control character {control!r}"
    found = next((char for char in _NEVER_IN_PATHS if char in value), None)
    if found is not None:
        return f"holds {found!r}"
    context, colon, inner = value.partition(":") if ":" in value else ("", "", value)
    if ":" in inner:
        return "names more than one context (':')"
    if experiments and colon:
        return "names a context; EXP paths are relative to the experiments folder"
    if inner.startswith(("/", "~")):
        return "is absolute"
    segments = inner.split("/")
    if ".." in segments:
        return "has a '..' segment"
    if any(part.startswith(".") and _GLOB_MAGIC.search(part) for part in segments):
        return "has a glob segment starting with '.', which can match '..'"
    namespace = context if colon else segments[0]
    if not experiments and namespace not in NAMESPACES:
        return f"is outside the file namespaces {', '.join(sorted(NAMESPACES))}"
    return None


# ---- rules per command ------------------------------------------------------------------------


def _names(parts: _Parts, labels: tuple[str, ...], *, flags: bool = False) -> Iterator[Unsafe]:
    """Every option value and every argument (but flags, where `flags`) must be a safe name."""
    for key, value in parts.options:
        yield from _name(parts.command, f"option -{key}", value)
    tokens = [token for token in parts.args if not (flags and _FLAG.fullmatch(token))]
    for index, token in enumerate(tokens):
        label = labels[index] if index < len(labels) else f"argument {index + 1}"
        yield from _name(parts.command, label, token)


def _protocol(parts: _Parts) -> Iterator[Unsafe]:
    yield from _names(parts, ("protocol name",))
    problem = None if parts.body is None else protocols.body_problem(parts.body)
    if problem is not None:
        yield Unsafe(
            command=parts.command,
            argument="body",
            reason=f"{parts.command}'s body {problem}; the instrument runs a protocol's lines "
            "later on its own authority, so each must be one of qslib's protocol steps with "
            "plain values (safe names, numbers)",
        )


def _protocol_query(parts: _Parts) -> Iterator[Unsafe]:
    # qslib's get_running_protocol() asks `PROT? ${Protocol}`: a variable only a PROTOCOL or RP
    # judged here set. Any other name must be safe: it names a stored protocol, perhaps a file.
    others = tuple(arg for arg in parts.args if arg != _RUNNING_PROTOCOL)
    return _names(replace(parts, args=others), ("protocol name",))


def _run_protocol(parts: _Parts) -> Iterator[Unsafe]:
    return _names(parts, ("protocol name", "run title"))


def _new_experiment(parts: _Parts) -> Iterator[Unsafe]:
    return _names(parts, ("run title", "template"))


def _experiment_attribute(parts: _Parts) -> Iterator[Unsafe]:
    return _names(parts, ("run title", "attribute", "value"))


def _run_in_experiment(parts: _Parts) -> Iterator[Unsafe]:
    yield from _names(parts, (), flags=True)  # qslib sends -asynchronous
    if parts.body is None:
        return
    if len(parts.body) > protocols.MAX_BODY:
        yield Unsafe(command=parts.command, argument="block", reason="block is too long")
        return
    try:
        tokens = values.split(parts.body)
    except ParseError as exc:
        yield Unsafe(command=parts.command, argument="block", reason=f"block cannot be read: {exc}")
        return
    if not tokens or tokens[0] not in _EXP_RUN_VERBS:
        verb = repr(tokens[0][:40]) if tokens else "nothing"
        yield Unsafe(
            command=parts.command,
            argument="block",
            reason=f"{parts.command}'s block runs {verb}; only qslib's "
            f"{' or '.join(sorted(_EXP_RUN_VERBS))} of safe names may run there",
        )
        return
    for index, token in enumerate(tokens[1:]):
        yield from _name(parts.command, f"block argument {index + 1}", token)


def _paths(
    parts: _Parts, labels: tuple[str, ...], *, experiments: bool = False, log_folder: bool = False
) -> Iterator[Unsafe]:
    """Option values must be safe names, and every argument but a listing's flag a path."""
    for key, value in parts.options:
        yield from _name(parts.command, f"option -{key}", value)
    listing = parts.command.endswith(":LIST?")
    tokens = [token for token in parts.args if not (listing and token in _LIST_FLAGS)]
    if not tokens and not experiments:
        yield Unsafe(
            command=parts.command,
            argument=labels[0],
            reason=f"{parts.command} names no path, so the instrument would pick a folder "
            "nobody named; a path in one of its file namespaces is needed",
        )
    for index, token in enumerate(tokens):
        label = labels[index] if index < len(labels) else f"path {index + 1}"
        problem = path_problem(token, experiments=experiments, log_folder=log_folder)
        if problem is not None:
            yield Unsafe(
                command=parts.command,
                argument=label,
                reason=f"{parts.command}'s {label} {_show(token)} {problem}; a path must be "
                "relative, in one of the instrument's file namespaces, without '..', "
                "backslashes, quotes, control characters or '$'",
            )


def _file_path(parts: _Parts) -> Iterator[Unsafe]:
    return _paths(parts, ("path",))


def _file_write(parts: _Parts) -> Iterator[Unsafe]:
    return _paths(parts, ("path",), log_folder=True)


def _file_move(parts: _Parts) -> Iterator[Unsafe]:
    return _paths(parts, ("source", "target"))


def _experiment_path(parts: _Parts) -> Iterator[Unsafe]:
    return _paths(parts, ("path",), experiments=True)


def _archive_upload(parts: _Parts) -> Iterator[Unsafe]:
    yield from _paths(parts, ("folder",), experiments=parts.command.startswith("EXP:"))
    if len(parts.args) != 1 or parts.body is None:
        yield Unsafe(
            command=parts.command,
            argument="archive",
            reason=f"{parts.command} takes one folder, then the archive as its body (base64 in "
            "a tag); anything else cannot be judged",
        )
        return
    verdict = archive.inspect_base64(parts.body, member_rule=member_problem)
    if isinstance(verdict, archive.Refused):
        yield Unsafe(
            command=parts.command,
            argument="archive" if verdict.member is None else f"member {_show(verdict.member)}",
            reason=f"{parts.command}'s {verdict}; the instrument unpacks every member into the "
            "folder, so each must be a relative path without '..', backslashes, quotes, control "
            "characters or '$', and the archive must read alike to every unzipper and unpack "
            "within its bounds",
        )


def _name(command: str, argument: str, token: str) -> Iterator[Unsafe]:
    problem = name_problem(token)
    if problem is not None:
        yield Unsafe(
            command=command,
            argument=argument,
            reason=f"{command}'s {argument} {_show(token)} {problem}; the instrument splices it "
            "into Python (${RunMacro}), commands and file names, so it must be a safe name: "
            f"1 to {MAX_NAME} of A-Z a-z 0-9 _ . + -, not starting with . + -, bare or in "
            "double quotes",
        )


def _show(token: str, width: int = 40) -> str:
    return repr(token if len(token) <= width else token[: width - 3] + "...")


_Rule = Callable[[_Parts], Iterator[Unsafe]]

_RULES: dict[str, _Rule] = {
    "PROTOCOL": _protocol,
    "RP": _run_protocol,
    "PROTOCOL?": _protocol_query,
    "EXP:NEW": _new_experiment,
    "EXP:ATTR=": _experiment_attribute,
    "EXP:RUN": _run_in_experiment,
    "FILE:READ?": _file_path,
    "FILE:LIST?": _file_path,
    "FILE:ZIPREAD?": _file_path,
    "FILE:REMOVE": _file_path,
    "FILE:WRITE": _file_write,
    "FILE:MOVE": _file_move,
    "EXP:READ?": _experiment_path,
    "EXP:LIST?": _experiment_path,
    "EXP:ZIPREAD?": _experiment_path,
    "EXP:ZIPWRITE": _archive_upload,
    "FILE:ZIPWRITE": _archive_upload,
    "EXP:DELETE": _experiment_path,
}
