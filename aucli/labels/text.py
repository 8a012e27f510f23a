"""Text files as spreadsheets save them: the encoding and the CSV delimiter, found, not assumed.

Excel saves "CSV UTF-8" with a byte-order mark, plain "CSV" in the Windows code page (cp1252 in
Western Europe and the Americas), "Unicode text" in UTF-16, and uses ``;`` as the delimiter
where ``,`` is the decimal comma. Every label or correction file aucli reads goes through
:func:`read_text` and :func:`csv_delimiter`.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from aucli.errors import LabelFormatError

__all__ = ["csv_delimiter", "decode_text", "read_text"]

_DELIMITERS = (",", ";", "\t")


def decode_text(data: bytes, where: str) -> str:
    """Decode the bytes of a text file: UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252.

    Raises:
        LabelFormatError: ``data`` is not text in any of these encodings (a binary file).
    """
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data[len(codecs.BOM_UTF8) :].decode("utf-8")
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
    except UnicodeDecodeError:
        raise LabelFormatError(f"{where}: not a text file (it starts with a byte-order mark but does not decode)") from None
    if b"\x00" in data:
        raise LabelFormatError(f"{where}: not a text file (it holds NUL bytes); save it as CSV")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise LabelFormatError(f"{where}: not a text file (neither UTF-8 nor Windows-1252); save it as CSV UTF-8") from None


def read_text(path: str | Path) -> str:
    """The text of a file (see :func:`decode_text`); unreadable files raise LabelFormatError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LabelFormatError(f"{path}: cannot be read ({error.strerror or error})") from None
    return decode_text(data, str(path))


def csv_delimiter(text: str) -> str:
    """The delimiter of a CSV text: the one of ``,`` ``;`` tab most frequent in its first line
    that holds any (``,`` when none does)."""
    for line in text.splitlines():
        counts = {d: line.count(d) for d in _DELIMITERS}
        if any(counts.values()):
            return max(_DELIMITERS, key=lambda d: counts[d])  # ties: the earlier one, "," first
    return ","
