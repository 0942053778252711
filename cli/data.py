"""``kl data``: make, import, inspect and split lesion datasets."""
from __future__ import annotations

import re
from pathlib import Path

import click

from keras_lesions.data.registry import PRESETS, canonical_class_name
from keras_lesions_cli.common import SEED, command_line, note, progress_bar

H5_PATH = click.Path(dir_okay=False, path_type=Path)


def _not_one(param, value):
    if value == 1:
        raise click.BadParameter("one fold cannot separate training from testing: use 0 "
                                 "(none) or at least 2", param=param)
    return value


@click.group("data")
def data_group():
    """Make, import, check, preview and split lesion datasets (HDF5)."""


def parse_class_counts(text: str, preset: str) -> dict[str, int]:
    """``--class-counts``: "cyst=20,metastasis=80" as {class: count}, checked
    against the preset's classes (each at most once, counts non-negative
    integers). Raises click.BadParameter, which the CLI shows as one line."""
    class_names = PRESETS[preset].class_names
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise click.BadParameter(
                f"expected NAME=COUNT items separated by commas (e.g. cyst=20,metastasis=80), "
                f"got {item.strip()!r}", param_hint="'--class-counts'")
        if name not in class_names:
            canonical = canonical_class_name(name)
            hint = (f" (did you mean {canonical!r}?)"
                    if canonical in class_names and canonical != name else "")
            raise click.BadParameter(
                f"unknown class {name!r}{hint}: the {preset} preset has "
                f"{', '.join(class_names)}", param_hint="'--class-counts'")
        if name in counts:
            raise click.BadParameter(f"class {name!r} is given twice",
                                     param_hint="'--class-counts'")
        if not re.fullmatch(r"[0-9]+", value):
            raise click.BadParameter(
                f"the count of {name!r} must be a non-negative integer, got {value!r}",
                param_hint="'--class-counts'")
        counts[name] = int(value)
    return counts


@data_group.command("phantoms")
@click.argument("out", type=H5_PATH)
@click.option("--preset", type=click.Choice(list(PRESETS)),
              default="frid-adar-2018", show_default=True,
              help="Mirror this paper's dataset: 182 lesions in 3 classes at 64x64 "
                   "(frid-adar-2018) or 239 in 4 classes with healthy tissue at 128x128 "
                   "(ben-cohen-2019); or frid-adar-2018-imbalanced, our variant of "
                   "Frid-Adar's classes with a realistic imbalance: 20 cysts, 80 "
                   "metastases, 40 hemangiomas (140 lesions, 64x64, 3 folds).")
@click.option("--class-counts", metavar="NAME=N,...",
              help="Lesions per class instead of the preset's, e.g. "
                   "cyst=20,metastasis=80,hemangioma=40. Names are the preset's classes, "
                   "each at most once; counts are integers >= 0. A class left out keeps "
                   "the preset's count (with --extra-pool, the extra pool's); give it as "
                   "NAME=0 for none of that class. With folds, every class with lesions needs "
                   "enough patients for every fold.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Same seed, same dataset, bit for bit.")
@click.option("--difficulty", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="How much metastases and hemangiomas overlap (0 textbook, 1 hard; "
                   "shared/PHANTOMS.md §5). Cysts do not change.")
@click.option("--extra-pool", is_flag=True,
              help="Make the extra pool of new patients for the 'more real data' experiment "
                   "(Frid-Adar §4.2.2: 78 new lesions) instead of the main dataset. Its "
                   "patients never appear in the main dataset of the same seed.")
@click.option("--folds", "k", type=click.IntRange(min=0), default=3, show_default=True,
              callback=lambda ctx, param, value: _not_one(param, value),
              help="Also store a patient-level k-fold assignment (0: none; never for "
                   "--extra-pool).")
def phantoms_command(out, preset, class_counts, seed, difficulty, extra_pool, k):
    """Generate the built-in CT phantom dataset into OUT (.h5).

    Portal-venous-phase CT ROIs of cysts, metastases, hemangiomas (and healthy
    parenchyma), simulated in Hounsfield units through blur, partial volume and
    correlated scanner noise, with per-patient and per-scanner effects
    (shared/PHANTOMS.md). Stored in HU at native pixel spacing.
    """
    from keras_lesions.data import write_dataset
    from keras_lesions.data.builtin import make_phantom_dataset
    from keras_lesions.data.phantoms import default_class_counts

    counts = default_class_counts(preset, "extra" if extra_pool else "main")
    if class_counts is not None:
        counts.update(parse_class_counts(class_counts, preset))
        if sum(counts.values()) == 0:
            raise click.BadParameter("asks for no lesions at all: give at least one class a "
                                     "count above 0", param_hint="'--class-counts'")
    bar, progress = progress_bar(sum(counts.values()), f"phantoms {preset}")
    with bar:
        dataset = make_phantom_dataset(preset, seed, difficulty, k=k, extra_pool=extra_pool,
                                       class_counts=None if class_counts is None else counts,
                                       created_by=command_line(), progress=progress)
    write_dataset(dataset, out)
    k = dataset.fold_k
    counts_text = ", ".join(f"{n} {name}" for name, n in dataset.class_counts().items())
    click.echo(f"wrote {out}: {len(dataset)} lesions ({counts_text}) from "
               f"{len(set(dataset.patient_ids))} patients" + (f", {k} folds" if k else ""))


@data_group.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=H5_PATH)
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV mapping. Class folders: columns file, patient_id [, diameter_mm, "
                   "class, lesion_id]. Volumes: columns volume, mask, label, class "
                   "[, patient_id, lesion_id].")
