"""Property-based tests (hypothesis) of the AU-name parser, text decoding, and the label readers.

Every example is derived from the test's name (``derandomize``), so runs are deterministic; no
example database is written.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from aucli.aus import au_name, au_number, au_side, openface_column, parse_au, parse_au_list
from aucli.errors import LabelFormatError, UnknownAUError
from aucli.labels.bp4d import read_bp4d
from aucli.labels.disfa import read_disfa
from aucli.labels.plain import read_plain_csv
from aucli.labels.text import csv_delimiter, decode_text

# hypothesis caches what it learns in ./.hypothesis by default: keep the checkout clean
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "aucli-hypothesis")
settings.register_profile(
    "aucli", derandomize=True, database=None, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile("aucli")

CANONICAL = re.compile(r"^AU[0-9]+[LR]?$")
numbers = st.integers(min_value=0, max_value=999)
sides = st.sampled_from([None, "L", "R"])


# -- AU names ---------------------------------------------------------------------------------------


@given(numbers, sides, st.integers(0, 3), st.sampled_from(["AU", "au", "Au", ""]), st.sampled_from(["", " ", "  "]),
       st.booleans(), st.booleans())
def test_every_spelling_of_an_au_parses_to_its_canonical_name(number, side, zeros, prefix, space, side_first, lower) -> None:
    digits = "0" * zeros + str(number)
    code = (side or "").lower() if lower else (side or "")
    text = f"{space}{prefix}{space}{code}{digits}{space}" if side_first else f"{space}{prefix}{space}{digits}{code}{space}"
    name = parse_au(text)
    assert name == au_name(number, side)
    assert au_number(name) == number and au_side(name) == side


@given(st.text(max_size=30))
def test_parse_au_returns_a_canonical_name_or_raises_unknown(text) -> None:
    try:
        name = parse_au(text)
    except UnknownAUError as error:
        assert len(str(error)) < 200  # a long input is shortened in the message
        return
    assert CANONICAL.match(name)
    assert parse_au(name) == name  # idempotent


def test_parse_au_refuses_long_digit_runs_and_other_scripts_digits() -> None:
    with pytest.raises(UnknownAUError, match=r"unknown AU name 'AU9{35}\.\.\.'"):
        parse_au("AU" + "9" * 5000)  # was a ValueError from int() (over 4300 digits)
    with pytest.raises(UnknownAUError):
        parse_au("AU\u0661\u0662")  # Arabic-Indic digits are not AU numbers


@given(st.lists(st.tuples(numbers, sides), min_size=1, max_size=8, unique=True), st.sampled_from([",", " ", ", "]))
def test_au_lists_round_trip_through_text(pairs, separator) -> None:
    names = [au_name(n, s) for n, s in pairs]
    assert parse_au_list(separator.join(names)) == names
    assert [parse_au(openface_column(name, "c").removesuffix("_c")) for name in names] == names


# -- text decoding ----------------------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@given(texts)
def test_utf8_with_or_without_bom_and_utf16_decode_exactly(text) -> None:
    assert decode_text(text.encode("utf-8"), "f") == text
    assert decode_text(codecs.BOM_UTF8 + text.encode("utf-8"), "f") == text
    assert decode_text(text.encode("utf-16"), "f") == text


@given(st.text(st.sampled_from("abcé,;ÄöüßñÇ€–“”\n"), max_size=40))
def test_windows_1252_text_decodes_exactly_when_it_is_not_utf8(text) -> None:
    data = text.encode("cp1252")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        assert decode_text(data, "f") == text
    else:
        assert decode_text(data, "f") == data.decode("utf-8")


def test_binary_data_is_not_text() -> None:
    with pytest.raises(LabelFormatError, match="not a text file"):
        decode_text(b"PK\x03\x04\x00\x00", "sheet.xlsx")
    with pytest.raises(LabelFormatError, match="neither UTF-8 nor Windows-1252"):
        decode_text(b"\x81\x8d\x8f", "odd.csv")


# -- label readers ----------------------------------------------------------------------------------

ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "utf-16")
source_names = st.text(st.sampled_from("abcdeé_-. 0123456789ÄÖÜ"), min_size=1, max_size=12).map(str.strip).filter(bool)
aus = st.lists(st.sampled_from([1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]), min_size=1, max_size=5, unique=True)


def _write(tmp_path, name: str, rows: list[list[str]], encoding: str, delimiter: str):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


@st.composite
def plain_tables(draw):
    au_numbers = draw(aus)
    sources = draw(st.lists(source_names, min_size=1, max_size=3, unique=True))
    frames = {s: draw(st.lists(st.integers(0, 5000), min_size=1, max_size=6, unique=True)) for s in sources}
    values = {
        (s, f): (draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=len(au_numbers), max_size=len(au_numbers))),
                 draw(st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=len(au_numbers), max_size=len(au_numbers))))
        for s in sources for f in frames[s]
    }
    return au_numbers, frames, values


@given(plain_tables(), st.sampled_from(ENCODINGS), st.sampled_from([",", ";", "\t"]))
def test_plain_csv_reads_back_what_was_written(tmp_path_factory, table, encoding, delimiter) -> None:
    au_numbers, frames, values = table
    names = [au_name(n) for n in au_numbers]
    header = ["source", "frame", *[openface_column(n, "c") for n in names], *[f"{n}_r" for n in names]]
    rows = [header]
    for (source, frame), (occurrence, intensity) in values.items():
        rows.append([source, str(frame), *map(str, occurrence), *["" if v is None else str(v) for v in intensity]])
    path = _write(tmp_path_factory.mktemp("plain"), "labels.csv", rows, encoding, delimiter)
    table = read_plain_csv([path])
    assert table.au_names == sorted(names, key=au_number)
    order = [table.au_names.index(n) for n in names]
    assert sorted(r.target.source for r in table.recordings) == sorted(frames)
    for recording in table.recordings:
        source = recording.target.source
        assert recording.frames.tolist() == sorted(frames[source])
        for i, frame in enumerate(recording.frames):
            occurrence, intensity = values[(source, int(frame))]
            assert recording.occurrence[i, order].tolist() == occurrence
            got = recording.intensity[i, order]
            assert [None if math.isnan(v) else int(v) for v in got] == intensity


@given(aus, st.lists(st.integers(0, 100000), min_size=1, max_size=8, unique=True), st.data(), st.sampled_from(ENCODINGS))
def test_bp4d_files_read_back_with_9_as_unknown(tmp_path_factory, au_numbers, frame_numbers, data, encoding) -> None:
    codes = [data.draw(st.lists(st.sampled_from(["0", "1", "9"]), min_size=len(au_numbers), max_size=len(au_numbers)))
             for _ in frame_numbers]
    rows = [["0", *map(str, au_numbers)], *[[str(f), *c] for f, c in zip(frame_numbers, codes)]]
    path = _write(tmp_path_factory.mktemp("bp4d"), "F001_T1.csv", rows, encoding, ",")
    table = read_bp4d([path], au_names=[au_name(n) for n in au_numbers])
    (recording,) = table.recordings
    assert recording.frames.tolist() == frame_numbers
    expected = [[-1 if c == "9" else int(c) for c in row] for row in codes]
    assert recording.occurrence.tolist() == expected


@given(st.lists(st.integers(0, 5), min_size=1, max_size=30), st.sampled_from([1.0, 2.0, 3.0, 5.0]), st.sampled_from(ENCODINGS))
def test_disfa_occurrence_is_intensity_at_least_the_threshold(tmp_path_factory, intensities, threshold, encoding) -> None:
    rows = [[str(k + 1), str(v)] for k, v in enumerate(intensities)]
    path = _write(tmp_path_factory.mktemp("disfa"), "SN001_au12.txt", rows, encoding, ",")
    table = read_disfa([path], threshold=threshold)
    (recording,) = table.recordings
    assert recording.frames.tolist() == list(range(len(intensities)))  # line k is video frame k-1
    assert recording.intensity[:, 0].tolist() == intensities
    assert recording.occurrence[:, 0].tolist() == [int(v >= threshold) for v in intensities]


@given(st.lists(st.text(st.sampled_from("ab1_ é"), max_size=5), min_size=1, max_size=6), st.sampled_from([",", ";", "\t"]))
def test_the_delimiter_of_a_header_is_found(cells, delimiter) -> None:
    line = delimiter.join(cells)
    found = csv_delimiter(line + "\n1" + delimiter + "2\n")
    assert found == delimiter


# -- the store's rollback journal -------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 300), st.binary(min_size=1, max_size=80)),
        st.tuples(st.just("truncate"), st.integers(0, 300), st.just(b"")),
        st.tuples(st.just("read"), st.integers(0, 300), st.integers(1, 80)),
        st.tuples(st.just("commit"), st.just(0), st.just(b"")),
    ),
    max_size=25,
)


@given(st.binary(max_size=200), operations, st.booleans())
def test_the_journal_gives_back_the_last_commit_or_everything_committed(tmp_path_factory, initial, ops, crash) -> None:
    """Any mix of writes, truncations, reads and commits on a JournaledFile; then a crash (close
    without commit, then the next open's recovery) leaves the last committed bytes, a commit all."""
    from aucli.store.journal import JournaledFile, recover

    path = tmp_path_factory.mktemp("journal") / "f.bin"
    path.write_bytes(initial)
    committed, current = bytes(initial), bytearray(initial)
    io = JournaledFile(path)
    for op, at, value in ops:
        if op == "write":
            current.extend(bytes(max(0, at - len(current))))
            current[at : at + len(value)] = value
            io.seek(at)
            io.write(value)
        elif op == "truncate":
            current = current[:at] + bytearray(max(0, at - len(current)))
            io.truncate(at)
        elif op == "read":
            buffer = bytearray(value)
            io.seek(at)
            io.readinto(buffer)
            expected = bytes(current[at : at + value])
            assert bytes(buffer) == expected + bytes(value - len(expected))
        else:
            io.commit()
            committed = bytes(current)
    if crash:
        io.close()
        recover(path)
        assert path.read_bytes() == committed
    else:
        io.commit()
        io.close()
        assert path.read_bytes() == bytes(current)
    assert not (path.parent / "f.bin.journal").exists()


_path_parts = st.lists(st.sampled_from(["a", "b.csv", "..", ".", "", "/", "/etc", "c d", "é"]), max_size=6)


@given(_path_parts)
def test_a_path_read_back_from_a_manifest_resolves_inside_its_folder_or_is_refused(tmp_path_factory, parts) -> None:
    """Any name made of ordinary parts, ``..``, ``.`` and absolute roots: resolve_inside gives a path
    inside the folder or refuses with one UsageError; it never points elsewhere."""
    from aucli.errors import UsageError
    from aucli.fileio import resolve_inside

    folder = tmp_path_factory.mktemp("manifest")
    name = "/".join(parts)
    try:
        target = resolve_inside(folder, name, "predictions.json")
    except UsageError as error:
        assert "predictions.json" in str(error)
        return
    assert target.is_relative_to(folder.resolve())


def test_a_symlink_out_of_the_folder_is_refused(tmp_path) -> None:
    from aucli.errors import UsageError
    from aucli.fileio import resolve_inside

    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "link").symlink_to(outside)
    with pytest.raises(UsageError, match="lies outside"):
        resolve_inside(folder, "link/victim.txt", "predictions.json")
    assert resolve_inside(folder, "tables/a.csv", "predictions.json") == folder.resolve() / "tables" / "a.csv"
