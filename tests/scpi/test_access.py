import pytest

from labgate.scpi.access import AccessLevel


def test_levels_are_ordered_as_the_instrument_orders_them() -> None:
    assert (
        AccessLevel.GUEST
        < AccessLevel.OBSERVER
        < AccessLevel.CONTROLLER
        < AccessLevel.ADMINISTRATOR
        < AccessLevel.FULL
    )


@pytest.mark.parametrize("text", ["observer", "OBSERVER", "Observer", " Observer "])
def test_level_names_parse_case_insensitively(text: str) -> None:
    assert AccessLevel.parse(text) is AccessLevel.OBSERVER


def test_unknown_level_name_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown access level 'Root'"):
        AccessLevel.parse("Root")


def test_label_is_the_instrument_spelling() -> None:
    assert [level.label for level in AccessLevel] == [
        "Guest",
        "Observer",
        "Controller",
        "Administrator",
        "Full",
    ]
