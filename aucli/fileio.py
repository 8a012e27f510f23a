"""Files that are never half-written: atomic writes, tensor files, hashes, values made safe for JSON.

Every output aucli writes outside the HDF5 store (checkpoints, run folders, prediction tables,
manifests) goes through :func:`atomic_write_bytes`: a temporary file beside the target, fsync,
then a rename over it, so a reader sees the old file or the new one, never a partial one.
Tensors are written as safetensors (:func:`save_tensors`): nothing aucli reads is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "json_safe",
    "file_mode",
    "file_sha256",
    "save_tensors",
    "load_tensors",
    "resolve_inside",
]


def file_mode() -> int:
    """Permissions of a new file under the process' umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename it over ``path``."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, file_mode())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 ``text`` written with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any) -> None:
    """Indented JSON of :func:`json_safe` ``payload``, written atomically."""
    atomic_write_text(path, json.dumps(json_safe(payload), indent=2) + "\n")


def json_safe(value: Any) -> Any:
    """Numpy scalars/arrays, tuples and paths -> plain JSON values; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def resolve_inside(folder: str | Path, name: str | Path, what: str) -> Path:
    """``folder / name`` resolved, refused unless it stays inside ``folder``.

    For every path aucli reads back from a file it wrote (manifests, queues, run records, store
    attributes): such a file may have been edited or crafted, and an absolute name, ``..`` or a
    symlink out of the folder must not make aucli read, overwrite or delete anything elsewhere.
    ``what`` names the file the path came from, for the message.
    """
    from aucli.errors import UsageError

    base = Path(folder).resolve()
    text = str(name)
    if not text or "\x00" in text:
        raise UsageError(f"{what} names an empty or invalid path {text!r}; nothing was changed")
    target = (base / name).resolve()
    if not target.is_relative_to(base):
        raise UsageError(
            f"{what} names {text!r}, which lies outside {base}; refusing to touch it (the file was edited "
            "or does not come from aucli); nothing was changed"
        )
    return target


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, as 64 hex digits (read in chunks of ``chunk`` bytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """A safetensors file written atomically (contiguous CPU copies; shared storage is fine)."""
    from safetensors.torch import save

    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    atomic_write_bytes(path, save(plain, metadata=dict(metadata) if metadata else None))


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on ``device`` (never unpickles)."""
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))
