from __future__ import annotations

import pytest

from aucli.aus import describe_au, flip_permutation, openface_column, parse_au, parse_au_list
from aucli.errors import UnknownAUError


@pytest.mark.parametrize("text", ["AU12", "au12", "12", 12, "AU012", " AU 12 "])
def test_parse_au_spellings(text) -> None:
    assert parse_au(text) == "AU12"


def test_side_coded_aus() -> None:
    assert parse_au("L10") == "AU10L"
    assert parse_au("AU12R") == "AU12R"
    assert describe_au("AU10L") == "AU10L upper lip raiser (left)"


def test_unknown_au_suggests() -> None:
    with pytest.raises(UnknownAUError, match="did you mean .*AU12"):
        parse_au("AU13", known=["AU1", "AU12"])
    with pytest.raises(UnknownAUError, match="unknown AU name 'smile'"):
        parse_au("smile")


def test_au_lists() -> None:
    assert parse_au_list("bp4d")[:3] == ["AU1", "AU2", "AU4"]
    assert parse_au_list("1, 2 AU4") == ["AU1", "AU2", "AU4"]
    with pytest.raises(UnknownAUError, match="more than once"):
        parse_au_list("1,AU1")


def test_openface_column_and_flip() -> None:
    assert openface_column("AU1", "c") == "AU01_c"
    names = ["AU1", "AU10L", "AU12", "AU10R"]
    assert flip_permutation(names) == [0, 3, 2, 1]