@click.option("--roi-margin", type=click.FloatRange(0.0, 5.0), default=0.4, show_default=True,
              help="Tissue margin on each side of the lesion in the ROI, as a fraction of "
                   "the lesion diameter (volumes; for class folders it sets how the "
                   "diameter is estimated from the ROI when no CSV gives it).")
@click.option("--context-margin", type=click.FloatRange(0.0, 5.0), default=1.0,
              show_default=True,
              help="Margin of the larger context crop kept for scale augmentation (volumes).")
@click.option("--input-size", type=click.IntRange(8, 1024), default=64, show_default=True,
              help="Network input side this dataset targets (64 Frid-Adar, 128 Ben-Cohen).")
@click.option("--classes", help="Comma-separated class names to import, in this order. "
                                "Class folders: only these folders are read. Volumes: the "
                                "classes the mapping may name (default: "
                                "cyst,metastasis,hemangioma,healthy).")
@click.option("--npy-unit", type=click.Choice(["HU", "normalized"]), default="HU",
              show_default=True, help="What the values of .npy ROI files are.")
def import_command(source, out, mapping, roi_margin, context_margin, input_size, classes,
                   npy_unit):
    """Import SOURCE (your lesions) into the dataset file OUT (.h5).

    SOURCE is either a folder with one sub-folder of ROI images per class (PNG
    8/16-bit, TIFF, JPEG, .npy, DICOM), or a folder of CT volumes (NIfTI,
    DICOM series, enhanced multi-frame DICOM) with lesion label masks, given
    with a --mapping CSV of (volume, mask, label) -> class. The kind is told
    from what is found. DICOM values are converted to Hounsfield units.
    """
    from keras_lesions.data import write_dataset
    from keras_lesions.data.importers import import_source

    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    # The importer's warnings are about the dataset it makes: shown once it is
    # made, so a refused import is one line.
    warnings: list[str] = []
    dataset = import_source(source, mapping_csv=mapping, roi_margin=roi_margin,
                            context_margin=context_margin, input_size=input_size,
                            classes=class_list, npy_unit=npy_unit, log=warnings.append)
    dataset.created_by = command_line()
    write_dataset(dataset, out)
    for warning in warnings:
        note(warning)
    counts = ", ".join(f"{n} {name}" for name, n in dataset.class_counts().items())
    click.echo(f"wrote {out}: {len(dataset)} lesions ({counts}) from "
               f"{len(set(dataset.patient_ids))} patients, {dataset.intensity_unit}")


@data_group.command("check")
@click.argument("dataset_path", metavar="DATASET", type=H5_PATH)
@click.option("--k", type=click.IntRange(min=2), default=3, show_default=True,
              help="Folds the experiments will use (for the patients-per-class check).")
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
def check_command(dataset_path, k, strict):
    """Counts per class and patient, image sizes, diameters, folds, problems.

    Exits 1 when an error is found (or any problem, with --strict).
    """
    from keras_lesions.data import read_dataset
    from keras_lesions.data.check import check_dataset

    dataset = read_dataset(dataset_path)
    report = check_dataset(dataset, k_expected=k)
    click.echo(f"{dataset_path}  ({dataset.description or 'lesion dataset'})")
    click.echo(report.format(dataset.class_names))
    if report.errors or (strict and report.findings):
        raise SystemExit(1)


@data_group.command("preview")
@click.argument("dataset_path", metavar="DATASET", type=H5_PATH)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG file to write.")
@click.option("--per-class", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Samples shown per class.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Which samples are shown.")
def preview_command(dataset_path, out, per_class, seed):
    """Write a labelled grid of sample ROIs per class (PNG), windowed as the
    networks see them."""
    from keras_lesions.data import read_dataset
    from keras_lesions.data.preview import write_preview

    dataset = read_dataset(dataset_path)
    write_preview(dataset, out, per_class=per_class, seed=seed)
    click.echo(f"wrote {out}")


@data_group.command("folds")
@click.argument("dataset_path", metavar="DATASET", type=H5_PATH)
@click.option("--k", type=click.IntRange(min=2), default=3, show_default=True,
              help="Number of folds (the papers use 3).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Same seed, same assignment.")
def folds_command(dataset_path, k, seed):
    """Store a patient-level, class-stratified k-fold split inside DATASET.

    No patient is in two folds; sizes and classes are balanced like the paper's
    (63, 63, 62). Every experiment reads this one assignment.
    """
    from keras_lesions.data import read_dataset
    from keras_lesions.data.dataset import write_folds
    from keras_lesions.data.folds import fold_table, make_patient_folds
    from keras_lesions.errors import FoldError

    dataset = read_dataset(dataset_path, images=False)
    try:
        folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=k, seed=seed,
                                   class_names=dataset.class_names)
    except FoldError as exc:
        raise FoldError(exc.problem, dataset_path) from None
    if dataset.folds is not None:
        note(f"{dataset_path}: replacing the existing {dataset.fold_k}-fold assignment")
    write_folds(dataset_path, folds, k=k, seed=seed)
    table = fold_table(dataset.labels, folds, k, len(dataset.class_names))
    click.echo(f"wrote {k} patient-level folds into {dataset_path}:")
    for i, row in enumerate(table):
        cells = "  ".join(f"{name} {n}" for name, n in zip(dataset.class_names, row))
        click.echo(f"  fold {i}: {int(row.sum()):>4}   {cells}")
