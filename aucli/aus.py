"""Action Unit names: parsing, canonical spelling, standard AU sets and side coding.

Canonical spelling is ``AU<number>`` without zero padding (``AU1``, ``AU12``), as in the BP4D and
DISFA literature; side-coded AUs (CASME II's ``L10``, ``R12``) are ``AU10L`` / ``AU12R``.
Output tables use OpenFace's zero-padded spelling (``AU01_c``), see :func:`openface_column`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

from aucli.errors import UnknownAUError

#: FACS names of the Action Units aucli knows about.
FACS_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    11: "nasolabial deepener",
    12: "lip corner puller",
    14: "dimpler",
    15: "lip corner depressor",
    16: "lower lip depressor",
    17: "chin raiser",
    18: "lip pucker",
    20: "lip stretcher",
    22: "lip funneler",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
    27: "mouth stretch",
    28: "lip suck",
    38: "nostril dilator",
    39: "nostril compressor",
    43: "eyes closed",
    45: "blink",
}

BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
CASME2_AUS: tuple[int, ...] = (1, 2, 4, 7, 12, 14, 15, 17)

#: Named AU sets accepted wherever a list of AUs is expected (``--aus bp4d``).
AU_SETS: dict[str, tuple[int, ...]] = {"bp4d": BP4D_AUS, "disfa": DISFA_AUS, "casme2": CASME2_AUS}

#: ``[0-9]`` rather than ``\d``: other scripts' digits are not AU numbers; at most 3 digits (FACS
#: codes stop at 99), so a long digit string is an unknown name, not an int conversion error.
_AU_PATTERN = re.compile(r"^\s*(?:AU)?\s*([LR])?\s*0*([0-9]{1,3})\s*([LR])?\s*$", re.IGNORECASE)


def au_name(number: int, side: str | None = None) -> str:
    """Canonical name of an AU: ``au_name(12) == "AU12"``, ``au_name(10, "L") == "AU10L"``."""
    return f"AU{int(number)}{(side or '').upper()}"


def parse_au(text: str | int, *, known: Sequence[str] | None = None) -> str:
    """Parse ``"AU12"``, ``"au01"``, ``"12"``, ``12``, ``"L10"`` or ``"AU10R"`` to its canonical name.

    With ``known`` the result must be one of those names; otherwise the error suggests close ones.
    """
    raw = str(text)
    match = _AU_PATTERN.match(raw)
    if match is None or (match.group(1) and match.group(3)):
        raise UnknownAUError(_unknown_message(raw, known))
    side = match.group(1) or match.group(3)
    name = au_name(int(match.group(2)), side)
    if known is not None and name not in known:
        raise UnknownAUError(_unknown_message(raw, known))
    return name


def parse_au_list(spec: str | Iterable[str | int]) -> list[str]:
    """Parse ``"bp4d"``, ``"1,2,4"``, ``"AU1 AU2"`` or an iterable of names into canonical names.

    Duplicates are refused: an AU set is an ordered list of distinct AUs.
    """
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in AU_SETS:
            return [au_name(n) for n in AU_SETS[key]]
        items: Iterable[str | int] = [p for p in re.split(r"[,\s]+", spec.strip()) if p]
    else:
        items = spec
    names = [parse_au(item) for item in items]
    if not names:
        raise UnknownAUError("the AU list is empty; give names like 'AU1,AU2' or a set: bp4d, disfa, casme2")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UnknownAUError(f"AU list names {', '.join(duplicates)} more than once")
    return names


def au_number(name: str) -> int:
    """The FACS number of a canonical or loose AU name (side ignored): ``au_number("AU10L") == 10``."""
    match = _AU_PATTERN.match(str(name))
    if match is None:
        raise UnknownAUError(_unknown_message(str(name), None))
    return int(match.group(2))


def au_side(name: str) -> str | None:
    """``"L"``, ``"R"`` or ``None`` for a bilateral AU."""
    match = _AU_PATTERN.match(str(name))
    if match is None:
        raise UnknownAUError(_unknown_message(str(name), None))
    side = match.group(1) or match.group(3)
    return side.upper() if side else None


def describe_au(name: str) -> str:
    """Human-readable description, e.g. ``"AU12 lip corner puller"``."""
    facs = FACS_NAMES.get(au_number(name), "")
    side = {"L": " (left)", "R": " (right)"}.get(au_side(name) or "", "")
    return f"{name} {facs}{side}".strip()


def openface_column(name: str, suffix: str) -> str:
    """OpenFace-style column: ``openface_column("AU1", "c") == "AU01_c"``; side kept as ``AU10L_c``."""
    side = au_side(name) or ""
    return f"AU{au_number(name):02d}{side}_{suffix}"


def flip_permutation(au_names: Sequence[str]) -> list[int]:
    """Column permutation that a horizontal flip applies to a label vector.

    A flip swaps left and right, so ``AU10L`` takes the value of ``AU10R`` and vice versa; bilateral
    AUs stay. ``labels_flipped = labels[..., perm]``. A side-coded AU whose partner is absent stays.
    """
    index = {name: i for i, name in enumerate(au_names)}
    perm = []
    for i, name in enumerate(au_names):
        side = au_side(name)
        if side is None:
            perm.append(i)
            continue
        partner = au_name(au_number(name), "R" if side == "L" else "L")
        perm.append(index.get(partner, i))
    return perm


def _unknown_message(raw: str, known: Sequence[str] | None) -> str:
    shown = raw if len(raw) <= 40 else f"{raw[:37]}..."
    message = f"unknown AU name {shown!r}"
    if known:
        close = difflib.get_close_matches(str(raw).upper(), list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"{message}{hint} (this AU set: {', '.join(known)})"
    return f"{message}; expected names like AU1, AU12, 12 or L10"
