"""Synthetic lesions: sampling trained generators, with provenance.

Each function returns arrays, labels and a provenance record (generator run,
seed, sources), and every synthetic lesion is marked as such. Importing this
package does not import TensorFlow; sampling does.
"""
from keras_lesions.synth.sample import (
    GENERATOR_KINDS,
    check_generator,
    generator_class_names,
    load_generator_run,
    sample_generator,
    synthesize_dataset,
    tanh_to_unit,
)

__all__ = [
    "GENERATOR_KINDS",
    "check_generator",
    "generator_class_names",
    "load_generator_run",
    "sample_generator",
    "synthesize_dataset",
    "tanh_to_unit",
]
