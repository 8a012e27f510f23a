"""Helpers that build small real stores for the store, label and preprocess tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from aucli.store import CorpusStore, SourceInfo


def fake_face(value: int, *, size: int, track: int = 0, score: float = 0.9) -> SimpleNamespace:
    """A face record shaped like aucli.faces.pipeline.FaceRecord; its crop is filled with ``value``."""
    return SimpleNamespace(
        crop=np.full((size, size, 3), value % 256, np.uint8),
        box=np.array([1, 2, 3, 4], np.float32) + value,
        landmarks=np.arange(10, dtype=np.float32).reshape(5, 2) + value,
        score=score,
        track_id=track,
    )


def source_info(key: str, subject: str = "S1", recording: str | None = None, kind: str = "video") -> SourceInfo:
    return SourceInfo(
        key=key, path=f"/data/{key}", kind=kind, subject=subject, recording=recording or key, size=10, mtime_ns=1, digest="d"
    )


def add_source(
    store: CorpusStore,
    key: str,
    frames,
    *,
    subject: str = "S1",
    recording: str | None = None,
    noface=(),
    offset: int = 0,
    tracks: int = 1,
):
    """Commit a source whose frame f holds ``tracks`` faces (crop value offset + f), none on ``noface``."""
    writer = store.begin_source(source_info(key, subject, recording))
    for f in frames:
        faces = [] if f in noface else [fake_face(offset + f, size=store.crop_size, track=t) for t in range(tracks)]
        writer.add_frame(f, f / 25, faces)
    return writer.commit()


def build_store(path: Path, inputs, *, crop_size: int = 32, detector: str = "none", **options) -> Path:
    """Preprocess ``inputs`` into ``path`` with the real pipeline (``--detector none`` by default)."""
    from aucli.faces.pipeline import FaceOptions
    from aucli.preprocess import run_preprocess

    run_preprocess(
        [str(i) for i in inputs],
        path,
        face_options=FaceOptions(detector=detector, crop_size=crop_size, **options),
        show_progress=False,
    )
    return path


def write_clip_folder(folder: Path, numbers, *, prefix: str = "img", size=(96, 72)) -> list[Path]:
    """A CASME II-style clip folder: ``img46.jpg``, ``img47.jpg``, ... each with the face."""
    from media_fixtures import write_frame_folder

    files = write_frame_folder(folder, list(numbers), size=size)
    return [f.rename(f.with_name(f"{prefix}{f.name}")) for f in files]
