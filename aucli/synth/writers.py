"""Files of a synthetic corpus: videos, frame folders, label files in the field's formats, manifest.

Every writer is atomic (a temporary name, then ``os.replace``) and deterministic (no time stamps,
sorted keys where order is free), so the same seed gives byte-identical label files and manifest.

Formats (see DESIGN.md section 4 and :mod:`aucli.labels`):

- BP4D ``AUCoding/AU_OCC/F001_T1.csv``: header ``0,1,...,99`` (column 0 the frame, column k AU k),
  one row per frame; 1 present, 0 absent, 9 not coded (every AU the corpus does not render, and
  uncoded frames). The frame is the number in the frame image's name (``2440.jpg``), or the
  0-based video frame index when the recording is a video.
- DISFA ``ActionUnit_Labels/SN001/SN001_au12.txt``: ``frame,intensity`` lines, frames 1, 2, ...;
  line k belongs to video frame k-1; intensity is the FACS level 0-5 (occurrence: >= 2).
- CASME II coding sheet (CSV): Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
  Action Units, Estimated Emotion; frames are the numbers in the clip's image names (``img46.jpg``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "VideoWriter",
    "FrameFolderWriter",
    "atomic_write_text",
    "write_json",
    "write_npz",
    "read_npz",
    "bp4d_csv",
    "disfa_files",
    "casme2_sheet",
]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: Path, payload: Any) -> None:
    """Deterministic, indented JSON (numpy values become plain ones)."""

    def default(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        if isinstance(value, Path):
            return value.as_posix()
        raise TypeError(f"cannot write {type(value).__name__} to JSON")

    atomic_write_text(path, json.dumps(payload, indent=1, default=default) + "\n")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` without time stamps (``np.savez`` stores the current time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())
    os.replace(tmp, path)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (no pickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class VideoWriter:
    """H.264 mp4 through PyAV, one RGB frame at a time; the file appears only when closed cleanly.

    Encoded single-threaded, bit-exact, with fixed settings: the same frames give the same bytes.
    """

    def __init__(self, path: Path, size: int, fps: float, *, crf: int = 18) -> None:
        import av

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        # bitexact: no encoder version strings or creation times, so the same frames give the same file
        self.container = av.open(str(self.tmp), mode="w", format="mp4", options={"fflags": "+bitexact"})
        from fractions import Fraction

        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width = size
        self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.thread_count = 1
        self.stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        self.n_frames = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
        self.n_frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class FrameFolderWriter:
    """A folder of numbered JPEG frames (``2440.jpg`` or ``img46.jpg``), renamed into place at the end."""

    def __init__(self, folder: Path, *, prefix: str = "", first_number: int = 0, quality: int = 95) -> None:
        self.folder = folder
        self.tmp = folder.with_name(f".{folder.name}.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.prefix = prefix
        self.number = first_number
        self.quality = quality
        self.n_frames = 0

    def write(self, frame: np.ndarray) -> None:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OSError(f"cannot encode frame {self.number} as JPEG")
        (self.tmp / f"{self.prefix}{self.number}.jpg").write_bytes(data.tobytes())
        self.number += 1
        self.n_frames += 1

    def close(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.folder)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def bp4d_csv(levels: np.ndarray, frame_numbers: Sequence[int], aus: Sequence[int]) -> str:
    """BP4D AU_OCC text: ``levels`` (n, n_aus) int with -1 uncoded; 1 where level >= 1."""
    columns = {au: k for k, au in enumerate(aus)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(range(100))
    for row, frame in zip(np.asarray(levels), frame_numbers):
        cells: list[int] = [int(frame)]
        for au in range(1, 100):
            k = columns.get(au)
            if k is None or row[k] < 0:
                cells.append(9)
            else:
                cells.append(1 if row[k] >= 1 else 0)
        writer.writerow(cells)
    return out.getvalue()


def disfa_files(levels: np.ndarray, aus: Sequence[int], subject: str) -> dict[str, str]:
    """DISFA per-AU files: ``{"SN001_au12.txt": "1,0\\n2,3\\n..."}``; uncoded (-1) frames write 0."""
    files = {}
    values = np.clip(np.asarray(levels), 0, 5)
    for k, au in enumerate(aus):
        lines = [f"{i + 1},{int(v)}" for i, v in enumerate(values[:, k])]
        files[f"{subject}_au{au}.txt"] = "\n".join(lines) + "\n"
    return files


def casme2_sheet(rows: Iterable[dict[str, Any]]) -> str:
    """The coding sheet as CSV, in CASME II's column order."""
    columns = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in columns})
    return out.getvalue()
