"""Model builders: each returns a named functional ``keras.Model``.

Nothing here compiles or trains. Every paper number sits beside a comment
citing its table or section.
"""
from keras_lesions.models.classifier import SubtractMean, build_lesion_classifier

__all__ = ["SubtractMean", "build_lesion_classifier"]
