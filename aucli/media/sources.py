"""Find the media a preprocess run reads: videos, single images and folders of frame images.

``discover_sources`` turns what a user typed (paths, globs, list files) into a list of
:class:`MediaSource`, each with a stable ``key`` (its path relative to a common root, posix style),
a ``subject`` and a ``recording`` taken from the path by a pattern. Inputs that cannot be used are
reported as plain messages in ``DiscoveryResult.problems`` (the batch goes on); only a bad pattern
raises, because it would mislabel every source.

Conventions:
- A folder that directly holds image files is ONE ``frames`` source (a frame sequence, as BP4D and
  CASME II ship them); a folder is searched recursively for such frame folders and for videos.
  Single images are sources of kind ``image`` only when named directly or matched by a glob.
- Default subject patterns (the last match in the path wins): BP4D ``F001/T1`` or ``F001_T1``,
  DISFA ``SN001`` (recording = file stem, e.g. ``LeftVideoSN001_comp``), CASME II
  ``sub01/EP02_01f``. Otherwise subject and recording are the source's own name (file stem or
  folder name). A user pattern is a regular expression with a named group ``subject`` and an
  optional group ``recording``, searched in the source's absolute posix path; a source it does not
  match is reported as a problem and skipped.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aucli.errors import UsageError

__all__ = [
    "DEFAULT_PATTERNS",
    "IMAGE_EXTENSIONS",
    "LIST_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "DiscoveryResult",
    "MediaSource",
    "discover_sources",
    "is_utf8",
    "list_frame_files",
    "natural_key",
    "printable_path",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: A list file names one input (path or glob) per line; blank lines and ``#`` comments are skipped.
LIST_EXTENSIONS = frozenset({".txt", ".lst"})

#: (corpus, regex) tried in order; groups ``subject`` and optionally ``recording``.
DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("BP4D", r"(?<![A-Za-z0-9])(?P<subject>[FM]\d{3})[/_](?P<recording>T\d+)(?![0-9])"),
    ("CASME II", r"(?<![A-Za-z0-9])(?P<subject>sub\d{2,})/(?P<recording>EP[A-Za-z0-9_\-]+)"),
    ("DISFA", r"(?P<subject>SN\d{3})(?![0-9])"),
)

_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class MediaSource:
    """One input of a preprocess run.

    Attributes:
        path: the video or image file, or the folder of frame images.
        kind: ``video``, ``image`` (one still) or ``frames`` (a folder of frame images).
        key: stable id inside a corpus: the path relative to the common root, posix style.
        subject: the person, from the path by a pattern (``F001``, ``SN001``, ``sub01``).
        recording: the task or clip (``T1``, ``EP02_01f``, the file stem).
    """

    path: Path
    kind: Literal["video", "image", "frames"]
    key: str
    subject: str
    recording: str


@dataclass
class DiscoveryResult:
    """What ``discover_sources`` found: usable sources, and one message per input it skipped."""

    sources: list[MediaSource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    root: Path | None = None


def is_utf8(text: str) -> bool:
    """False for a path decoded from bytes that are not UTF-8 (``os.fsdecode`` keeps them as
    surrogates, which no UTF-8 file, terminal or HDF5 string accepts)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path: str | Path) -> str:
    """A path as text that can be printed anywhere: bytes that are not UTF-8 as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def natural_key(text: str) -> tuple:
    """Sort key where digit runs compare as numbers: ``img2`` < ``img10``."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text))


def list_frame_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, in natural order (hidden files skipped)."""
    files = [
        entry
        for entry in Path(folder).iterdir()
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS and not entry.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _compile_pattern(pattern: str | None) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise UsageError(f"Subject pattern {pattern!r} is not a valid regular expression: {error}.") from None
    if "subject" not in compiled.groupindex:
        raise UsageError(
            f"Subject pattern {pattern!r} has no named group 'subject'; "
            r"write it like '(?P<subject>S\d+)/(?P<recording>[^/]+)'."
        )
    return compiled


def _last_match(regex: re.Pattern, text: str) -> re.Match | None:
    match = None
    for match in regex.finditer(text):
        pass
    return match


def _own_name(path: Path, kind: str) -> str:
    return path.name if kind == "frames" else path.stem


def _subject_recording(path: Path, kind: str, pattern: re.Pattern | None) -> tuple[str, str] | None:
    """(subject, recording) from the path, or None when a user pattern does not match."""
    text = Path(os.path.abspath(path)).as_posix()  # as the user named it: symlinks not followed
    if pattern is not None:
        match = _last_match(pattern, text)
        if match is None or not match.group("subject"):
            return None
        recording = match.groupdict().get("recording") or _own_name(path, kind)
        return match.group("subject"), recording
    for _corpus, default in DEFAULT_PATTERNS:
        match = _last_match(re.compile(default), text)
        if match is not None:
            recording = match.groupdict().get("recording") or _own_name(path, kind)
            return match.group("subject"), recording
    name = _own_name(path, kind)
    return name, name


def _walk_folder(folder: Path) -> Iterable[tuple[Path, str]]:
    """(path, kind) of every frame folder and video under ``folder`` (itself included), sorted."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        here = Path(current)
        visible = [f for f in files if not f.startswith(".")]
        if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in visible):
            yield here, "frames"
        for name in sorted(visible, key=natural_key):
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                yield here / name, "video"


