"""Classifying new lesions with a trained classifier (``kl predict``).

The classifier is a finished classifier run folder or a SavedModel written by
``kl export``. Either way its ``run.json`` records how its training lesions
became network input ("preprocessing": units, HU window, input side, how the
ROIs were cropped); new lesions are read by the importers and rendered by
the very code that rendered the training lesions
(``pipeline.lesion_inputs``), so nothing of the preprocessing is written
twice; ROIs of any size are resized as the training ROIs were. Inputs that
do not fit the classifier (other units, classes it does not know, colour
images) are refused before anything is written.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from keras_lesions.errors import KerasLesionsError

CLASSIFIER_KINDS = ("lesion_classifier",)
EXPORT_RECORD = Path("assets.extra") / "run.json"


class PredictError(KerasLesionsError):
    """A classifier or an input that cannot be used for prediction."""


@dataclass
class Classifier:
    """A trained classifier and how its inputs are made.

    Attributes:
        source: the run folder or SavedModel folder.
        class_names: the classes its outputs stand for, in order.
        preprocessing: ``pipeline.preprocessing_record`` of its training data.
        network: network input [n, S, S, 1] in [0, 1] -> probabilities [n, classes].
        info: its run.json.
    """

    source: Path
    class_names: list[str]
    preprocessing: dict
    network: Callable[[np.ndarray], np.ndarray]
    info: dict

    @property
    def input_size(self) -> int:
        return int(self.preprocessing["input_size"])


@dataclass
class Cases:
    """Lesions to classify, with their true classes where the input says them.

    Attributes:
        lesions: ``data.Lesion`` objects in the input's units.
        labels: int [n], the true class as an index into the classifier's
            classes, −1 where unknown.
        intensity_unit: "HU" or "normalized".
        kind: what the input was ("dataset", "class-folders", "volumes", "images").
    """

    lesions: list
    labels: np.ndarray
    intensity_unit: str
    kind: str


def load_classifier(path: str | os.PathLike) -> Classifier:
    """A classifier run folder or a ``kl export`` SavedModel, ready to predict.

    Raises:
        PredictError / RunError: neither, an unfinished run, a run of another
            kind, or a record without what prediction needs.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return _exported_classifier(path)
    from keras_lesions.runs.folder import read_done, read_run_info

    info = read_run_info(path, kind=CLASSIFIER_KINDS)
    read_done(path)  # a classifier still training is not one to apply
    from keras_lesions.inference import predict
    from keras_lesions.train.classifier import load_run_model

    model = load_run_model(path)
    preprocessing = run_preprocessing(info, path, int(model.input_shape[1]))
    _check_size(preprocessing, int(model.input_shape[1]), path)
    return Classifier(path, _class_names(info, int(model.output_shape[-1]), path), preprocessing,
                      lambda x: predict(model, x), info)


def _exported_classifier(path: Path) -> Classifier:
    record = path / EXPORT_RECORD
    if not record.is_file():
        raise PredictError(f"is a SavedModel without {EXPORT_RECORD}: not one `kl export` "
                           "wrote from a classifier run", path)
    try:
        info = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictError(f"{EXPORT_RECORD} cannot be read ({type(exc).__name__})",
                           path) from None
    if not isinstance(info, dict) or info.get("kind") not in CLASSIFIER_KINDS:
        raise PredictError(f"is an export of a {info.get('kind') if isinstance(info, dict) else '?'}"
                           " run, not of a classifier", path)
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    except (OSError, KeyError, ValueError, tf.errors.OpError) as exc:
        raise PredictError(f"cannot be loaded as a SavedModel with a serving_default "
                           f"signature ({type(exc).__name__})", path) from None
    spec = signature.structured_input_signature[1].get("roi")
    outputs = signature.structured_outputs
    if (spec is None or spec.shape.rank != 4 or spec.shape[1] is None
            or "probabilities" not in outputs):
        raise PredictError("its serving_default signature does not take 'roi' [N, S, S, 1] "
                           "and return 'probabilities': not a classifier export", path)
    preprocessing = run_preprocessing(info, path, int(spec.shape[1]))
    _check_size(preprocessing, int(spec.shape[1]), path)

    def network(x: np.ndarray) -> np.ndarray:
        out = [signature(roi=tf.constant(x[i:i + 256]))["probabilities"].numpy()
               for i in range(0, len(x), 256)]
        return np.concatenate(out) if out else np.zeros((0, len(info["class_names"])), np.float32)

    n_classes = int(outputs["probabilities"].shape[-1])
    return Classifier(path, _class_names(info, n_classes, path), preprocessing, network, info)


