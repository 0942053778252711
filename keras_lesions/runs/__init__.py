"""The one run lifecycle: run folders, resumable training, predictions.

``runs.folder`` holds the rules every trainer shares (claim, record the
settings, refuse to mix two trainings, the done marker); ``runs.checkpoint``
the per-epoch checkpoint, history and atomic saves; ``runs.predictions`` the
test-fold predictions. Importing ``keras_lesions.runs`` does not import
TensorFlow; ``runs.checkpoint`` does.
"""
from keras_lesions.runs.folder import (
    RunError,
    data_fingerprint,
    finish_run,
    first_difference,
    is_done,
    is_started,
    read_done,
    read_run_info,
    start_run,
)

__all__ = [
    "RunError",
    "data_fingerprint",
    "finish_run",
    "first_difference",
    "is_done",
    "is_started",
    "read_done",
    "read_run_info",
    "start_run",
]
