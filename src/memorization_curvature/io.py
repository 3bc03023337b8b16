"""Reading and writing the workflow's files, atomically.

Every writer goes through :func:`atomic_path`: the content is written to a temporary name in the
target's folder and renamed into place only once complete, so a killed job never leaves a half
file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # pandas is not imported where the workflow is planned (config reads data.DATA_FILES)
    import pandas as pd


class BadInput(Exception):
    """An input file is missing, broken or of another dataset: the message says which and what to do.

    Workflow steps report these as one clear line, without a traceback.
    """


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file handle stops numpy from appending ".npz"
            np.savez(handle, **arrays)


def load_npz(path: str | os.PathLike, mmap: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; those named in ``mmap`` are memory-mapped, not read.

    np.savez stores members uncompressed, so a member's data lies as it is inside the file and can be
    mapped: an ImageNet-size image array is then read page by page, as batches need it.
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files if key not in mmap}
        mapped = [key for key in mmap if key in data.files]
    arrays.update({key: _map_member(path, key) for key in mapped})
    return arrays


def _map_member(path: str | os.PathLike, key: str) -> np.ndarray:
    """A read-only memory map of the array ``key`` inside the uncompressed ``.npz`` at ``path``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        with np.load(path, allow_pickle=False) as data:  # compressed (not ours): read it
            return data[key]
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local_header = handle.read(30)  # the zip local file header: its name and extra field follow
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise BadInput(f"{path}: array {key!r} holds Python objects; expected plain numbers")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch  # here, not at the top: light steps (labels, tables, plots) need no torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> Any:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never code."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def save_figure(path: str | os.PathLike, figure) -> None:
    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight")
