import pytest

from labgate.scpi.errors import ParseError
from labgate.scpi.substitution import (
    MAX_NESTING,
    CommandSub,
    ExprSub,
    Text,
    VarSub,
    parse,
    walk,
)


def joined(token: str) -> str:
    return "".join(node.source for node in parse(token))


def test_command_substitution_is_a_nested_command() -> None:
    (node,) = parse("$(FILE:READ? -encoding=base64 x)")
    assert isinstance(node, CommandSub)
    assert node.name == "FILE:READ?"
    assert node.options == (("encoding", "base64"),)
    assert node.args == ("x",)


def test_variable_with_and_without_default() -> None:
    assert parse("${RunTitle}") == (VarSub(source="${RunTitle}", name="RunTitle", default=None),)
    (stage,) = parse("${Stage:--1}")
    assert isinstance(stage, VarSub)
    assert stage.default == (Text(source="-1"),)


def test_expression_holds_the_commands_inside_it() -> None:
    (expr,) = parse('$[ "$(ENG?)" or "unknown" ]')
    assert isinstance(expr, ExprSub)
    assert expr.expression == ' "$(ENG?)" or "unknown" '
    nested = [n for n in walk((expr,)) if isinstance(n, CommandSub)]
    assert [n.name for n in nested] == ["ENG?"]


def test_run_status_expression_parses_with_its_variables() -> None:
    token = (
        "$[ top.getChild('PROTOcolDEFinition').variables.get("
        "'${RunMacro}-Stage${Stage}-Count'.lower(), -1) ]"
    )
    (expr,) = parse(token)
    assert isinstance(expr, ExprSub)
    names = [n.name for n in walk((expr,)) if isinstance(n, VarSub)]
    assert names == ["RunMacro", "Stage"]


def test_default_of_a_variable_may_hide_a_command() -> None:
    nodes = walk(parse("${X:-$(SYST:EXEC reboot)}"))
    assert [n.name for n in nodes if isinstance(n, CommandSub)] == ["SYST:EXEC"]


def test_substitution_inside_double_quotes_is_still_found() -> None:
    nodes = walk(parse('"text $(OPEN) more"'))
    assert [n.name for n in nodes if isinstance(n, CommandSub)] == ["OPEN"]


def test_deeply_nested_commands_are_all_found() -> None:
    token = "$(RET $(RET $(RET $(OPEN))))"
    names = [n.name for n in walk(parse(token)) if isinstance(n, CommandSub)]
    assert names == ["RET", "RET", "RET", "OPEN"]


@pytest.mark.parametrize(
    "token",
    [
        "plain",
        "$(ENG?) and ${A} and $[ 1 ]",
        "a$b",
        "$",
        "$$(X)",
        "${A:-${B:-c}}",
        "<quote>$(X)</quote>",
    ],
)
def test_nodes_join_back_to_the_token(token: str) -> None:
    assert joined(token) == token


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("$(OPEN", "never closed"),
        ("$[ [1 ]", "never closed"),
        ("$()", "names no command"),
        ("${}", "not a variable name"),
        ("${$(OPEN)}", "not a variable name"),
    ],
)
def test_malformed_substitutions_raise_parse_error(token: str, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse(token)


def test_nesting_beyond_the_bound_is_refused_not_a_recursion_error() -> None:
    depth = MAX_NESTING + 5
    token = "$(RET " * depth + "x" + ")" * depth
    with pytest.raises(ParseError, match="nest deeper"):
        parse(token)
