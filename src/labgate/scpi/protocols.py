"""Protocol bodies: the commands a protocol runs later, and what labgate passes below Full.

A `PROTOCOL` command carries its protocol as a body: commands, one a line, nested in tag blocks,
that the instrument runs when a run uses the protocol, on its own authority and long after the
gateway judged the `PROTOCOL` line. qslib 0.15.3 writes exactly these (its Rust serialiser, read
by running it):

    PRERUN <multiline.prerun>
        SET -covertemperature=105
    </multiline.prerun>
    STAGE -repeat=40 4 STAGE_4 <multiline.stage>
        STEP 1 <multiline.step>
            RAMP -increment=-0.5 95 95 95 95 95 95
            HACFILT m1,x1,quant # qslib:default_filters
            HOLDANDCOLLECT -tiff=False -quant=True -pcr=False 30
            EXP -state=HoldAndCollect m1,x1,quant,400,800
            HOLD 30
        </multiline.step>
    </multiline.stage>
    POSTRUN <multiline.postrun> ... </multiline.postrun>

`SET -variable=value` sets an instrument variable, the kind qslib's fixed expressions splice into
Python (`${RunMacro}`) and its file writes into paths (`${LogFolder}`). So below Full a body
passes only when every line is one of `VERBS`, a tag block only ends a line of `BLOCK_VERBS`,
every option value and argument is a plain value (a safe name, a number, or a comma list of
them), and a `#` comment holds only plain words. Anything else (another command, a quote, a `$`,
a label with a space) needs Full.
"""

import re

from labgate.scpi import values
from labgate.scpi.errors import FramingError, ParseError
from labgate.scpi.framing import Decoder, Limits

# Every spelling qslib writes or reads (its classes' SCPI names: `STAGe`, `PRERun`, `HACFILT` /
# `HoldAndCollectFILTer`, `EXP` / `EXPOSURE`), upper-cased.
VERBS = frozenset(
    {
        "PRERUN", "PRER", "POSTRUN", "POSTR", "STAGE", "STAG", "STEP", "RAMP", "HOLD",
        "HACFILT", "HOLDANDCOLLECTFILTER", "HOLDANDCOLLECT", "EXP", "EXPOSURE", "SET",
    }
)  # fmt: skip
# Judging a body walks it once per nesting level in Python, on the gateway's event loop. qslib's
# protocols are a few KiB (a 40-cycle qPCR with a melt curve is under 2 KiB); 256 KiB holds
# hundreds of stages and keeps the walk of a hostile body to a fraction of a second.
MAX_BODY = 256 * 1024
BLOCK_VERBS = frozenset({"PRERUN", "PRER", "POSTRUN", "POSTR", "STAGE", "STAG", "STEP"})

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}"
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_PLAIN = re.compile(rf"(?:{_NAME}|{_NUMBER})(?:,(?:{_NAME}|{_NUMBER}))*")
_COMMENT_WORD = re.compile(r"[^\s\"'\\<>$`]+")
_OPEN_TAG = re.compile(r"<([A-Za-z0-9_.-]{1,255})>")


def body_problem(content: str) -> str | None:
    """What in protocol body `content` labgate will not pass below Full, or None."""
    if len(content) > MAX_BODY:
        return f"is {len(content)} characters long, more than {MAX_BODY}"
    try:
        return _block_problem(content)
    except (FramingError, ParseError) as exc:
        return f"cannot be read: {exc}"


def _block_problem(content: str) -> str | None:
    data = content.encode()
    decoder = Decoder(Limits(max_line=len(data) + 2, max_message=len(data) + 2))
    for raw in decoder.feed(data + b"\n"):
        line = raw.decode().strip(" \t\r")
        if line:
            problem = _line_problem(line)
            if problem is not None:
                return problem
    return None


def _line_problem(line: str) -> str | None:
    tokens = values.split(line)
    if "#" in tokens:  # qslib's comment: `HACFILT m1,x1,quant # qslib:default_filters`
        at = tokens.index("#")
        tokens, comment = tokens[:at], tokens[at + 1 :]
        odd = next((word for word in comment if not _COMMENT_WORD.fullmatch(word)), None)
        if odd is not None:
            return f"has a comment word {_show(odd)} that is not plain"
    verb = tokens[0].upper() if tokens else ""
    if verb not in VERBS:
        return f"runs {_show(tokens[0] if tokens else line)}, not one of qslib's protocol steps"
    options, args = values.split_options(tokens[1:])
    for key, value in options:
        if not _PLAIN.fullmatch(value):
            return f"has {verb} -{key}={_show(value)}, not a plain value"
    tag = _OPEN_TAG.match(args[-1]) if args else None
    if tag is not None:
        block, args = args[-1], args[:-1]
        if verb not in BLOCK_VERBS:
            return f"gives {verb} a block, which only {', '.join(sorted(BLOCK_VERBS))} take"
        if values.tag_block_end(block, 0) != len(block):
            return f"has text after the block of {verb}"
        problem = _block_problem(block[tag.end() : len(block) - len(tag.group(0)) - 1])
        if problem is not None:
            return problem
    odd = next((arg for arg in args if not _PLAIN.fullmatch(arg)), None)
    if odd is not None:
        return f"has {verb} argument {_show(odd)}, not a plain value"
    return None


def _show(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")
