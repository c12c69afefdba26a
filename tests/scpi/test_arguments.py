"""Names the instrument splices into Python, commands and file names: what labgate lets through.

Attacks are judged as a Controller (who may define protocols and start runs) under LABGATE; each
must need Full, and the refusal must name the argument.
"""

import ast
import posixpath
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qslib import Experiment, Protocol, Stage, Step

from labgate.scpi import arguments
from labgate.scpi.access import INSTRUMENT, LABGATE, AccessLevel, Allowed, Denied, check
from labgate.scpi.messages import Command, parse_command
from labgate.scpi.values import unquote

OBSERVER = AccessLevel.OBSERVER
CONTROLLER = AccessLevel.CONTROLLER
ADMINISTRATOR = AccessLevel.ADMINISTRATOR
FULL = AccessLevel.FULL

# Python that closes qslib's '${RunMacro}-Stages' literal and runs a shell.
BREAKOUT = "x'+__import__('os').system('id')+'"
BODY = "<multiline.protocol>\n\tSTAGE 1 STAGE_1 <multiline.stage>\n\t</multiline.stage>\n"
BODY += "</multiline.protocol>"


def cmd(text: str) -> Command:
    return parse_command(text.encode())


def denied_for(text: str, argument: str, level: AccessLevel = ADMINISTRATOR) -> Denied:
    decision = check(cmd(text), level, LABGATE)
    assert isinstance(decision, Denied), text
    assert decision.required is FULL
    assert argument in decision.reason, decision.reason
    return decision


@pytest.mark.parametrize(
    "name",
    [
        f'"{BREAKOUT}"',  # the breakout, quoted as qslib would quote it
        BREAKOUT.replace(" ", ""),
        "\"x\\'+1+\\'\"",  # escaped quotes inside double quotes
        "'single-quoted'",  # the instrument may not strip single quotes: refused, not guessed
        '"two words"',
        "a\\b",
        "$(RUNTitle?)",  # the name would be a reply labgate never saw
        "${RunTitle}",
        '"${RunTitle}"',
        "x$y",
        "..",  # becomes a folder: experiments:../
        ".hidden",
        "-rf",
        "+1",
        '""',
        "a" * (arguments.MAX_NAME + 1),
        "caf\u00e9",  # non-ASCII: one letter or several bytes, depending on who reads it
        "x\u2019y",
    ],
)
def test_a_protocol_name_that_is_not_a_safe_name_needs_full(name: str) -> None:
    decision = denied_for(f"7 PROTOCOL -volume=50 -runmode=standard {name} {BODY}", "protocol name")
    assert decision.command == "PROTOCOL"


