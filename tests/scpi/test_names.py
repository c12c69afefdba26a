import pytest

from labgate.scpi.names import KNOWN, canonical, is_known


@pytest.mark.parametrize(
    ("spellings", "name"),
    [
        (["ACC", "ACCess", "access", "Acc"], "ACCESS"),
        (["ACC?", "ACCESS?", "acc?"], "ACCESS?"),
        (["DRAW?", "DRAWER?", "drawer?"], "DRAWER?"),
        (["PROT", "PROTOCOL", "protocol"], "PROTOCOL"),
        (["PROT?", "PROTocol?"], "PROTOCOL?"),
        (["COVerDOWN", "COVDOWN", "coverdown"], "COVERDOWN"),
        (["SYST:EXEC", "SYSTEM:EXEC", "syst:exec"], "SYSTEM:EXEC"),
        (["FILE:READ?", "file:read?"], "FILE:READ?"),
        (["CONF=", "CONFIG="], "CONFIG="),
        (["AbortRun", "ABORTRUN"], "ABORTRUN"),
        (["eval?", "EVAL?"], "EVAL?"),
        (["PAUSe", "PAUS", "PAUSE"], "PAUSE"),
        (["RUNTitle?", "RUNT?"], "RUNTITLE?"),
        (["LED:GREENBLINK", "led:redon"], None),
    ],
)
def test_every_spelling_folds_to_one_name(spellings: list[str], name: str | None) -> None:
    folded = {canonical(spelling) for spelling in spellings}
    if name is None:
        assert all(is_known(spelling) for spelling in spellings)
    else:
        assert folded == {name}


def test_a_query_and_its_setter_are_different_commands() -> None:
    assert canonical("POW?") != canonical("POW")
    assert canonical("PROT?") != canonical("PROT")


def test_intermediate_forms_are_not_folded() -> None:
    assert not is_known("ACCE")
    assert canonical("ACCE") == "ACCE"
    assert not is_known("PROTO")


def test_unknown_names_fold_to_capitals_and_stay_unknown() -> None:
    assert canonical("foo") == "FOO"
    assert not is_known("FOO")


def test_non_ascii_lookalikes_do_not_fold_to_a_known_name() -> None:
    ligature = "\ufb01le:read?"  # 'ﬁ' upper-cases to 'FI'
    assert ligature.upper() == "FILE:READ?"
    assert not is_known(ligature)
    assert canonical(ligature) != "FILE:READ?"


def test_simulator_commands_are_all_known() -> None:
    needed = [
        "CHAL?",
        "AUTH",
        "ACC",
        "ACC?",
        "QUIT",
        "HELP?",
        "RET",
        "DRAW?",
        "DRAWER?",
        "OPEN",
        "CLOSE",
        "COVerDOWN",
        "ENG?",
        "POW",
        "POW?",
        "BLOCK",
        "BLOCK?",
        "LST?",
        "ISTAT?",
        "RUNTitle?",
        "PROT?",
        "PROTOCOL",
        "RP",
        "AbortRun",
        "StopRun",
        "PAUSe",
        "RESume",
        "TBC:SETT?",
        "TBC:CONT?",
        "TBC:SampleTemperatures?",
        "LED:STATus?",
        "FILE:LIST?",
        "FILE:READ?",
        "FILE:WRITE",
        "FILE:REMOVE",
        "FILE:MOVE",
        "EXP:LIST?",
        "EXP:NEW",
        "SUBS+",
        "UNS",
        "SYST:EXEC",
        "eval?",
        "CONF=",
        "CONF?",
    ]
    assert [name for name in needed if not is_known(name)] == []
    assert all(canonical(name) in KNOWN for name in needed)


def test_qslibs_long_experiment_spelling_folds_to_the_exp_commands() -> None:
    # Machine.compile_eds lists runs with `experiment:LIST? -verbose `; the rest use `EXP:`.
    assert canonical("experiment:LIST?") == "EXP:LIST?"
    assert canonical("EXPeriment:NEW") == "EXP:NEW"
    assert not is_known("experiments:LIST?")  # not a spelling: stays unknown (Full)
