"""Opening the project's HDF5 files (lesion datasets, augmentation groups) safely.

A dataset file is input from elsewhere. HDF5 can point outside itself: an
external link resolves to an object in another file, external storage keeps
a dataset's bytes in other (raw) files, a virtual dataset maps regions of
other files. Followed silently, any of them lets one ``.h5`` make ``kl`` read
another local file. None is part of either format, so :func:`open_hdf5`
refuses all three, and :func:`read_array` checks a dataset's declared size
before allocating it (a header can declare terabytes in a few bytes).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Type

import h5py
import numpy as np

from keras_lesions.errors import KerasLesionsError

# What one array of either format may declare: far beyond any real dataset
# (15,000 augmented 64×64 float32 images are 0.25 GB).
MAX_ARRAY_BYTES = 8 * 2**30


def open_hdf5(path: str | os.PathLike, error: Type[KerasLesionsError], what: str,
              article: str = "a") -> h5py.File:
    """Open ``path`` read-only, refusing files that point outside themselves.

    Args:
        path: the HDF5 file (known to exist).
        error: the error class to raise (``DatasetError``, ...).
        what: what the file should be, for the message ("lesion dataset").
        article: "a" or "an", before ``what``.

    Raises:
        error: not HDF5, or with an external link, external storage or a
            virtual dataset (naming the object).
    """
    if not Path(path).is_file():  # opening a pipe would wait for a writer forever
        raise error(f"is not a regular file (a device, pipe or socket), expected {article} "
                    f"{what}", path)
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise error(f"not a readable HDF5 file (corrupt, truncated or not HDF5; expected "
                    f"{article} {what})", path) from None
    try:
        problem = _points_outside(h5)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        h5.close()
        raise error(f"damaged HDF5 structure ({type(exc).__name__})", path) from None
    if problem:
        h5.close()
        raise error(f"{problem}; {article} {what} is self-contained, so this file is refused",
                    path)
    return h5


def _points_outside(h5: h5py.File) -> str | None:
    """The first object that refers to another file, described; None if none."""
    found: list[str] = []

    def visit(name: str, link) -> bool | None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"'/{name}' is an external link to {link.filename!r}")
            return True
        if isinstance(link, h5py.SoftLink):
            return None  # within the file; its target is visited as itself
        item = h5.get(name)
        if isinstance(item, h5py.Dataset):
            if item.external:
                found.append(f"dataset '/{name}' keeps its data in external files")
                return True
            if item.is_virtual:
                found.append(f"dataset '/{name}' is a virtual dataset over other files")
                return True
        return None

    h5.visititems_links(visit)
    return found[0] if found else None


def read_array(dataset: h5py.Dataset, error: Type[KerasLesionsError], path: str | os.PathLike,
               *, ndim: int | None = None, max_side: int | None = None) -> np.ndarray:
    """A dataset's values, after checking what it declares.

    Args:
        dataset: the HDF5 dataset.
        error: the error class to raise.
        path: the file, for the message.
        ndim: the number of dimensions it must have, if fixed.
        max_side: the largest extent any dimension may have.

    Raises:
        error: another rank, a side beyond ``max_side``, more than
            ``MAX_ARRAY_BYTES``, or unreadable bytes.
    """
    shape = dataset.shape if dataset.shape is not None else ()
    name = dataset.name
    if ndim is not None and len(shape) != ndim:
        raise error(f"'{name}' has shape {shape}, expected {ndim} dimensions", path)
    if max_side is not None and any(side > max_side for side in shape):
        raise error(f"'{name}' declares shape {shape}, beyond {max_side} per side", path)
    size = math.prod(shape) * dataset.dtype.itemsize
    if size > MAX_ARRAY_BYTES:
        raise error(f"'{name}' declares {size / 2**30:,.0f} GiB (shape {shape}); refused "
                    "before reading", path)
    try:
        return dataset[()]
    except (OSError, ValueError, TypeError) as exc:
        raise error(f"'{name}' cannot be read ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:120] if str(exc) else ''})", Path(path)) \
            from None