def test_the_denial_says_what_is_wrong_with_the_name() -> None:
    decision = denied_for(f'7 PROTOCOL "{BREAKOUT}" {BODY}', "protocol name")
    assert 'holds "\'"' in decision.reason
    assert "${RunMacro}" in decision.reason
    assert "the session has Administrator" in decision.reason
    too_long = denied_for(f"7 PROTOCOL {'a' * 200} {BODY}", "protocol name")
    assert "200 characters long" in too_long.reason
    assert "starts with '.'" in denied_for(f"7 PROTOCOL .. {BODY}", "protocol name").reason


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        (f'8 RP -samplevolume=50 -runmode=standard "{BREAKOUT}" title', "protocol name"),
        (f'8 RP -samplevolume=50 -runmode=standard demo "{BREAKOUT}"', "run title"),
        ("8 RP demo $(FILE:READ? public_run_complete:evil.txt)", "run title"),
        ("8 RP demo ${RunTitle}x", "run title"),
        ("8 RP -samplevolume=50'+1+' demo title", "option -samplevolume"),
        ('8 RP -runmode="fast standard" demo title', "option -runmode"),
        (f'7 PROTOCOL -volume="{BREAKOUT}" demo {BODY}', "option -volume"),
        (f"7 PROTOCOL -runmode=$(RUNTitle?) demo {BODY}", "option -runmode"),
        (f'9 EXP:NEW "{BREAKOUT}" ruo', "run title"),
        ("9 EXP:NEW ../../etc ruo", "run title"),
        ("9 EXP:NEW run ../ruo", "template"),
        (f'9 EXP:ATTR= "{BREAKOUT}" collected True', "run title"),
        ('9 EXP:ATTR= run "collected x" True', "attribute"),
        ("9 EXP:ATTR= run collected ${Collected}", "value"),
        (
            f'9 EXP:RUN -asynchronous <block> zip "{BREAKOUT}.eds" "run" </block>',
            "block argument 1",
        ),
        ('9 EXP:RUN -asynchronous <block> zip "run.eds" "../.." </block>', "block argument 2"),
        ('9 EXP:RUN -asynchronous <block> SYST:EXEC "id" </block>', "block"),
        ("9 EXP:RUN -asynchronous <block> </block>", "block"),
        ('9 EXP:RUN -asynchronous <block> zip "a </block>', "block"),
        ("9 EXP:RUN ../x", "argument 1"),
    ],
)
def test_names_that_reach_variables_and_folders_must_be_safe(text: str, argument: str) -> None:
    denied_for(text, argument)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        (f'5 RET $(RP demo "{BREAKOUT}")', "RP"),
        (f'5 RET "$(PROTOCOL -volume=50 {BREAKOUT.replace(" ", "")})"', "PROTOCOL"),
        ("5 RET ${X:-$(EXP:NEW ../x ruo)}", "EXP:NEW"),
        ("5 RET $(RET $(EXP:ATTR= .. collected True))", "EXP:ATTR="),
    ],
)
def test_an_unsafe_name_in_a_nested_command_is_found(text: str, command: str) -> None:
    decision = check(cmd(text), ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert decision.command == command
    assert "must be a safe name" in decision.reason


def test_full_may_name_things_as_it_likes() -> None:
    text = f'8 RP demo "{BREAKOUT}"'
    assert check(cmd(text), FULL, LABGATE) == Allowed(required=FULL)


def test_the_instrument_itself_checks_no_names() -> None:
    # the hole: on the machine a Controller names a protocol with Python in it
    text = f'8 RP -samplevolume=50 "{BREAKOUT}" title'
    assert check(cmd(text), CONTROLLER, INSTRUMENT) == Allowed(required=CONTROLLER)


def test_an_observer_is_still_refused_for_the_command_itself() -> None:
    decision = check(cmd("8 RP demo title"), OBSERVER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is CONTROLLER


# ---- qslib's own names pass --------------------------------------------------------------------


def test_qslibs_default_protocol_and_run_names_pass() -> None:
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(60, 60.0)], repeat=3)])
    experiment = Experiment(protocol=protocol)
    assert protocol.name.startswith("Prot_")
    defined = parse_command(b"5 " + protocol.to_scpi_string().rstrip("\n").encode())
    assert defined.canonical == "PROTOCOL"
    assert check(defined, CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)
    # qslib's Experiment.run, compile_eds: the f-strings of its source, filled in as it fills them
    title = experiment.runtitle_safe
    for text in (
        f"6 EXP:NEW {title} ruo",
        f"7 RP -samplevolume={protocol.volume} -runmode={protocol.runmode} {protocol.name} {title}",
        f'8 exp:run -asynchronous <block> zip "{title}.eds" "{title}" </block>',
        f'9 exp:attr= "{title}" collected True',
    ):
        assert check(cmd(text), CONTROLLER, LABGATE) == Allowed(required=CONTROLLER), text


@pytest.mark.parametrize("name", ["qPCR run 7", "melt_2026-11-23", "SYBR.v2-ROX", "a" * 128])
def test_run_names_qslib_makes_safe_pass(name: str) -> None:
    title = Experiment(name=name).runtitle_safe
    assert arguments.name_problem(title) is None
    assert check(cmd(f"7 RP demo {title}"), CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)


