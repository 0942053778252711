"""The small interface every image reader implements, and what readers return.

A reader knows one file format (as MONAI's ``ImageReader`` subclasses do):
:meth:`ImageReader.verify_suffix` tells whether a path looks like its format,
:meth:`ImageReader.read` opens it with the format's library, and
:meth:`ImageReader.get_data` turns what was read into numpy plus metadata
(:class:`ImageData`). Readers keep the source's units (Hounsfield units, or
[0, 1] for formats without them): nothing is windowed or resampled.

A damaged or unsupported file raises :class:`ImportSourceError` naming the
file. Each reader catches only the exceptions its library raises for such
files; anything else is a bug and surfaces as a traceback.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_lesions.data.registry import MAX_IMAGE_SIDE
from keras_lesions.errors import ImportSourceError

# The most values one file may declare: a 512 x 512 x 4000 CT volume is 1.05
# billion; beyond, the header is damaged or the file is not a CT.
MAX_VOXELS = 2**31

# Files operating systems drop into folders; they are never images.
_OS_JUNK = {"thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class VolumeGeometry:
    """Where a volume's voxels lie, for checking that a mask belongs to it.

    Attributes:
        kind: "nifti", "dicom-series" or "dicom-enhanced".
        affine: float64 (4, 4) mapping (slice, row, col, 1) voxel indices to
            patient coordinates in mm, RAS+ (nibabel's convention; DICOM's LPS
            is converted).
        attributes: JSON-able provenance (scanner, slice thickness, uneven
            slice gaps).
    """

    kind: str
    affine: np.ndarray
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImageData:
    """The pixels of one file, as numpy, with what the file says about them.

    Attributes:
        array: a 2-D (rows, cols) image, or a 3-D (slices, rows, cols) volume
            (see each reader for its axis order); ``.npy`` arrays as stored.
        unit: "HU" (Hounsfield units, float32), "normalized" (float32 in
            [0, 1]), or None for values as stored whose meaning the caller
            knows (``.npy`` arrays, label masks read without rescale).
        spacing_mm: pixel spacing per axis of ``array`` in mm; NaN where the
            format does not carry it.
        geometry: where the voxels lie in the patient, for volumes; None for
            formats without geometry.
    """

    array: np.ndarray
    unit: str | None
    spacing_mm: tuple[float, ...]
    geometry: VolumeGeometry | None = None


class ImageReader(abc.ABC):
    """Reads one file format into :class:`ImageData`.

    Attributes:
        name: short format name that callers use to say which readers they
            accept (see :func:`keras_lesions.data.readers.lookup.reader_for`).
    """

    name: str = ""

    @abc.abstractmethod
    def verify_suffix(self, path: Path) -> bool:
        """Whether ``path`` looks like this reader's format (by name, or a cheap peek).

        Args:
            path: a file or folder; it need not exist.

        Returns:
            True when :meth:`read` should be tried on it.
        """

    @abc.abstractmethod
    def read(self, path: Path) -> object:
        """Open ``path`` with the format's library.

        Args:
            path: a file (or folder, for DICOM series).

        Returns:
            The library's object for the file, to pass to :meth:`get_data`.

        Raises:
            ImportSourceError: the file is damaged or not of this format.
        """

    @abc.abstractmethod
    def get_data(self, image: object, path: Path, *, rescale: bool = True) -> ImageData:
        """Turn what :meth:`read` returned into numpy and metadata.

        Args:
            image: the object :meth:`read` returned for ``path``.
            path: the file it came from, named in errors.
            rescale: convert stored values to their unit (e.g. DICOM rescale
                to HU); False keeps stored integers, as label masks need.

        Returns:
            The :class:`ImageData`.

        Raises:
            ImportSourceError: the pixels cannot be decoded or break the
                format's rules.
        """


def exception_line(exc: BaseException, path: Path | None = None) -> str:
    """An exception as one short line (without repeating ``path``, already named)."""
    text = " ".join(str(exc).split())
    if path is not None:
        text = text.replace(str(path), path.name)
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def visible_entries(folder: Path) -> list[Path]:
    """Sorted folder entries, without dotfiles and operating-system clutter.

    Raises:
        ImportSourceError: the folder cannot be listed.
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ImportSourceError(f"cannot list folder ({exception_line(exc, folder)})",
                                folder) from None
    visible = [e for e in entries
               if not e.name.startswith(".") and e.name.lower() not in _OS_JUNK]
    for entry in visible:  # a pipe or device would block the reader that opens it
        if not (entry.is_file() or entry.is_dir()):
            raise ImportSourceError("is not a regular file (a device, pipe or socket)", entry)
    return visible


def squeeze_to_2d(array: np.ndarray, path: Path) -> np.ndarray:
    """Drop singleton axes; anything but a 2-D image is an error.

    Raises:
        ImportSourceError: the array is empty, or not 2-D once squeezed.
    """
    if array.size == 0:
        raise ImportSourceError(f"holds an empty array of shape {array.shape}", path)
    squeezed = np.squeeze(array)
    if squeezed.ndim > 2:
        raise ImportSourceError(
            f"is a {squeezed.ndim}-D image of shape {array.shape} where a 2-D ROI is expected",
            path)
    if squeezed.ndim < 2:
        raise ImportSourceError(f"has shape {array.shape}; expected a 2-D ROI", path)
    return squeezed


def check_finite(image: np.ndarray, path: Path) -> None:
    """Raise ImportSourceError naming ``path`` if any pixel is NaN or infinite."""
    bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
    if bad:
        raise ImportSourceError(f"has {bad} NaN or infinite pixels", path)


def check_declared_shape(shape, path: Path, what: str = "image") -> None:
    """Refuse a header's declared shape before anything is allocated for it:
    a few bytes of header can declare terabytes.

    Args:
        shape: the declared extents (rows, cols) or (slices, rows, cols) ...
        path: the file, named in the error.
        what: "image" or "volume", for the message.

    Raises:
        ImportSourceError: a non-positive extent, any extent beyond
            ``MAX_IMAGE_SIDE``, or more than ``MAX_VOXELS`` values.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ImportSourceError(f"declares an empty {what} of shape {shape}", path)
    if max(shape) > MAX_IMAGE_SIDE:
        raise ImportSourceError(
            f"declares a {' x '.join(map(str, shape))} {what}, beyond {MAX_IMAGE_SIDE} "
            "per axis; refused before reading", path)
    if int(np.prod(shape, dtype=np.float64)) > MAX_VOXELS:
        raise ImportSourceError(
            f"declares a {' x '.join(map(str, shape))} {what}, more than {MAX_VOXELS:,} values; "
            "refused before reading", path)
