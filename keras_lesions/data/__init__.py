"""The lesion data layer: dataset format, importers, phantoms, folds.

Nothing in this package imports TensorFlow: readers and importers return numpy.
"""
from keras_lesions.data.dataset import (
    FORMAT_VERSION,
    Lesion,
    LesionDataset,
    read_dataset,
    write_dataset,
)
from keras_lesions.data.registry import CLASS_NAMES, PRESETS, DatasetPreset

__all__ = [
    "CLASS_NAMES",
    "FORMAT_VERSION",
    "PRESETS",
    "DatasetPreset",
    "Lesion",
    "LesionDataset",
    "read_dataset",
    "write_dataset",
]