def test_qslibs_volumes_and_run_modes_pass() -> None:
    for volume in (50, 25.5, 1e-3):
        protocol = Protocol([Stage([Step(30, 95.0)])], name="p", volume=volume, runmode="fast")
        defined = parse_command(b"5 " + protocol.to_scpi_string().rstrip("\n").encode())
        assert check(defined, CONTROLLER, LABGATE) == Allowed(required=CONTROLLER), volume


def test_commands_without_names_are_not_judged_here() -> None:
    assert list(arguments.judge("OPEN", (), ("$weird'",), None)) == []


# ---- file paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        '"/data/vendor/IS/config/secrets"',
        "public_run_complete:/etc/passwd",
        "public_run_complete:../../../../etc/passwd",
        "public_run_complete:run/../../secrets",
        '"public_run_complete:..\\\\..\\\\etc"',  # backslashes, as Windows-minded tools write them
        "public_run_complete:a\\b",
        "public_run_complete:x\x00.eds",
        '"public_run_complete:x\\n.eds"',
        '"public_run_complete:x\x7f.eds"',
        "public_run_complete:${HOME}",
        "${LogFolder}/../../../etc/passwd",
        "${LogFolder}/tcprotocol.xml",  # qslib writes it, it does not read it
        "$(RUNTitle?)",
        "public_run_complete:$(RUNTitle?).eds",
        "~root/.ssh/id_rsa",
        "public_run_complete:~/x",
        "etc/passwd",  # relative to a folder nobody named
        "data:vendor/IS/config",  # a context labgate does not know
        "public_run_complete:experiments:x",
        ":/etc/passwd",
        "public_run_complete:.*",
        "public_run_complete:run/.?/x",
        '"public_run_complete:it\'s"',
        "'public_run_complete:a'\"'\"'b'",
        '"public_run_complete:x"y',
        '""',
    ],
)
@pytest.mark.parametrize(
    "verb", ["FILE:READ? -encoding=base64", "FILE:LIST? -verbose", "FILE:ZIPREAD?"]
)
def test_an_observer_reads_nothing_outside_the_file_namespaces(verb: str, path: str) -> None:
    decision = check(cmd(f"4 {verb} {path}"), OBSERVER, LABGATE)
    assert isinstance(decision, Denied), path
    assert decision.required is FULL
    assert decision.command.startswith("FILE:")
    assert "path" in decision.reason


@pytest.mark.parametrize(
    "text",
    [
        "4 FILE:REMOVE /data/vendor/IS/config/access.conf",
        "4 FILE:REMOVE public_run_complete:../../config",
        "4 FILE:MOVE public_run_complete:x.eds /etc/init.d/x",
        "4 FILE:MOVE /etc/shadow public_run_complete:shadow.txt",
        "4 FILE:MOVE public_run_complete:a.eds ${LogFolder}/tcprotocol.xml",
        "4 FILE:WRITE /etc/profile <quote.base64>\naWQ=\n</quote.base64>",
        "4 FILE:WRITE ${LogFolder}/../../../etc/profile <quote.base64>\naWQ=\n</quote.base64>",
        "4 FILE:WRITE ${LogFolder}/init.rc <quote.base64>\naWQ=\n</quote.base64>",
        "4 FILE:WRITE $(RUNTitle?) <quote.base64>\naWQ=\n</quote.base64>",
        "4 FILE:READ? -encoding=/etc/passwd public_run_complete:x",
        "4 EXP:READ? -encoding=base64 ../../config/secrets",
        "4 EXP:READ? /etc/passwd",
        "4 EXP:READ? public_run_complete:x.eds",
        "4 EXP:LIST? ../*",
        "4 EXP:LIST? -verbose run/.*",
        '4 EXP:ZIPREAD? "../.."',
        "4 EXP:ZIPWRITE ../escape/ <message>\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\n</message>",
        "4 EXP:DELETE ..",
        "4 EXP:DELETE ${RunTitle}/..",
        "5 RET $(FILE:READ? -encoding=plain /etc/passwd)",
        "5 RET ${X:-$(EXP:READ? ../../config/secrets)}",
    ],
)
def test_no_path_command_leaves_the_namespaces_below_full(text: str) -> None:
    decision = check(cmd(text), ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied), text
    assert decision.required is FULL
    assert "path" in decision.reason or "option" in decision.reason or "source" in decision.reason