def _classify_file(path: Path) -> tuple[str | None, str | None]:
    """(kind, problem) for a file named by the user."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        return None, f"{path}: empty file (0 bytes), skipped"
    if suffix in VIDEO_EXTENSIONS:
        return "video", None
    if suffix in IMAGE_EXTENSIONS:
        return "image", None
    return None, (
        f"{path}: not a video or image (extension {suffix or 'none'!r}; expected one of "
        f"{', '.join(sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))}), skipped"
    )


def _expand(inputs: Sequence[str], problems: list[str], seen_lists: set[Path]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for raw in inputs:
        text = os.path.expanduser(str(raw))
        if _GLOB_CHARS.search(text) and not Path(text).exists():
            matches = sorted(glob.glob(text, recursive=True), key=natural_key)
            if not matches:
                problems.append(f"{raw}: the pattern matched no file or folder")
            for match in matches:
                found.extend(_expand_path(Path(match), problems, seen_lists, from_glob=True))
            continue
        found.extend(_expand_path(Path(text), problems, seen_lists, from_glob=False))
    return found


def _expand_path(path: Path, problems: list[str], seen_lists: set[Path], *, from_glob: bool) -> list[tuple[Path, str]]:
    if not path.exists():
        problems.append(f"{path}: no such file or folder")
        return []
    if path.is_dir():
        found = list(_walk_folder(path))
        if not found:
            problems.append(f"{path}: folder holds no frame images or videos (looked for {', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))})")
        return found
    if path.suffix.lower() in LIST_EXTENSIONS and not from_glob:
        resolved = path.resolve()
        if resolved in seen_lists:
            problems.append(f"{path}: list file includes itself, skipped")
            return []
        seen_lists.add(resolved)
        lines = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            entry = Path(os.path.expanduser(line))
            lines.append(str(entry if entry.is_absolute() else path.parent / entry))
        if not lines:
            problems.append(f"{path}: list file names no inputs")
        return _expand(lines, problems, seen_lists)
    kind, problem = _classify_file(path)
    if problem is not None:
        problems.append(problem)
        return []
    return [(path, kind)]


def _utf8_only(found: list[tuple[Path, str]], problems: list[str]) -> list[tuple[Path, str]]:
    """The found inputs whose absolute path is UTF-8 text; one problem line for each other one."""
    kept = []
    for path, kind in found:
        if is_utf8(str(path.resolve())):
            kept.append((path, kind))
            continue
        problems.append(
            f"{printable_path(path.resolve())}: the path is not valid UTF-8 text, which the store needs for its names; "
            "rename it (e.g. `convmv -f latin1 -t utf-8 --notest PATH`), skipped"
        )
    return kept


def discover_sources(
    inputs: Sequence[str | Path],
    *,
    pattern: str | None = None,
    root: str | Path | None = None,
) -> DiscoveryResult:
    """Find the media named by ``inputs``.

    Args:
        inputs: paths to videos, images or folders; globs (``clips/*.mp4``, ``BP4D/**/T1``);
            list files (``.txt``/``.lst``, one path or glob a line, relative to the list's folder).
        pattern: regex with named groups ``subject`` (and optionally ``recording``) applied to each
            source's absolute posix path; default: the BP4D, DISFA and CASME II layouts, then the
            source's own name.
        root: folder the keys are relative to; default: the common parent folder of all sources.
            Pass the corpus root to keep keys stable when later runs add more inputs.

    Returns:
        sources (sorted by key, duplicates removed) and problems (one message per skipped input).

    Raises:
        UsageError: ``pattern`` is not a regex with a ``subject`` group.
    """
    compiled = _compile_pattern(pattern)
    problems: list[str] = []
    found = _expand([str(item) for item in inputs], problems, set())

    unique: dict[Path, tuple[Path, str]] = {}
    for path, kind in _utf8_only(found, problems):
        unique.setdefault(path.resolve(), (path, kind))
    if not unique:
        return DiscoveryResult([], problems, None)

    if root is not None:
        base = Path(root).expanduser().resolve()
    else:
        base = Path(os.path.commonpath([str(p.parent) for p in unique]))
    sources: list[MediaSource] = []
    keys: dict[str, Path] = {}
    for resolved, (path, kind) in unique.items():
        try:
            key = resolved.relative_to(base).as_posix()
        except ValueError:
            key = resolved.as_posix()
        names = _subject_recording(path, kind, compiled)
        if names is None:
            problems.append(f"{path}: the subject pattern {pattern!r} does not match this path, skipped")
            continue
        if key in keys:
            problems.append(f"{path}: same key {key!r} as {keys[key]}, skipped")
            continue
        keys[key] = resolved
        sources.append(MediaSource(path=resolved, kind=kind, key=key, subject=names[0], recording=names[1]))  # type: ignore[arg-type]
    sources.sort(key=lambda s: natural_key(s.key))
    return DiscoveryResult(sources, problems, base)
