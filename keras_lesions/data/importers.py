"""Readers and importers that turn users' images into a :class:`LesionDataset`.

Two kinds of source are understood (``kl data import SOURCE OUT.h5``):

* **class folders**: ``SOURCE/<class>/<ROI image>``, one folder per class, each
  file an already-cropped lesion ROI (PNG, TIFF, JPEG, ``.npy`` or DICOM). An
  optional mapping CSV gives patient ids (and diameters); without one every
  file is its own patient (:mod:`keras_lesions.data.import_folders`).
* **volumes**: CT volumes (NIfTI, a DICOM series folder or one Enhanced
  multi-frame DICOM file) with lesion label masks, listed in a mapping CSV with
  one row per lesion. Each lesion is cropped from the axial slice where it is
  largest, with real surrounding tissue as context
  (:mod:`keras_lesions.data.import_volumes`, :mod:`keras_lesions.data.cropping`).

This module is the entry point: :func:`detect_source_kind` and
:func:`import_source`, plus the public names of the readers
(:mod:`keras_lesions.data.readers`) and importers.

Everything here returns numpy; nothing imports TensorFlow. Images keep their
units: Hounsfield units (float32) where the source has them, otherwise values
in [0, 1] (``intensity_unit="normalized"``). Nothing is windowed or resampled.
Every problem with the user's data raises :class:`ImportSourceError` whose one
line names the offending file (or CSV line) and the problem.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.data.import_folders import (
    CLASS_FOLDER_COLUMNS,
    CLASS_FOLDER_OPTIONAL_COLUMNS,
    import_class_folders,
)
from keras_lesions.data.import_volumes import (
    VOLUME_COLUMNS,
    VOLUME_OPTIONAL_COLUMNS,
    import_volumes,
)
from keras_lesions.data.mapping import read_csv_table
from keras_lesions.data.readers import (
    NPY_UNITS,
    VolumeGeometry,
    read_mask,
    read_roi_image,
    read_volume,
)
from keras_lesions.data.readers.base import visible_entries
from keras_lesions.data.readers.dicom import DICOM_SUFFIXES
from keras_lesions.data.readers.nifti import NIFTI_SUFFIXES
from keras_lesions.errors import ImportSourceError

__all__ = [
    "CLASS_FOLDER_COLUMNS",
    "CLASS_FOLDER_OPTIONAL_COLUMNS",
    "NPY_UNITS",
    "SOURCE_KINDS",
    "VOLUME_COLUMNS",
    "VOLUME_OPTIONAL_COLUMNS",
    "VolumeGeometry",
    "detect_source_kind",
    "import_class_folders",
    "import_source",
    "import_volumes",
    "read_mask",
    "read_roi_image",
    "read_volume",
]

SOURCE_KINDS = ("class-folders", "volumes")


def detect_source_kind(source: str | os.PathLike, mapping_csv: str | os.PathLike | None) -> str:
    """Tell which importer a source needs.

    Rules: a mapping CSV with a ``volume`` or ``mask`` column means "volumes";
    one with a ``file`` column means "class-folders"; without a CSV, a folder
    with sub-folders means "class-folders".

    Returns:
        "class-folders" or "volumes".

    Raises:
        ImportSourceError: the source is missing, or fits neither kind (the
            message says what was expected).
    """
    source = Path(source)
    if not source.exists():
        raise ImportSourceError("no such file or folder", source)
    if mapping_csv is not None:
        header, _ = read_csv_table(Path(mapping_csv))
        if "volume" in header or "mask" in header:
            kind = "volumes"
        elif "file" in header:
            kind = "class-folders"
        else:
            raise ImportSourceError(
                f"has columns {header}: expected a 'file' column (class folders of ROI images) "
                f"or columns {list(VOLUME_COLUMNS)} (volumes with masks)", mapping_csv)
        if not source.is_dir():
            raise ImportSourceError(
                "expected a folder holding the files the mapping CSV names", source)
        return kind
    if not source.is_dir():
        raise ImportSourceError(
            "expected a folder with one sub-folder of ROI images per class, or a folder of "
            "volumes and masks with a mapping CSV", source)
    entries = visible_entries(source)
    if any(entry.is_dir() for entry in entries):
        return "class-folders"
    if any(_has_volume_suffix(entry) for entry in entries):
        raise ImportSourceError(
            "holds volumes but no mapping CSV was given; pass one with columns "
            f"{', '.join(VOLUME_COLUMNS)} (one row per lesion)", source)
    raise ImportSourceError(
        "holds no class sub-folders: expected SOURCE/<class>/<ROI images>, or volumes and "
        "masks with a mapping CSV", source)


def import_source(
    source: str | os.PathLike,
    *,
    mapping_csv: str | os.PathLike | None = None,
    roi_margin: float = 0.4,
    context_margin: float = 1.0,
    input_size: int = 64,
    classes: Sequence[str] | None = None,
    npy_unit: str = "HU",
    log: Callable[[str], None] = print,
) -> LesionDataset:
    """Import class folders or volumes (see :func:`detect_source_kind`).

    Args:
        source: the source folder.
        mapping_csv: the mapping CSV (required for volumes).
        roi_margin: tissue margin on each side of the lesion as a fraction of
            its diameter; ROI side = diameter·(1 + 2·roi_margin) (both papers
            crop the lesion plus surrounding tissue; 0.4 is our default).
        context_margin: the same for the context crop of volumes (≥ roi_margin).
        input_size: network input side the dataset targets (stored only).
        classes: allowed classes and their order (see the two importers).
        npy_unit: unit of ``.npy`` ROIs, "HU" or "normalized".
        log: receives human-readable notes and warnings.

    Returns:
        The dataset, validated, with ``created_by`` empty.

    Raises:
        ImportSourceError: any problem with the source, naming the file.
        KerasLesionsError: invalid options.
    """
    kind = detect_source_kind(source, mapping_csv)
    if kind == "volumes":
        return import_volumes(source, mapping_csv, roi_margin=roi_margin,
                              context_margin=context_margin, input_size=input_size,
                              classes=classes, log=log)
    return import_class_folders(source, mapping_csv=mapping_csv, roi_margin=roi_margin,
                                input_size=input_size, classes=classes, npy_unit=npy_unit,
                                log=log)


def _has_volume_suffix(path: Path) -> bool:
    """Whether a file's name says NIfTI or DICOM (a volume without a mapping CSV)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES) or path.suffix.lower() in DICOM_SUFFIXES
