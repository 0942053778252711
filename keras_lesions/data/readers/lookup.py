"""The readers this package knows, and which one reads a given path."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from keras_lesions.data.readers.base import ImageReader
from keras_lesions.data.readers.dicom import DicomImageReader, DicomVolumeReader
from keras_lesions.data.readers.nifti import NiftiReader
from keras_lesions.data.readers.npy import NpyReader
from keras_lesions.data.readers.raster import RasterReader

# In the order they are tried: suffix rules before DICOM, whose readers also
# accept a file of any name that carries the "DICM" preamble (and, for
# volumes, any folder).
READERS: tuple[ImageReader, ...] = (RasterReader(), NpyReader(), NiftiReader(),
                                    DicomImageReader(), DicomVolumeReader())


def reader_for(path: str | Path, formats: Iterable[str]) -> ImageReader | None:
    """The first reader among ``formats`` that accepts ``path``.

    Args:
        path: a file or folder.
        formats: the reader names the caller accepts, e.g. ("nifti", "dicom")
            for a volume; see each reader's ``name``.

    Returns:
        The reader, or None when no accepted format fits ``path``.

    Raises:
        ValueError: ``formats`` names an unknown reader (a bug of the caller).
    """
    formats = set(formats)
    unknown = formats - {reader.name for reader in READERS}
    if unknown:
        raise ValueError(f"unknown reader names {sorted(unknown)}")
    path = Path(path)
    for reader in READERS:
        if reader.name in formats and reader.verify_suffix(path):
            return reader
    return None