def test_the_denial_names_the_argument_and_what_is_wrong() -> None:
    decision = check(cmd("4 FILE:MOVE public_run_complete:a.eds /etc/x"), CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.command == "FILE:MOVE"
    assert "FILE:MOVE's target '/etc/x' is absolute" in decision.reason
    decision = check(cmd("4 FILE:READ? public_run_complete:../x"), OBSERVER, LABGATE)
    assert isinstance(decision, Denied)
    assert "path 'public_run_complete:../x' has a '..' segment" in decision.reason


def test_the_instrument_itself_checks_no_paths() -> None:
    # the hole: on the machine an Observer reads whatever its path names
    command = cmd("4 FILE:READ? -encoding=plain /data/vendor/IS/config/secrets")
    assert check(command, OBSERVER, INSTRUMENT) == Allowed(required=OBSERVER)


@pytest.mark.parametrize(
    "text",
    [
        # what qslib sends (machine.py, experiment.py) and the captures hold
        "4 FILE:LIST? public_run_complete:*eds",
        "4 FILE:LIST? -verbose public_run_complete:*",
        "4 FILE:LIST? public_run_complete:",
        "4 FILE:LIST? -verbose experiments:qPCR_run_7/",
        "4 FILE:READ? -encoding=base64 public_run_complete:run_one.eds",
        "4 FILE:READ? -encoding=base64 experiments:qPCR_run_7/apldbio/sds/messages.log",
        '4 FILE:ZIPREAD? "experiments:qPCR_run_7"',
        "4 EXP:LIST?",
        "4 EXP:LIST? qPCR_run_7/apldbio/sds/filter/*_filterdata.xml",
        "4 EXP:LIST? qPCR_run_7/apldbio/sds/quant/S01_C001_T01_P0001_M1_X1_E*.quant",
        "4 EXP:READ? -encoding=base64 qPCR_run_7/apldbio/sds/filter/S01_C001_T01_P0001_M1_X1.xml",
        "4 EXP:READ? -encoding=base64 'qPCR_run_7/apldbio/sds/x(1).xml'",  # shlex.quote's form
        '4 EXP:ZIPREAD? "qPCR_run_7"',
    ],
)
def test_observer_reads_of_the_ordinary_namespaces_pass(text: str) -> None:
    assert check(cmd(text), OBSERVER, LABGATE) == Allowed(required=OBSERVER)


@pytest.mark.parametrize(
    "text",
    [
        "4 FILE:WRITE public_run_complete:new.txt <quote.base64>\naGk=\n</quote.base64>",
        "4 FILE:WRITE public_run_complete/gateway-qs5.bin <quote.base64>\naGk=\n</quote.base64>",
        "4 FILE:WRITE ${LogFolder}/tcprotocol.xml <quote.base64>\naGk=\n</quote.base64>",
        "4 FILE:WRITE ${LogFolder}/qsl-tcprotocol.xml <quote.base64>\naGk=\n</quote.base64>",
        "4 FILE:REMOVE public_run_complete:qPCR_run_7.eds",
        '4 file:move "experiments:qPCR_run_7.eds" "public_run_complete:qPCR_run_7.eds"',
        "4 EXP:ZIPWRITE qPCR_run_7/ <message>\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\n</message>",
        "4 EXP:DELETE qPCR_run_7",
    ],
)
def test_controller_writes_in_the_namespaces_pass(text: str) -> None:
    assert check(cmd(text), CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)


@pytest.mark.parametrize(
    ("token", "experiments"),
    [("public_run_complete:x.eds", False), ("run/x.xml", True), ("", True)],
)
def test_path_problem_passes_plain_paths(token: str, experiments: bool) -> None:
    assert arguments.path_problem(token, experiments=experiments) is None


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("/etc/passwd", "is absolute"),
        ("public_run_complete:/etc", "is absolute"),
        ("public_run_complete:~/x", "is absolute"),
        ("public_run_complete:a/../../b", "has a '..' segment"),
        ("public_run_complete:a\\b", "holds '\\\\'"),
        ("public_run_complete:x\x00", "control character '\\x00'"),
        ('"public_run_complete:x\\ty"', "control character '\\t'"),
        ("public_run_complete:\u0085x", "control character"),  # C1 next line
        ("public_run_complete:${Secret}", "holds '$'"),
        ('"public_run_complete:it\'s"', 'holds "\'"'),
        ("public_run_complete:a:b", "more than one context"),
        ("public_run_complete:.[.]", "glob segment starting with '.'"),
        ("system:config", "outside the file namespaces"),
        ("secrets.conf", "outside the file namespaces"),
        ('"unclosed', "cannot be read as one value"),
    ],
)
def test_each_path_rule_says_what_it_refused(token: str, problem: str) -> None:
    found = arguments.path_problem(token)
    assert found is not None and problem in found, found


