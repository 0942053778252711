"""keras-lesions: liver-lesion CT classification with synthetic augmentation.

Importing the package is cheap and has no side effects: TensorFlow is only
imported by the modules that build or train models.
"""
from keras_lesions._version import __version__
from keras_lesions.errors import KerasLesionsError

__all__ = ["__version__", "KerasLesionsError"]
