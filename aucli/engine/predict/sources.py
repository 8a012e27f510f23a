"""The media inputs of ``aucli predict``: discovery, their order, sharding, and their faces as a stream.

Inputs are found as ``aucli preprocess`` finds them (videos, images, frame folders, folders to
search, globs, list files; keys relative to the folder the user named) and sorted by natural key
order: shards and ``aucli predict merge`` rely on that order. ``shard=(i, n)`` keeps every n-th
source of the sorted key list, starting at the i-th, so that n processes or machines split a
corpus. :func:`face_stream` runs the preprocess face pipeline source after source (in threads, or
in ``workers`` processes as ``aucli preprocess --workers``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aucli.errors import MediaError, UsageError
from aucli.faces.pipeline import FaceOptions, extract_faces
from aucli.media.sources import MediaSource, discover_sources, natural_key
from aucli.preprocess import _expected_frames as expected_frames  # the estimate aucli preprocess shows
from aucli.preprocess import _rekey
from aucli.preprocess_workers import parallel_extractions

__all__ = ["MediaInputs", "expected_frames", "face_stream", "find_inputs", "parse_shard", "shard_of"]

#: One sampled frame of a source: ``(frame index, timestamp, faces)`` (faces: aucli.faces.pipeline.FaceRecord).
Frame = tuple[int, float, list]


@dataclass
class MediaInputs:
    """The discovered media inputs in natural key order, and what could not be used (one line each)."""

    sources: list[MediaSource]
    problems: list[str]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.sources]


def find_inputs(inputs: Sequence[str | Path], *, pattern: str | None = None, root: str | Path | None = None) -> MediaInputs:
    """The media sources named by ``inputs``, sorted by key; :class:`MediaError` when there is none.

    ``pattern`` and ``root``: the subject pattern and the key root of the discovery (see
    :func:`aucli.media.sources.discover_sources`; without ``root`` keys are relative to the folders named).
    """
    found = discover_sources(inputs, pattern=pattern, root=root)
    if root is None:
        found = _rekey(found, inputs)
    if not found.sources:
        first = f": {found.problems[0]}" if found.problems else ""
        more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
        raise MediaError(f"no usable input: the inputs name no video, image or frame folder{first}{more}")
    return MediaInputs(sorted(found.sources, key=lambda s: natural_key(s.key)), list(found.problems))


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``: the 2nd of 4 shards (numbered 1..n); None stays None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if match is None:
            raise UsageError(f"--shard must look like i/n (e.g. 2/4: the 2nd of 4 shards), got {shard!r}")
        index, count = int(match.group(1)), int(match.group(2))
    else:
        index, count = int(shard[0]), int(shard[1])
    if count < 1 or not 1 <= index <= count:
        raise UsageError(f"--shard {index}/{count}: shards are numbered 1..n with n >= 1 (e.g. 1/{max(count, 2)})")
    return index, count


def shard_of(keys: Sequence[str], shard: tuple[int, int] | None) -> list[int]:
    """Positions in ``keys`` (sorted, as discovered) that belong to ``shard``: every n-th from the i-th."""
    if shard is None:
        return list(range(len(keys)))
    index, count = shard
    return [j for j in range(len(keys)) if j % count == index - 1]


def face_stream(
    sources: list[MediaSource], options: FaceOptions, detector: Any, workers: int, anchor: Path
) -> Iterator[tuple[int, Iterable[Frame]]]:
    """``(position in sources, frames)`` per source, in order; ``workers > 1`` extracts in processes
    (their part files under ``anchor``), else the pipeline's threads with ``detector``."""
    if workers > 1 and len(sources) > 1:
        for position, (_source, frames) in enumerate(parallel_extractions(sources, options, workers, anchor)):
            yield position, frames
        return
    for position, source in enumerate(sources):
        yield position, ((r.frame_index, r.timestamp, r.faces) for r in extract_faces(source, options, detector=detector))