def run_preprocessing(info: dict, where: Path, input_size: int | None = None) -> dict:
    """The run's "preprocessing" record; for a run made before runs recorded
    it, rebuilt from the dataset file its run.json names, if it is there,
    with the network's ``input_size``.

    Raises:
        PredictError: neither is available.
    """
    if isinstance(info.get("preprocessing"), dict):
        return info["preprocessing"]
    from keras_lesions.data import read_dataset
    from keras_lesions.pipeline import preprocessing_record

    dataset_path = info.get("dataset")
    if not dataset_path or not Path(dataset_path).is_file():
        raise PredictError("records no preprocessing, and the dataset it was trained on "
                           f"({dataset_path or 'unnamed'}) is not there to read it from", where)
    return preprocessing_record(read_dataset(dataset_path, images=False), input_size)


def _class_names(info: dict, n_outputs: int, where: Path) -> list[str]:
    names = info.get("class_names")
    if not isinstance(names, list) or len(names) != n_outputs:
        raise PredictError(f"run.json lists classes {names} for a network of {n_outputs} "
                           "outputs", where)
    return [str(n) for n in names]


def _check_size(preprocessing: dict, network_size: int, where: Path) -> None:
    if int(preprocessing["input_size"]) != network_size:
        raise PredictError(f"records input size {preprocessing['input_size']} but its network "
                           f"takes {network_size}×{network_size}", where)


def read_cases(source: str | os.PathLike, classifier: Classifier, *,
               mapping_csv: str | os.PathLike | None = None, npy_unit: str = "HU",
               log: Callable[[str], None] = print) -> Cases:
    """The lesions of an input, checked against the classifier.

    ``source`` is a dataset file (.h5), a class-folder tree, a folder of
    unlabelled ROI images, or a folder of CT volumes with masks and a mapping
    CSV (the importers' formats). Volumes are cropped with the ROI margins
    the training data were imported with (0.4 and 1.0, the importer's
    defaults, when they were not recorded).

    ROIs of any size are resized to the classifier's input exactly as its
    training ROIs were.

    Raises:
        PredictError / ImportSourceError / DatasetError: an unreadable input,
            other units than the training data's, or a class the classifier
            does not know.
    """
    from keras_lesions.data import read_dataset
    from keras_lesions.data.import_folders import import_image_folder
    from keras_lesions.data.importers import import_source

    source = Path(source)
    pre = classifier.preprocessing
    roi_margin = _recorded(pre, "roi_margin", 0.4)
    context_margin = max(_recorded(pre, "context_margin", 1.0), roi_margin)
    if source.is_file():
        if source.suffix.lower() not in (".h5", ".hdf5"):
            raise PredictError("is a file but not a dataset (.h5); give a dataset, a folder of "
                               "images, class folders, or volumes with a mapping CSV", source)
        # Its ROIs are resized to the classifier's input as the training ROIs
        # were, whatever input size the file names.
        dataset = read_dataset(source)
        kind = "dataset"
    elif source.is_dir() and mapping_csv is None and not any(
            entry.is_dir() for entry in _entries(source)):
        lesions, unit = import_image_folder(source, roi_margin=roi_margin, npy_unit=npy_unit,
                                            log=log)
        _check_unit(unit, pre, source)
        return Cases(lesions, np.full(len(lesions), -1, np.int64), unit, "images")
    elif source.is_dir() and mapping_csv is None and (
            folder := _single_class_folder(source)) is not None:
        # One class's lesions (a training dataset needs two classes; new
        # cases need not): the folder's images, labelled by its name.
        from keras_lesions.data.registry import canonical_class_name

        name = canonical_class_name(folder.name) or folder.name
        if name not in classifier.class_names:
            raise PredictError(f"holds lesions of class {name!r}, which the classifier does not "
                               f"know (its classes: {', '.join(classifier.class_names)})", source)
        lesions, unit = import_image_folder(folder, roi_margin=roi_margin, npy_unit=npy_unit,
                                            log=log)
        _check_unit(unit, pre, source)
        lesions = [dataclasses.replace(l, lesion_id=f"{name}/{l.lesion_id}",
                                       source=f"{folder.name}/{l.source}") for l in lesions]
        return Cases(lesions, np.full(len(lesions), classifier.class_names.index(name), np.int64),
                     unit, "class-folders")
    else:
        dataset = import_source(source, mapping_csv=mapping_csv, roi_margin=roi_margin,
                                context_margin=context_margin, input_size=classifier.input_size,
                                npy_unit=npy_unit, log=log)
        kind = "volumes" if (dataset.extra or {}).get("importer") == "volumes" else "class-folders"
    _check_unit(dataset.intensity_unit, pre, source)
    unknown = [c for c in dataset.class_names if c not in classifier.class_names]
    if unknown:
        raise PredictError(f"holds lesions of class {unknown[0]!r}, which the classifier does not "
                           f"know (its classes: {', '.join(classifier.class_names)})", source)
    index = np.array([classifier.class_names.index(c) for c in dataset.class_names], np.int64)
    return Cases(list(dataset.lesions), index[np.asarray(dataset.labels, np.int64)],
                 dataset.intensity_unit, kind)


