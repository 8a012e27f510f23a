"""Several sources at once: face extraction in worker processes, storing in the main process.

Each worker runs ``extract_faces`` on one source and writes what it finds into a *part* file (a
small HDF5 file beside the store); the main process, the store's only writer, copies finished
parts into the store in input order and commits each source as usual. So the store's layout and
its commit protocol are those of a one-process run, and the rows come out in the same order.
At most ``2 x workers`` sources are in flight, which bounds the parts on disk.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from aucli.errors import MediaError, StoreError
from aucli.store.journal import SafeFile

__all__ = ["PartReader", "extract_to_part", "parallel_extractions", "parts_folder"]

_SLAB = 64
_DETECTORS: dict[Any, Any] = {}


def parts_folder(store_path: Path) -> Path:
    """The folder beside the store where workers leave their parts (``.corpus.h5.parts``)."""
    return store_path.with_name(f".{store_path.name}.parts")


def _detector(options):
    key = (options.detector, str(options.models_dir), options.detect_width, options.threshold, options.threads, options.device)
    if key not in _DETECTORS:
        from aucli.faces.pipeline import make_face_detector

        _DETECTORS[key] = make_face_detector(options)
    return _DETECTORS[key]


def extract_to_part(source, options, part: str) -> str:
    """(In a worker) extract the faces of ``source`` into the part file; returns the decoding
    error message ("" when none): frames decoded before an error are kept, as in one process.

    Raises:
        StoreError: the disk refused a write (full, I/O error): the run stops cleanly.
    """
    import h5py

    io = SafeFile.create(Path(part))  # HDF5 never meets the write error, so it cannot crash on it
    try:
        with h5py.File(io, "w") as f:
            failure = _extract(source, options, f, io)
    finally:
        io.close()
    if io.failed is not None:  # closing writes the file's header last
        raise _part_error(io)
    return failure


def _extract(source, options, f, io: SafeFile) -> str:
    from aucli.faces.pipeline import extract_faces

    size = options.crop_size
    frames = f.create_dataset("frames", shape=(0, 3), maxshape=(None, 3), chunks=(1024, 3), dtype=np.float64)
    images = f.create_dataset(
        "image", shape=(0, size, size, 3), maxshape=(None, size, size, 3), chunks=(_SLAB, size, size, 3), dtype=np.uint8
    )
    meta = f.create_dataset("meta", shape=(0, 16), maxshape=(None, 16), chunks=(1024, 16), dtype=np.float64)
    frame_rows: list[list[float]] = []
    crops: list[np.ndarray] = []
    rows: list[np.ndarray] = []

    def write() -> None:
        for dataset, values in ((frames, frame_rows), (images, crops), (meta, rows)):
            if values:
                start = dataset.shape[0]
                dataset.resize(start + len(values), axis=0)
                dataset[start:] = np.asarray(values)
                values.clear()
        if io.failed is not None:
            raise _part_error(io)

    failure = ""
    try:
        for result in extract_faces(source, options, detector=_detector(options)):
            frame_rows.append([result.frame_index, result.timestamp, len(result.faces)])
            for face in result.faces:
                crops.append(face.crop)
                box, landmarks = np.asarray(face.box, np.float64).ravel(), np.asarray(face.landmarks, np.float64).ravel()
                rows.append(np.concatenate([[face.track_id, face.score], box, landmarks]))
            if len(crops) >= _SLAB or len(frame_rows) >= 1024:
                write()
    except MediaError as error:
        failure = str(error)
    write()
    f.attrs["failure"] = failure
    return failure


def _part_error(io: SafeFile) -> StoreError:
    """The message of a part the disk refused (parts lie in a folder beside the store)."""
    error, folder = io.failed, io.path.parent.parent
    if error is not None and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"{folder}: the disk is full (a worker was writing the faces of a source there); "
            "free some space and rerun the same command to continue"
        )
    return StoreError(f"{folder}: a worker could not write the faces of a source there ({error}); check the disk and rerun")


class PartReader:
    """Frames of a finished part, as ``(frame_index, timestamp, faces)``; raises the source's
    decoding error (``MediaError``) after its last frame, as ``extract_faces`` would."""

    def __init__(self, part: Path) -> None:
        self.part = part

    def __iter__(self) -> Iterator[tuple[int, float, list[Any]]]:
        import h5py

        with h5py.File(self.part, "r") as f:
            frames = f["frames"][()]
            failure = str(f.attrs["failure"])
            images, meta = f["image"], f["meta"]
            row = 0
            slab_start, slab_images, slab_meta = 0, images[:0], meta[:0]
            for frame_index, timestamp, n_faces in frames:
                faces = []
                for _ in range(int(n_faces)):
                    if row >= slab_start + len(slab_images):
                        slab_start = row
                        slab_images, slab_meta = images[row : row + _SLAB], meta[row : row + _SLAB]
                    values = slab_meta[row - slab_start]
                    faces.append(
                        SimpleNamespace(
                            crop=slab_images[row - slab_start],
                            track_id=int(values[0]),
                            score=float(values[1]),
                            box=values[2:6],
                            landmarks=values[6:16].reshape(5, 2),
                        )
                    )
                    row += 1
                yield int(frame_index), float(timestamp), faces
        if failure:
            raise MediaError(failure)


def parallel_extractions(sources: list, options, workers: int, store_path: Path) -> Iterator[tuple[Any, PartReader]]:
    """Yield ``(source, frames)`` in input order while ``workers`` processes extract ahead.

    A part is deleted once the caller asks for the next source. On any exception (Ctrl-C
    included) the workers are stopped and the parts folder removed.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder = parts_folder(store_path)
    shutil.rmtree(folder, ignore_errors=True)  # left by a run that was killed: we hold the store's lock
    folder.mkdir()
    if options.threads is None:
        options = dataclasses.replace(options, threads=max(1, (os.cpu_count() or 1) // workers))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    queue: deque = deque()
    pending = iter(enumerate(sources))

    def submit() -> None:
        item = next(pending, None)
        if item is not None:
            index, source = item
            part = folder / f"{index:08d}.h5"
            queue.append((source, part, pool.submit(extract_to_part, source, options, str(part))))

    try:
        for _ in range(2 * workers):
            submit()
        while queue:
            source, part, future = queue.popleft()
            future.result()
            submit()
            yield source, PartReader(part)
            part.unlink(missing_ok=True)
    except BaseException:
        # stop the workers now (the executor would finish their sources first)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(folder, ignore_errors=True)
