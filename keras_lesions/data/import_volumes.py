"""Importing lesions from CT volumes and label masks listed in a mapping CSV."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keras_lesions.data.cropping import crop_lesion
from keras_lesions.data.dataset import Lesion, LesionDataset
from keras_lesions.data.import_options import check_options, class_order
from keras_lesions.data.mapping import CsvRow, read_mapping_csv
from keras_lesions.data.readers import VolumeGeometry, read_mask, read_volume
from keras_lesions.data.readers.nifti import NIFTI_SUFFIXES
from keras_lesions.data.registry import CLASS_NAMES, canonical_class_name
from keras_lesions.errors import ImportSourceError

VOLUME_COLUMNS = ("volume", "mask", "label", "class")
VOLUME_OPTIONAL_COLUMNS = ("patient_id", "lesion_id")


@dataclass
class _VolumeSpec:
    line: int
    volume: Path
    volume_rel: str
    mask: Path
    label: int
    class_name: str
    patient_id: str
    lesion_id: str


def import_volumes(
    source: str | os.PathLike,
    mapping_csv: str | os.PathLike,
    *,
    roi_margin: float = 0.4,
    context_margin: float = 1.0,
    input_size: int = 64,
    classes: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> LesionDataset:
    """Import lesions from CT volumes and label masks listed in a mapping CSV.

    CSV columns: ``volume``, ``mask``, ``label`` (integer > 0 in the mask),
    ``class``, optional ``patient_id`` (default: the volume's path relative to
    SOURCE without extension) and ``lesion_id`` (default
    "<volume stem>-L<label>"). Paths are relative to SOURCE, else to the CSV's
    folder. One label marks one lesion.

    Mask convention: the mask array must have exactly the volume's shape in
    :func:`read_volume`'s (slices, rows, cols) order. NIfTI and DICOM masks are
    brought to that order by the same rules as volumes, and when both mask and
    volume carry geometry their voxel-to-patient affines must agree (corner
    voxels within a tenth of the smallest spacing), which catches flipped or
    shifted masks. ``.npy`` masks carry no geometry: they must be saved in the
    importer's order (for a NIfTI volume that is the nibabel array transposed
    ``(2, 1, 0)``; for DICOM, slices sorted along the normal).

    Each lesion is taken from the axial slice where ``mask == label`` has the
    largest area (the lowest such slice on ties). Diameter: the longest
    in-plane diameter of that slice's mask (``diameter_source="mask"``). The
    ROI is a square of side diameter·(1 + 2·roi_margin) centred on the lesion,
    the context likewise with ``context_margin``; parts outside the slice are
    filled with air (-1000 HU) and ``attributes["padded_with_air"]`` says so.

    Classes: canonical spellings are applied; each must be in ``classes``
    (default ``registry.CLASS_NAMES``); the dataset keeps the classes present,
    in that order. A volume given two different patient ids is an error.

    Returns:
        The validated dataset (``created_by`` empty, options in ``extra``).

    Raises:
        ImportSourceError: naming the file or CSV line at fault.
        KerasLesionsError: invalid options.
    """
    check_options(roi_margin, context_margin, input_size, "HU")
    source = Path(source)
    csv_path = Path(mapping_csv)
    allowed = class_order((), classes) if classes is not None else list(CLASS_NAMES)
    rows = read_mapping_csv(csv_path, VOLUME_COLUMNS, VOLUME_OPTIONAL_COLUMNS)
    specs = _volume_specs(rows, source, csv_path, allowed, classes is not None)

    present = {spec.class_name for spec in specs}
    class_names = [c for c in allowed if c in present]
    if classes is not None and len(class_names) < len(allowed):
        missing = [c for c in allowed if c not in present]
        raise ImportSourceError(f"requested classes {missing} have no lesion in the CSV", csv_path)
    if len(class_names) < 2:
        raise ImportSourceError(
            f"has only one class ({class_names[0]!r}); a classifier needs at least two", csv_path)

    lesions: dict[int, Lesion] = {}
    by_volume: dict[Path, list[_VolumeSpec]] = {}
    for spec in specs:
        by_volume.setdefault(spec.volume, []).append(spec)
    # One volume and one mask in memory at a time (CT volumes can be hundreds
    # of megabytes); each file is still read only once.
    for volume_path, volume_specs in by_volume.items():
        volume, spacing, geometry = read_volume(volume_path)
        labels, labels_path = None, None
        for spec in sorted(volume_specs, key=lambda spec: str(spec.mask)):
            if spec.mask != labels_path:
                labels, labels_path = None, None
                labels = _mask_for(spec.mask, volume, spacing, geometry, volume_path)
                labels_path = spec.mask
            lesions[spec.line] = _volume_lesion(spec, volume, spacing, geometry, labels,
                                                class_names, roi_margin, context_margin, log)
        del volume, labels
    ordered = [lesions[spec.line] for spec in specs]

    dataset = LesionDataset(
        class_names=class_names,
        lesions=ordered,
        intensity_unit="HU",
        input_size=int(input_size),
        description=f"lesions imported from CT volumes listed in {csv_path.name}",
        extra={"importer": "volumes", "source": str(source), "mapping_csv": str(csv_path),
               "roi_margin": float(roi_margin), "context_margin": float(context_margin),
               "classes": None if classes is None else list(classes)},
    )
    dataset.validate(source)
    return dataset


def _volume_specs(rows: list[CsvRow], source: Path, csv_path: Path, allowed: list[str],
                  explicit_classes: bool) -> list[_VolumeSpec]:
    """One checked lesion spec per CSV row: files found, label, class, ids unique."""
    specs = []
    patient_of: dict[Path, tuple[str, int]] = {}
    lesion_at: dict[tuple[Path, Path, int], int] = {}
    id_at: dict[str, int] = {}
    for row in rows:
        at = f"line {row.line}"
        volume = _resolve(row, "volume", source, csv_path)
        mask = _resolve(row, "mask", source, csv_path)
        label = _label(row, csv_path)
        raw_class = row.values["class"]
        class_name = canonical_class_name(raw_class) or raw_class
        if class_name not in allowed:
            hint = ("" if explicit_classes else
                    "; pass classes (--classes) to use other classes")
            raise ImportSourceError(
                f"{at}: class {raw_class!r} is not one of the allowed classes {allowed}{hint}",
                csv_path)
        volume_rel = _relative_name(volume, source, csv_path)
        stem = _strip_volume_suffix(volume_rel)
        patient_id = row.values.get("patient_id") or stem
        first = patient_of.setdefault(volume, (patient_id, row.line))
        if first[0] != patient_id:
            raise ImportSourceError(
                f"{at}: volume {volume_rel} is given patient id {patient_id!r} but line "
                f"{first[1]} gave {first[0]!r}; one volume belongs to one patient", csv_path)
        key = (volume, mask, label)
        if key in lesion_at:
            raise ImportSourceError(
                f"{at}: label {label} of {volume_rel} with the same mask is already listed on "
                f"line {lesion_at[key]}", csv_path)
        lesion_at[key] = row.line
        lesion_id = row.values.get("lesion_id") or f"{Path(stem).name}-L{label}"
        if lesion_id in id_at:
            raise ImportSourceError(
                f"{at}: lesion id {lesion_id!r} repeats line {id_at[lesion_id]}; lesion ids "
                "must be unique (give a lesion_id column)", csv_path)
        id_at[lesion_id] = row.line
        specs.append(_VolumeSpec(row.line, volume, volume_rel, mask, label, class_name,
                                 patient_id, lesion_id))
    return specs


def _label(row: CsvRow, csv_path: Path) -> int:
    """The row's ``label`` as a positive integer."""
    raw_label = row.values["label"]
    try:
        label_value = float(raw_label)
    except ValueError:
        label_value = float("nan")
    if not (np.isfinite(label_value) and label_value == int(label_value) and label_value > 0):
        raise ImportSourceError(
            f"line {row.line}: label {raw_label!r} is not a positive integer (0 is background)",
            csv_path)
    return int(label_value)