def _recorded(preprocessing: dict, key: str, default: float) -> float:
    """A recorded margin, or the importer's default where none was recorded
    (phantoms draw theirs per lesion); 0 is a margin like any other."""
    value = preprocessing.get(key)
    return default if value is None else float(value)


def _single_class_folder(source: Path) -> Path | None:
    """The one sub-folder of a folder that holds nothing else, or None."""
    entries = list(_entries(source))
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else None


def _entries(folder: Path):
    from keras_lesions.data.readers.base import visible_entries

    return visible_entries(folder)


def _check_unit(unit: str, preprocessing: dict, where: Path) -> None:
    trained = preprocessing["intensity_unit"]
    if unit == trained:
        return
    if trained == "HU":
        raise PredictError(
            f"holds {unit} images, but the classifier was trained on Hounsfield units (windowed "
            f"W{preprocessing['window_width']:g}/L{preprocessing['window_level']:g}); give HU "
            "images (DICOM, NIfTI, .npy in HU)", where)
    raise PredictError(f"holds {unit} images, but the classifier was trained on normalized "
                       "[0, 1] images; give images of the same kind", where)


def predict_cases(classifier: Classifier, cases: Cases) -> np.ndarray:
    """float32 [n, classes]: the classifier's probabilities for the cases."""
    from keras_lesions.pipeline import lesion_inputs

    if not cases.lesions:
        return np.zeros((0, len(classifier.class_names)), np.float32)
    return np.asarray(classifier.network(lesion_inputs(cases.lesions, classifier.preprocessing)),
                      np.float32)


def predictions_table(classifier: Classifier, cases: Cases, probabilities: np.ndarray) -> str:
    """CSV text: one row per lesion (id, patient, source file, a probability
    per class, the predicted class, the true class where known)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = classifier.class_names
    writer.writerow(["lesion_id", "patient_id", "source", *[f"p_{n}" for n in names],
                     "predicted", "true_class"])
    for lesion, label, row in zip(cases.lesions, cases.labels, probabilities):
        writer.writerow([lesion.lesion_id, lesion.patient_id, lesion.source,
                         *[f"{v:.6f}" for v in row], names[int(np.argmax(row))],
                         names[label] if label >= 0 else ""])
    return buffer.getvalue()


def predict_to_csv(classifier_path: str | os.PathLike, source: str | os.PathLike,
                   out: str | os.PathLike, *, mapping_csv: str | os.PathLike | None = None,
                   npy_unit: str = "HU", log: Callable[[str], None] = print) -> dict:
    """Load the classifier, read and check the input, predict, and write the
    CSV atomically; nothing is written when anything is refused.

    Returns:
        {"n", "labelled", "accuracy" (of the labelled lesions, or None),
        "class_counts": predicted lesions per class, "out"}.
    """
    from keras_lesions.io import write_text

    out = Path(out)
    if out.exists() and out.is_dir():
        raise PredictError("is a folder; give the path of the CSV file to write", out)
    classifier = load_classifier(classifier_path)
    cases = read_cases(source, classifier, mapping_csv=mapping_csv, npy_unit=npy_unit, log=log)
    probabilities = predict_cases(classifier, cases)
    write_text(out, predictions_table(classifier, cases, probabilities))
    known = cases.labels >= 0
    predicted = probabilities.argmax(1) if len(probabilities) else np.zeros(0, np.int64)
    return {"n": len(cases.lesions), "labelled": int(known.sum()),
            "accuracy": float(np.mean(predicted[known] == cases.labels[known]))
            if known.any() else None,
            "class_counts": {n: int(np.sum(predicted == i))
                             for i, n in enumerate(classifier.class_names)},
            "out": str(out)}
