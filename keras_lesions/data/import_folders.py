"""Importing class folders of already-cropped lesion ROIs (``SOURCE/<class>/<ROI>``)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keras_lesions.data.dataset import Lesion, LesionDataset
from keras_lesions.data.import_options import check_options, class_order
from keras_lesions.data.mapping import CsvRow, positive_float, read_mapping_csv
from keras_lesions.data.readers import read_roi_image
from keras_lesions.data.readers.base import visible_entries
from keras_lesions.data.registry import (
    DEFAULT_WINDOW_LEVEL,
    DEFAULT_WINDOW_WIDTH,
    canonical_class_name,
)
from keras_lesions.errors import ImportSourceError

CLASS_FOLDER_COLUMNS = ("file", "patient_id")
CLASS_FOLDER_OPTIONAL_COLUMNS = ("diameter_mm", "class", "lesion_id")


@dataclass
class _RoiFile:
    path: Path
    rel: str          # path relative to SOURCE, posix
    class_name: str
    folder: str


def import_class_folders(
    source: str | os.PathLike,
    *,
    mapping_csv: str | os.PathLike | None = None,
    roi_margin: float = 0.4,
    input_size: int = 64,
    classes: Sequence[str] | None = None,
    npy_unit: str = "HU",
    log: Callable[[str], None] = print,
) -> LesionDataset:
    """Import ``SOURCE/<class>/<ROI image>`` folders of already-cropped ROIs.

    Classes: each folder name maps to its canonical class through
    ``canonical_class_name`` ("Cysts" → "cyst"); other names are kept as the
    user's own classes. Order: canonical order first, then others
    alphabetically; or, when ``classes`` is given, that order: folders of other
    classes are then skipped (and logged), and every given class needs a
    folder. Dotfiles, Thumbs.db and desktop.ini are skipped; any other file
    must be a readable ROI (:func:`read_roi_image`). One dataset has one unit:
    DICOM gives HU, PNG/TIFF/JPEG give "normalized", ``.npy`` gives
    ``npy_unit``; mixing them is an error.

    Mapping CSV (optional): columns ``file`` (path relative to SOURCE, or a
    bare file name when unique, or made unique by ``class``), ``patient_id``,
    optional ``diameter_mm``, ``class`` (must match the file's folder) and
    ``lesion_id``. With a CSV every file must be listed exactly once. Without
    one, every file is its own patient (logged: one patient's lesions could
    then land in different folds).

    A patient conflict is one source item given two identities: the same file
    on two CSV rows with different patient ids, or under two classes. The same
    patient id on files of different classes is allowed (a patient may have a
    cyst and a metastasis).

    Lesions have no context (``has_context=False``, ``context is roi``,
    ``roi_box`` = the whole image, no mask). Diameter: from the CSV
    (``diameter_source="csv"``, pixels via the spacing when known), else
    estimated from the ROI as max(h, w)/(1 + 2·roi_margin)
    (``diameter_source="roi-estimate"``). Lesion id: ``lesion_id`` from the
    CSV, else "<class>/<file stem>".

    Returns:
        The validated dataset (``created_by`` empty, options in ``extra``).

    Raises:
        ImportSourceError: naming the file, folder or CSV line at fault.
        KerasLesionsError: invalid options.
    """
    check_options(roi_margin, roi_margin, input_size, npy_unit)
    source = Path(source)
    if not source.is_dir():
        raise ImportSourceError("expected a folder with one sub-folder of ROI images per class",
                                source)
    files_by_class, skipped = _collect_class_folders(source, classes, log)
    files = [f for name in files_by_class for f in files_by_class[name]]
    class_names = list(files_by_class)

    rows = (_class_folder_mapping(Path(mapping_csv), source, files, skipped)
            if mapping_csv is not None else None)
    if rows is None:
        log(f"no mapping CSV: each of the {len(files)} images counts as its own patient, so "
            "lesions of one patient could land in different folds (pass a CSV with columns "
            "file,patient_id to keep them together)")

    images = {roi_file.rel: read_roi_image(roi_file.path, npy_unit) for roi_file in files}
    unit = _single_unit(files, images, source)
    if unit == "HU" and all(0 <= img.min() and img.max() <= 1 for img, _, _ in images.values()):
        log("warning: every image lies in [0, 1] although the unit is HU; if these .npy files "
            "are normalized, pass npy_unit='normalized'")
    lesions = _roi_lesions(files, images, rows, class_names, roi_margin,
                           None if mapping_csv is None else Path(mapping_csv), log)

    dataset = LesionDataset(
        class_names=class_names,
        lesions=lesions,
        intensity_unit=unit,
        window_level=float("nan") if unit == "normalized" else DEFAULT_WINDOW_LEVEL,
        window_width=float("nan") if unit == "normalized" else DEFAULT_WINDOW_WIDTH,
        input_size=int(input_size),
        description=f"ROI images imported from class folders of {source.name}",
        extra={"importer": "class-folders", "source": str(source),
               "mapping_csv": None if mapping_csv is None else str(mapping_csv),
               "roi_margin": float(roi_margin), "npy_unit": npy_unit,
               "classes": None if classes is None else list(classes)},
    )
    dataset.validate(source)
    return dataset


def import_image_folder(
    source: str | os.PathLike,
    *,
    roi_margin: float = 0.4,
    npy_unit: str = "HU",
    log: Callable[[str], None] = print,
) -> tuple[list[Lesion], str]:
    """Read a folder of unlabelled ROI images (new cases to classify).

    Every visible file of ``source`` must be a readable ROI, read as
    :func:`import_class_folders` reads the files of a class folder; there are
    no sub-folders and no classes. Lesion ids are the file names without
    suffix, patients the file names; ``label`` is −1 (unknown).

    Returns:
        (lesions in file-name order, their one intensity unit).

    Raises:
        ImportSourceError: naming the file or folder at fault.
    """
    check_options(roi_margin, roi_margin, 64, npy_unit)
    source = Path(source)
    if not source.is_dir():
        raise ImportSourceError("expected a folder of ROI images", source)
    files = []
    for entry in visible_entries(source):
        if entry.is_dir():
            raise ImportSourceError(
                f"holds the folder {entry.name!r} beside images: give either a folder of "
                "images or one sub-folder of images per class", source)
        files.append(_RoiFile(entry, entry.name, "", ""))
    if not files:
        raise ImportSourceError("holds no images", source)
    images = {f.rel: read_roi_image(f.path, npy_unit) for f in files}
    unit = _single_unit(files, images, source)
    lesions = []
    for f in files:
        image, _, spacing = images[f.rel]
        lesion = _roi_lesion(f, image, spacing, None, [""], roi_margin, log)
        lesions.append(dataclasses.replace(lesion, lesion_id=f.path.stem, label=-1))
    stems = [lesion.lesion_id for lesion in lesions]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ImportSourceError(f"files named {repeated[0]!r} with different suffixes: ids "
                                "are file names without suffix, rename one", source)
    return lesions, unit


def _roi_lesions(files: list[_RoiFile], images: dict, rows: dict[str, CsvRow] | None,
                 class_names: list[str], roi_margin: float, csv_path: Path | None,
                 log: Callable[[str], None]) -> list[Lesion]:
    """One lesion per ROI file, in file order; lesion ids must be unique."""
    lesions: list[Lesion] = []
    seen_ids: dict[str, str] = {}
    estimated = 0
    for roi_file in files:
        image, _, spacing = images[roi_file.rel]
        row = rows.get(roi_file.rel) if rows is not None else None
        lesion = _roi_lesion(roi_file, image, spacing, row, class_names, roi_margin, log)
        estimated += lesion.diameter_source == "roi-estimate"
        where = roi_file.path if row is None else csv_path
        if lesion.lesion_id in seen_ids:
            line = f"line {row.line}: " if row is not None else ""
            raise ImportSourceError(
                f"{line}lesion id {lesion.lesion_id!r} of {roi_file.rel} repeats that of "
                f"{seen_ids[lesion.lesion_id]}; lesion ids must be unique (give a lesion_id "
                "column or rename one file)", where)
        seen_ids[lesion.lesion_id] = roi_file.rel
        lesions.append(lesion)
    if estimated:
        log(f"{estimated} of {len(lesions)} diameters estimated from the ROI size as "
            f"side/(1 + 2*{roi_margin:g})")
    return lesions


def _collect_class_folders(source: Path, classes: Sequence[str] | None,
                           log: Callable[[str], None],
                           ) -> tuple[dict[str, list[_RoiFile]], dict[str, Path]]:
    """Class name -> its files, in dataset class order; and the skipped folders by class."""
    folders: dict[str, Path] = {}
    stray = []
    for entry in visible_entries(source):
        if not entry.is_dir():
            stray.append(entry.name)
            continue
        name = canonical_class_name(entry.name) or entry.name
        if name in folders:
            raise ImportSourceError(
                f"folders {folders[name].name!r} and {entry.name!r} both mean class {name!r}; "
                "merge them", source)
        folders[name] = entry
    if stray:
        log(f"ignoring files at the top of {source} (only class sub-folders are read): "
            f"{', '.join(sorted(stray)[:5])}{' ...' if len(stray) > 5 else ''}")
    if not folders:
        raise ImportSourceError("holds no class sub-folders: expected SOURCE/<class>/<ROI images>",
                                source)

    wanted = class_order(folders, classes)
    for name in folders:
        if name not in wanted:
            log(f"skipping folder {folders[name].name!r}: class {name!r} is not among the "
                f"requested classes {wanted}")
    for name in wanted:
        if name not in folders:
            raise ImportSourceError(
                f"requested class {name!r} has no folder (folders: "
                f"{', '.join(sorted(p.name for p in folders.values()))})", source)

    files_by_class = {name: _class_folder_files(source, folders[name], name) for name in wanted}
    if len(files_by_class) < 2:
        only = next(iter(files_by_class))
        raise ImportSourceError(
            f"has only one class ({only!r}); a classifier needs at least two class folders",
            source)
    return files_by_class, {name: folders[name] for name in folders if name not in wanted}


def _class_folder_files(source: Path, folder: Path, class_name: str) -> list[_RoiFile]:
    """The ROI files of one class folder; it must hold files only, at least one."""
    found = []
    for entry in visible_entries(folder):
        if entry.is_dir():
            raise ImportSourceError(
                f"is a folder inside class folder {folder.name!r}; expected only ROI image "
                "files there", entry)
        found.append(_RoiFile(entry, entry.relative_to(source).as_posix(), class_name,
                              folder.name))
    if not found:
        raise ImportSourceError(f"class folder for {class_name!r} holds no images", folder)
    return found


def _class_folder_mapping(csv_path: Path, source: Path, files: list[_RoiFile],
                          skipped: dict[str, Path]) -> dict[str, CsvRow]:
    """File (relative path) -> its CSV row; every file listed exactly once.

    Rows naming files of skipped class folders are ignored.
    """
    rows = read_mapping_csv(csv_path, CLASS_FOLDER_COLUMNS, CLASS_FOLDER_OPTIONAL_COLUMNS)
    folder_classes = {f.class_name for f in files} | set(skipped)
    by_rel = {f.rel: f for f in files}
    by_name: dict[str, list[_RoiFile]] = {}
    for f in files:
        by_name.setdefault(f.path.name, []).append(f)
    mapping: dict[str, CsvRow] = {}
    for row in rows:
        at = f"line {row.line}"
        ref = row.values["file"].replace("\\", "/").strip("/")
        if not ref:
            raise ImportSourceError(f"{at}: empty 'file'", csv_path)
        wanted_class = None
        if row.values.get("class"):
            raw = row.values["class"]
            wanted_class = canonical_class_name(raw) or raw
            if wanted_class not in folder_classes:
                raise ImportSourceError(
                    f"{at}: class {raw!r} matches no class folder (classes: "
                    f"{', '.join(sorted(folder_classes))})", csv_path)
        if wanted_class in skipped:
            continue  # a file of a class the caller did not ask for
        roi_file = _csv_file(row, ref, wanted_class, by_rel, by_name, source, skipped, csv_path)
        if roi_file is None:
            continue  # a file of a skipped class folder
        if roi_file.rel in mapping:
            problem = _listed_twice(mapping[roi_file.rel], row, roi_file)
            raise ImportSourceError(f"{at}: file {roi_file.rel} is {problem}", csv_path)
        if wanted_class is not None and wanted_class != roi_file.class_name:
            raise ImportSourceError(
                f"{at}: file {roi_file.rel} lies in the folder of class "
                f"{roi_file.class_name!r} but the CSV says {wanted_class!r}", csv_path)
        if not row.values["patient_id"]:
            raise ImportSourceError(f"{at}: empty patient_id for {roi_file.rel}", csv_path)
        if row.values.get("diameter_mm"):
            positive_float(row.values["diameter_mm"], "diameter_mm", row, csv_path)
        mapping[roi_file.rel] = row
    unlisted = [f for f in files if f.rel not in mapping]
    if unlisted:
        more = f" (and {len(unlisted) - 1} more files)" if len(unlisted) > 1 else ""
        raise ImportSourceError(f"not listed in the mapping CSV {csv_path}{more}; every image "
                                "needs a patient_id", unlisted[0].path)
    return mapping


def _csv_file(row: CsvRow, ref: str, wanted_class: str | None, by_rel: dict[str, _RoiFile],
              by_name: dict[str, list[_RoiFile]], source: Path, skipped: dict[str, Path],
              csv_path: Path) -> _RoiFile | None:
    """The ROI file a CSV ``file`` names (None: one of a skipped class folder)."""
    if ref in by_rel:
        return by_rel[ref]
    matches = by_name.get(ref, []) if "/" not in ref else []
    if wanted_class is not None:
        matches = [m for m in matches if m.class_name == wanted_class]
    if not matches:
        if _in_skipped_folder(ref, source, skipped):
            return None
        raise ImportSourceError(
            f"line {row.line}: file {row.values['file']!r} not found in the class folders of "
            f"{source}", csv_path)
    if len(matches) > 1:
        raise ImportSourceError(
            f"line {row.line}: file name {ref!r} matches {', '.join(m.rel for m in matches)}; "
            "give the path relative to SOURCE or a class column", csv_path)
    return matches[0]


def _listed_twice(first: CsvRow, row: CsvRow, roi_file: _RoiFile) -> str:
    """What is wrong with a file on two CSV rows: two classes, two patients, or a repeat."""
    first_class = first.values.get("class") or roi_file.class_name
    this_class = row.values.get("class") or roi_file.class_name
    first_class = canonical_class_name(first_class) or first_class
    this_class = canonical_class_name(this_class) or this_class
    if first_class != this_class:
        return (f"listed under two classes ({first_class!r} on line {first.line}, "
                f"{this_class!r} here)")
    if first.values["patient_id"] != row.values["patient_id"]:
        return (f"given two patient ids ({first.values['patient_id']!r} on line "
                f"{first.line}, {row.values['patient_id']!r} here)")
    return f"listed twice (also on line {first.line})"


def _in_skipped_folder(ref: str, source: Path, skipped: dict[str, Path]) -> bool:
    """Whether a CSV ``file`` names a file of a skipped class folder."""
    for folder in skipped.values():
        if "/" in ref:
            if (source / ref).is_file() and (source / ref).parent.resolve() == folder.resolve():
                return True
        elif (folder / ref).is_file():
            return True
    return False


def _single_unit(files: list[_RoiFile], images: dict, source: Path) -> str:
    """The one intensity unit of all images, or an error naming files of each unit."""
    by_unit: dict[str, list[str]] = {}
    for f in files:
        by_unit.setdefault(images[f.rel][1], []).append(f.rel)
    if len(by_unit) == 1:
        return next(iter(by_unit))
    parts = [f"{len(rels)} {unit} images (e.g. {rels[0]})"
             for unit, rels in sorted(by_unit.items())]
    raise ImportSourceError(
        f"mixes units: {' and '.join(parts)}; a dataset has one unit (DICOM gives HU, "
        "PNG/TIFF/JPEG give normalized, .npy gives npy_unit), so convert one group", source)


def _roi_lesion(roi_file: _RoiFile, image: np.ndarray, spacing: tuple[float, float],
                row: CsvRow | None, class_names: list[str], roi_margin: float,
                log: Callable[[str], None]) -> Lesion:
    """The lesion of one ROI file, its diameter from the CSV or estimated from the size."""
    height, width = image.shape
    # The ROI holds the lesion plus roi_margin·diameter on each side.
    estimate_px = max(height, width) / (1 + 2 * roi_margin)
    mean_spacing = float(np.mean(spacing))
    attributes = {"folder": roi_file.folder, "file_format": roi_file.path.suffix.lower() or "dicom"}
    diameter_mm = float("nan")
    if row is not None and row.values.get("diameter_mm"):
        diameter_mm = float(row.values["diameter_mm"])  # checked when the CSV was read
    if not np.isnan(diameter_mm):
        source_kind = "csv"
        if np.isfinite(mean_spacing):
            diameter_px = diameter_mm / mean_spacing
            if diameter_px > 1.05 * max(height, width):
                log(f"warning: {roi_file.rel}: CSV diameter {diameter_mm:g} mm is "
                    f"{diameter_px:.0f} px, larger than the {height}x{width} ROI (cm vs mm?)")
        else:
            # No spacing: pixels can only come from the ROI size.
            diameter_px = estimate_px
            attributes["diameter_px_source"] = "roi-estimate"
    else:
        source_kind = "roi-estimate"
        diameter_px = estimate_px
        diameter_mm = estimate_px * mean_spacing  # NaN when spacing is unknown
    if source_kind == "csv" and "diameter_px_source" not in attributes:
        # A measured diameter in pixels places the lesion box directly.
        lesion_h = lesion_w = diameter_px
    else:
        lesion_h, lesion_w = height / (1 + 2 * roi_margin), width / (1 + 2 * roi_margin)
    lesion_h = int(np.clip(round(lesion_h), 1, height))
    lesion_w = int(np.clip(round(lesion_w), 1, width))
    r0, c0 = (height - lesion_h) // 2, (width - lesion_w) // 2
    lesion_id = (row.values.get("lesion_id") if row is not None else "") or \
        f"{roi_file.class_name}/{roi_file.path.stem}"
    return Lesion(
        lesion_id=lesion_id,
        patient_id=row.values["patient_id"] if row is not None else roi_file.rel,
        label=class_names.index(roi_file.class_name),
        roi=image,
        context=image,
        roi_box=(0, 0, height, width),
        lesion_box=(r0, c0, r0 + lesion_h, c0 + lesion_w),
        mask=None,
        spacing_mm=(float(spacing[0]), float(spacing[1])),
        diameter_px=float(diameter_px),
        diameter_mm=float(diameter_mm),
        diameter_source=source_kind,
        source=roi_file.rel,
        has_context=False,
        slice_index=-1,
        attributes=attributes,
    )
