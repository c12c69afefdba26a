import pytest
from qslib.scpi_commands import ArgList

from labgate.scpi.errors import MessageError, ParseError
from labgate.scpi.values import option, quote, split, split_options, unquote

SAMPLES = ["abc", "a b", 'a"b', "a\\b", 'a\\"b', "x\ny", "", "\tx", "it's", "-k=v", "-1", "$(X)"]


@pytest.mark.parametrize("value", SAMPLES)
def test_quote_then_unquote_gives_the_value_back(value: str) -> None:
    assert unquote(quote(value)) == value
    assert split(quote(value)) == [quote(value)]


@pytest.mark.parametrize("value", [v for v in SAMPLES if v != "-k=v"])
def test_qslib_reads_our_quoting_as_the_same_value(value: str) -> None:
    # qslib's own argument parser (its compiled core) is the reference reader. It re-types
    # numbers, so compare as text.
    (parsed,) = ArgList.from_string(quote(value)).args
    assert str(parsed) == value


def test_quote_writes_like_qslib() -> None:
    assert quote("a b") == '"a b"'
    assert quote('a"b') == '"a\\"b"'
    assert quote("Observer") == "Observer"


def test_unquote_reads_qslib_forms() -> None:
    assert unquote('"a\\tb"') == "a\tb"
    assert unquote('"a\\xb"') == "a\\xb"  # an unknown escape keeps its backslash, as in qslib
    assert unquote("'a b'") == "a b"
    assert unquote("<quote>\nab\n</quote>") == "\nab\n"
    assert unquote("plain") == "plain"
    assert unquote("<") == "<"
    with pytest.raises(ParseError, match="never closed"):
        unquote("<a> x")


def test_a_value_holding_a_tag_cannot_be_quoted() -> None:
    with pytest.raises(MessageError, match="<b>"):
        quote("x <b> y")


def test_unquote_refuses_a_broken_quoted_token() -> None:
    with pytest.raises(ParseError, match="not one double-quoted string"):
        unquote('"abc')


def test_split_keeps_substitutions_and_quotes_whole() -> None:
    text = 'RET $[ "$(ENG?)" or "unknown" ] ${RunTitle:--} "a b" <quote>x y</quote> z'
    assert split(text) == [
        "RET",
        '$[ "$(ENG?)" or "unknown" ]',
        "${RunTitle:--}",
        '"a b"',
        "<quote>x y</quote>",
        "z",
    ]


def test_split_counts_only_its_own_bracket_kind() -> None:
    expr = "$[ top.getChild('P').variables.get('${RunMacro}-Stages'.lower(), -1) ]"
    assert split(f"RET {expr} x") == ["RET", expr, "x"]


def test_options_are_the_leading_key_value_tokens() -> None:
    assert option("-stealth=false") == ("stealth", "false")
    assert option("-k=") == ("k", "")
    assert option("-verbose") is None
    assert option("-1") is None
    assert split_options(["-a=1", "x", "-b=2"]) == ((("a", "1"),), ("x", "-b=2"))