def test_exp_paths_name_no_context() -> None:
    found = arguments.path_problem("experiments:x", experiments=True)
    assert found is not None and "names a context" in found


@pytest.mark.parametrize(
    "token",
    [
        "public_run_complete:a/\u2025/\u2025/etc",  # two-dot leader: '..' once folded
        "public_run_complete:\uff0fetc\uff0fpasswd",  # fullwidth solidus: '/'
        "public_run_complete:a\ufe68b",  # small reverse solidus: a backslash
    ],
)
def test_paths_that_fold_into_escapes_are_refused(token: str) -> None:
    found = arguments.path_problem(token)
    assert found is not None and "folded" in found, found


# ---- properties: whatever passes cannot escape ---------------------------------------------------

SAFE_TEXT = st.text(st.sampled_from("aZ09_.+-"), max_size=6)
# Characters attackers reach for, and a few that look like them once Unicode forms are folded.
TRICKY = st.sampled_from([*"'\"\\$()[]{}`;#:/~ \t\n\x00\x7f", "\u2019", "\u2025", "\uff0f"])
# Names: safe text around one tricky character, or any text at all.
NAMES = st.one_of(
    st.builds(lambda a, b, c: a + b + c, SAFE_TEXT, TRICKY, SAFE_TEXT),
    st.text(st.characters(), min_size=1, max_size=12),
).map(lambda name: f'"{name}"' if " " in name else name)  # spaces: one quoted token
# Paths: a context (or none), maybe a leading '/' or '~/', and segments, the dangerous ones often.
SEGMENTS = st.one_of(
    st.sampled_from(["..", ".", "", "*", ".*", ".?", "~", "\u2025", "\uff0f..", "${X}", "a:b"]),
    st.sampled_from(["run", "x.eds", "*eds", "apldbio"]),
    st.builds(lambda a, b, c: a + b + c, SAFE_TEXT, TRICKY, SAFE_TEXT),
    st.text(st.characters(), max_size=6),
)
CONTEXTS = st.sampled_from(["", *sorted(arguments.NAMESPACES), "etc", "~"]).map(
    lambda context: context + ":" if context else ""
)
PATHS = st.builds(
    lambda context, lead, segments: context + lead + "/".join(segments),
    CONTEXTS,
    st.sampled_from(["", "", "/", "~/"]),
    st.lists(SEGMENTS, min_size=1, max_size=4),
).map(lambda path: path.replace(" ", "_"))
MANY = settings(max_examples=400)