def _mask_for(mask_path: Path, volume: np.ndarray, spacing: tuple[float, float, float],
              geometry: VolumeGeometry, volume_path: Path) -> np.ndarray:
    """The mask's labels, once its shape (and geometry, if it has one) fit the volume."""
    labels, mask_geometry = read_mask(mask_path)
    if labels.shape != volume.shape:
        raise ImportSourceError(
            f"mask has shape {labels.shape} but volume {volume_path.name} has {volume.shape} "
            "(both as (slices, rows, cols))", mask_path)
    if mask_geometry is not None:
        corners = np.array(list(itertools.product(*[(0, n - 1) for n in volume.shape])), float)
        corners = np.c_[corners, np.ones(len(corners))]
        gap = np.linalg.norm(corners @ geometry.affine.T - corners @ mask_geometry.affine.T,
                             axis=1).max()
        if gap > 0.1 * min(spacing):
            raise ImportSourceError(
                f"mask geometry differs from volume {volume_path.name}: voxels lie up to "
                f"{gap:.3g} mm apart (flipped, reordered or shifted axes?); save the mask in "
                "the volume's geometry", mask_path)
    return labels


def _volume_lesion(spec: _VolumeSpec, volume: np.ndarray, spacing: tuple[float, float, float],
                   geometry: VolumeGeometry, labels: np.ndarray, class_names: list[str],
                   roi_margin: float, context_margin: float,
                   log: Callable[[str], None]) -> Lesion:
    """The lesion ``spec`` names, cropped from the slice where it is largest."""
    lesion_3d = labels == spec.label
    areas = lesion_3d.sum(axis=(1, 2))
    if not areas.any():
        present = np.unique(labels)
        present = [int(v) for v in present[present > 0][:20]]
        raise ImportSourceError(
            f"label {spec.label} (CSV line {spec.line}) does not occur in this mask; labels "
            f"present: {present}", spec.mask)
    slice_index = int(np.argmax(areas))  # first maximum: the lowest slice on ties
    spacing_rc = (float(spacing[1]), float(spacing[2]))
    crop = crop_lesion(volume[slice_index], lesion_3d[slice_index], spacing_rc, roi_margin,
                       context_margin)
    if crop.regions > 1:
        log(f"warning: label {spec.label} of {spec.volume_rel} has {crop.regions} separate "
            f"regions on slice {slice_index}; all are taken as one lesion (give each lesion "
            "its own label)")
    if not np.isfinite(crop.context).all():
        raise ImportSourceError(
            f"has NaN or infinite values around label {spec.label} (slice {slice_index})",
            spec.volume)
    if crop.at_edge:
        log(f"warning: label {spec.label} of {spec.volume_rel} touches the edge of slice "
            f"{slice_index}; its diameter may be underestimated")
    attributes = {
        **geometry.attributes,
        "volume_kind": geometry.kind,
        "volume_spacing_mm": [float(s) for s in spacing],
        "lesion_slices": int((areas > 0).sum()),
        "mask_regions_on_slice": crop.regions,
        "padded_with_air": crop.context_padded,
        "roi_padded_with_air": crop.roi_padded,
        "lesion_at_slice_edge": crop.at_edge,
        "context_box_in_slice": [int(v) for v in crop.context_box],
    }
    return Lesion(
        lesion_id=spec.lesion_id,
        patient_id=spec.patient_id,
        label=class_names.index(spec.class_name),
        roi=crop.roi,
        context=crop.context,
        roi_box=crop.roi_box,
        lesion_box=crop.lesion_box,
        mask=crop.mask,
        spacing_mm=spacing_rc,
        diameter_px=crop.diameter_px,
        diameter_mm=crop.diameter_mm,
        diameter_source="mask",
        source=f"{spec.volume_rel}#label={spec.label}",
        has_context=True,
        slice_index=slice_index,
        attributes=attributes,
    )


def _resolve(row: CsvRow, column: str, source: Path, csv_path: Path) -> Path:
    """A CSV path: absolute, else under SOURCE, else beside the CSV."""
    ref = row.values[column].replace("\\", "/")
    if not ref:
        raise ImportSourceError(f"line {row.line}: empty {column!r}", csv_path)
    candidates = [Path(ref)] if Path(ref).is_absolute() else [source / ref, csv_path.parent / ref]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise ImportSourceError(
        f"line {row.line}: {column} {ref!r} not found (looked under {source} and beside the CSV)",
        csv_path)


def _relative_name(path: Path, source: Path, csv_path: Path) -> str:
    """``path`` relative to SOURCE, else to the CSV's folder, else its name."""
    for base in (source, csv_path.parent):
        try:
            return path.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.name


def _strip_volume_suffix(name: str) -> str:
    """``name`` without its NIfTI or DICOM suffix."""
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES + (".dcm", ".dicom"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name
