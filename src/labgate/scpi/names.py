"""Command names: SCPI long and short forms, folded to one canonical name.

SCPI writes a mnemonic with its short form in capitals: `ACCess` is accepted as `ACC` or `ACCESS`,
in any case. A name is one or more mnemonics joined by ':' (a sub-system path, `FILE:READ?`), the
last one optionally ending in a suffix: `?` (query), `=` / `*` (the CONF setters), `+` (SUBS+).
The canonical name is the long form in capitals (`ACC?` -> `ACCESS?`, `DRAW?` -> `DRAWER?`).

Only spellings listed here are folded. Names qslib writes in camel case (`AbortRun`,
`TBC:SampleTemperatures?`) or that we only ever saw whole (`POW?`, `ENG?`) are listed as literals:
inventing short forms for them would make names mean something nobody observed. An unknown name
folds to its own capitals, which no table lists, so a policy treats it as unknown.
"""

import itertools
import re

# Mnemonics in SCPI notation: capitals = short form, the whole word = long form.
_SCPI = (
    "ACCess",
    "ACCess?",
    "DRAWer?",
    "COVerDOWN",
    "RUNTitle?",
    "PROTocol",
    "PROTocol?",
    "PAUSe",
    "RESume",
    "LED:STATus?",
    "SYSTem:EXEC",
    "SYSTem:SETT:NICK?",
    "CONFig?",
    "CONFig=",
    "CONFig*",
)

# Names accepted only as written (any case).
_LITERAL = (
    "CHAL?",
    "AUTH",
    "QUIT",
    "HELP?",
    "RET",
    "OPEN",
    "CLOSE",
    "ENG?",
    "POW",
    "POW?",
    "BLOCK",
    "BLOCK?",
    "LST?",
    "ISTAT?",
    "RAND?",
    "RP",
    "AbortRun",
    "StopRun",
    "SUBS+",
    "UNS",
    "eval?",
    "TBC:SampleTemperatures?",
    "TBC:BlockTemperatures?",
    "TBC:CoverTemperatures?",
    "TBC:SETT?",
    "TBC:CONT?",
    "TBC:ControlZones?",
    "LED:LEDTemperature?",
    "LED:LightOFF",
    "FILE:LIST?",
    "FILE:READ?",
    "FILE:ZIPREAD?",
    "FILE:WRITE",
    "FILE:REMOVE",
    "FILE:MOVE",
)

# The experiment sub-system's commands, canonically `EXP:`; `EXPeriment:` is accepted too.
_EXPERIMENT = (
    "EXP:LIST?",
    "EXP:READ?",
    "EXP:ZIPREAD?",
    "EXP:NEW",
    "EXP:DELETE",
    "EXP:ZIPWRITE",
    "EXP:RUN",
    "EXP:ATTR=",
)

# The status LED's per-colour verbs, as qslib's StatusLedSet writes them (`LED:GREENBLINK`).
LED_COLOURS = ("RED", "GREEN", "BLUE", "YELLOW", "CYAN", "MAGENTA", "WHITE")
LED_VERBS = tuple(
    f"LED:{colour}{mode}" for colour in LED_COLOURS for mode in ("ON", "OFF", "BLINK")
)

_MNEMONIC = re.compile(r"([A-Z0-9]*)([a-z0-9]*)([A-Z0-9]*)([?=*+]?)")


def _scpi_forms(part: str) -> tuple[str, str]:
    """Short and long form of one mnemonic: `ACCess?` -> (`ACC?`, `ACCESS?`)."""
    match = _MNEMONIC.fullmatch(part)
    if match is None or not match.group(1):
        raise ValueError(f"not an SCPI mnemonic: {part!r}")
    head, tail, rest, suffix = match.groups()
    return head + rest + suffix, (head + tail + rest).upper() + suffix


def _build() -> dict[str, str]:
    forms: dict[str, str] = {}
    for name in _SCPI:
        parts = [_scpi_forms(part) for part in name.split(":")]
        canonical_name = ":".join(long for _, long in parts)
        for spelling in itertools.product(*parts):
            forms[":".join(spelling).upper()] = canonical_name
    for name in (*_LITERAL, *LED_VERBS):
        forms[name.upper()] = name.upper()
    # The experiment sub-system: qslib writes `EXP:` for most calls but `experiment:LIST?` when it
    # lists runs (Machine.list_runs_in_storage), so the long form folds to the same `EXP:` names.
    for name in _EXPERIMENT:
        forms[name] = name
        forms["EXPERIMENT:" + name.removeprefix("EXP:")] = name
    return forms


_FORMS = _build()

KNOWN: frozenset[str] = frozenset(_FORMS.values())
"""Every canonical name this module knows."""


def canonical(name: str) -> str:
    """The one name for every spelling: `acc`, `ACCess` -> `ACCESS`; unknown names -> capitals."""
    upper = _fold(name)
    return _FORMS.get(upper, upper)


def is_known(name: str) -> bool:
    """Whether `name` is a spelling of a command this module knows."""
    return _fold(name) in _FORMS


def _fold(name: str) -> str:
    # Fold ASCII only: str.upper() maps some non-ASCII letters to ASCII ones ('ﬁle' -> 'FILE'),
    # which would make a name the instrument does not know look like one we do.
    return name.upper() if name.isascii() else name
