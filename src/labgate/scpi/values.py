"""Values: tokens, quoting and `-key=value` options, as qslib writes them.

A command's text after its ident is a list of tokens separated by spaces. A token is kept raw
(exactly as written) so that substitutions survive to be checked; these constructs keep spaces
inside one token:

- `"..."`: a double-quoted span; a backslash escapes the next character.
- `$( ... )`, `${ ... }`, `$[ ... ]`: a substitution; only its own kind of bracket is counted to
  find its end, quotes inside it are not special (so `$[ "a" or "b" ]` is one token).
- `<tag> ... </tag>`: a tag block, nested tags counted, found by a C-level search so that a base64
  body of many megabytes is not walked character by character.

qslib quotes a value with spaces or quotes as `"..."` with `\\"` escapes, and unquotes `'...'`,
`"..."` (with `\\n`, `\\t`, `\\\\`, `\\"` escapes) and `<quote>...</quote>`.
"""

import re

from labgate.scpi.errors import MessageError, ParseError

# Same tag grammar as the framing (see framing.MAX_TAG_NAME for the length bound).
_TAG = re.compile(r"<(/?)([A-Za-z0-9_.-]{1,255})>")
_PLAIN = re.compile(r'[^ "<$]+')
_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPTION = re.compile(r"-([A-Za-z_][A-Za-z0-9_.]*)=(.*)", re.DOTALL)
_BARE = re.compile(r"[^\s\"'\\<>]+")
_SUBSTITUTION = re.compile(r"\$[(\[{]")
_GROUP_CLOSE = {"(": ")", "[": "]", "{": "}"}
_GROUP_BRACKETS = {
    "(": re.compile(r"[()]"),
    "[": re.compile(r"[\[\]]"),
    "{": re.compile(r"[{}]"),
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}


def split(text: str) -> list[str]:
    """Split text into raw tokens (see the module doc); raise `ParseError` if one is unclosed."""
    tokens = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] == " ":
            pos += 1
            continue
        stop = token_end(text, pos)
        tokens.append(text[pos:stop])
        pos = stop
    return tokens


def token_end(text: str, pos: int) -> int:
    """Index just past the raw token that starts at `pos`."""
    end = len(text)
    while pos < end:
        char = text[pos]
        if char == " ":
            return pos
        if char == '"':
            pos = _quote_end(text, pos)
        elif char == "<":
            pos = tag_block_end(text, pos)
        elif char == "$" and pos + 1 < end and text[pos + 1] in _GROUP_CLOSE:
            pos = group_end(text, pos)
        else:
            match = _PLAIN.match(text, pos)
            pos = match.end() if match else pos + 1
    return end


def _quote_end(text: str, pos: int) -> int:
    match = _DOUBLE_QUOTED.match(text, pos)
    if match is None:
        raise ParseError(f"unclosed double quote at column {pos}: {_excerpt(text, pos)}")
    return match.end()


def tag_block_end(text: str, pos: int) -> int:
    """Index past the tag block opened at `pos`; `pos + 1` if `<` there opens no tag."""
    match = _TAG.match(text, pos)
    if match is None:
        return pos + 1
    if match.group(1):
        raise ParseError(f"closing tag {match.group(0)} at column {pos} has no opening tag")
    stack = [match.group(2)]
    for tag in _TAG.finditer(text, match.end()):
        closing, name = tag.groups()
        if not closing:
            stack.append(name)
        elif name != stack[-1]:
            raise ParseError(
                f"closing tag </{name}> at column {tag.start()}: expected </{stack[-1]}>"
            )
        else:
            stack.pop()
            if not stack:
                return tag.end()
    raise ParseError(f"tag <{stack[0]}> opened at column {pos} is never closed")


def group_end(text: str, pos: int) -> int:
    """Index past the `$(...)`, `${...}` or `$[...]` that starts at `pos`."""
    opener = text[pos + 1]
    depth = 0
    for match in _GROUP_BRACKETS[opener].finditer(text, pos + 1):
        depth += 1 if match.group(0) == opener else -1
        if depth == 0:
            return match.end()
    raise ParseError(
        f"${opener} at column {pos} is never closed by {_GROUP_CLOSE[opener]!r}: "
        f"{_excerpt(text, pos)}"
    )


def option(token: str) -> tuple[str, str] | None:
    """`-key=value` -> (key, raw value); None for any other token (`-verbose`, `-1`, `x`)."""
    match = _OPTION.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def split_options(tokens: list[str]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Leading `-key=value` tokens become options; from the first other token on, arguments."""
    options: list[tuple[str, str]] = []
    for index, token in enumerate(tokens):
        pair = option(token)
        if pair is None:
            return tuple(options), tuple(tokens[index:])
        options.append(pair)
    return tuple(options), ()


def quote(value: str) -> str:
    """Write `value` as one token that `unquote` turns back into `value`.

    Bare when that is unambiguous (no space, quote, backslash, angle bracket, not `-key=...`),
    else double-quoted with backslash escapes, as qslib does (qslib would put a value with a
    newline in `<quote>` tags; escapes keep any value, even one holding `</quote>`, in one line).
    A value holding `$(`, `${` or `$[` is quoted so that it stays one token even when its brackets
    do not balance; quoting does not stop the instrument from substituting inside it.
    A value that holds a tag (`<b>`) cannot be one token: the framing, which knows nothing of
    quotes, would open the tag, and qslib knows no escape for `<`; that raises `MessageError`.
    """
    tag = _TAG.search(value)
    if tag is not None:
        raise MessageError(
            f"value {value!r} holds the tag {tag.group(0)!r}, which no quoting can carry"
        )
    bare = _BARE.fullmatch(value) and not (value.startswith("-") and "=" in value)
    if bare and not _SUBSTITUTION.search(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def unquote(token: str) -> str:
    """The value a raw token stands for: quotes and escapes removed, tag wrappers stripped."""
    if token.startswith('"'):
        if _DOUBLE_QUOTED.fullmatch(token) is None:
            raise ParseError(f"token is not one double-quoted string: {_excerpt(token, 0)}")
        return re.sub(r"\\(.)", _unescape, token[1:-1], flags=re.DOTALL)
    if token.startswith("'") and token.endswith("'") and len(token) >= 2:
        return token[1:-1]
    opening = _TAG.match(token)
    if opening is not None and not opening.group(1) and tag_block_end(token, 0) == len(token):
        return token[opening.end() : len(token) - len(opening.group(0)) - 1]
    return token


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _ESCAPES.get(char, "\\" + char)


def _excerpt(text: str, pos: int, width: int = 40) -> str:
    piece = text[pos : pos + width]
    return repr(piece + ("..." if len(text) > pos + width else ""))