@MANY
@given(NAMES)
def test_a_name_that_passes_stays_one_string_literal_in_qslibs_expression(token: str) -> None:
    if arguments.name_problem(token) is not None:
        return
    value = token[1:-1] if token.startswith('"') else token
    # the run_status() expression with ${RunMacro} filled in, as the instrument fills it in
    source = f"'{value}-Stages'.lower()"
    call = ast.parse(source, mode="eval").body
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
    assert isinstance(call.func.value, ast.Constant) and call.func.value.value == f"{value}-Stages"
    assert "$" not in value and value not in (".", "..") and not value.startswith("-")


@MANY
@given(PATHS, st.booleans())
def test_a_path_that_passes_stays_inside_its_namespace(token: str, experiments: bool) -> None:
    if arguments.path_problem(token, experiments=experiments) is not None:
        return
    for value in {unquote(token), unicodedata.normalize("NFKC", unquote(token))}:
        assert "$" not in value and "\\" not in value
        assert not any(unicodedata.category(char) == "Cc" for char in value)
        inner = value.partition(":")[2] if ":" in value else value
        if experiments:
            assert ":" not in value
        else:
            namespace = value.partition(":")[0] if ":" in value else value.split("/")[0]
            assert namespace in arguments.NAMESPACES
        resolved = posixpath.normpath(posixpath.join("/namespace", inner))
        assert resolved == "/namespace" or resolved.startswith("/namespace/"), value


@given(st.sampled_from(sorted(arguments.NAMESPACES)), PATHS)
def test_paths_inside_a_namespace_pass_or_fail_by_form_alone(namespace: str, rest: str) -> None:
    # the namespace rule never rescues a bad form: any refusal names what is wrong
    found = arguments.path_problem(f"{namespace}:{rest}")
    assert found is None or "namespaces" not in found


@pytest.mark.parametrize("text", ["4 FILE:LIST?", "4 FILE:LIST? -verbose", "4 FILE:READ?"])
def test_a_file_command_without_a_path_needs_full(text: str) -> None:
    decision = check(cmd(text), OBSERVER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert "names no path" in decision.reason


def test_listing_the_runs_needs_no_path() -> None:
    assert check(cmd("4 EXP:LIST?"), OBSERVER, LABGATE) == Allowed(required=OBSERVER)


@pytest.mark.parametrize(
    "text",
    [
        "5 PROT? ../../etc/passwd",
        "5 PROT? /etc/passwd",
        "5 PROT? ${LogFolder}",
        "5 PROT? $(RUNTitle?)",
    ],
)
def test_an_observer_reads_protocols_by_safe_name_only(text: str) -> None:
    decision = denied_for(text, "protocol name", level=OBSERVER)
    assert decision.command == "PROTOCOL?"


@pytest.mark.parametrize(
    "text", ["5 PROT? ${Protocol}", "5 PROT? demo", '5 PROT? "Prot_2026-11-23"']
)
def test_qslibs_protocol_reads_pass(text: str) -> None:
    assert check(cmd(text), OBSERVER, LABGATE) == Allowed(required=OBSERVER)


# -- command separators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"1 DRAW? ;SYST:EXEC rm",
        b"1 DRAW? ;OPEN",
        b'1 DRAW? ";OPEN"',
        b"1 POW? -x=;OPEN",
        b"1 RET $(DRAW? ;OPEN)",
        b"1 HELP? a;b",
    ],
)
def test_a_semicolon_that_could_start_a_second_command_needs_full(line: bytes) -> None:
    decision = check(parse_command(line), AccessLevel.ADMINISTRATOR, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is AccessLevel.FULL
    assert "';'" in decision.reason


def test_the_instrument_table_models_the_machine_and_ignores_separators() -> None:
    decision = check(parse_command(b"1 DRAW? ;OPEN"), AccessLevel.OBSERVER, INSTRUMENT)
    assert isinstance(decision, Allowed)


def test_every_character_a_common_line_splitter_breaks_at_is_a_break() -> None:
    # Python's str.splitlines breaks at the most; C's getline and Java's readLine at a subset.
    from labgate.scpi.arguments import LINE_BREAKS

    splits = {chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) == 2}
    assert splits | {"\x00"} == set(LINE_BREAKS)
