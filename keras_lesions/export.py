"""Exports for TensorFlow Serving: SavedModels with explicit signatures.

TF Serving expects ``MODEL_BASE/NAME/VERSION/`` with an integer VERSION; the
SavedModel's ``serving_default`` signature is what a client calls. Each export
carries the resolved config and the run's metrics in ``assets.extra/``, so a
deployed model can be traced to how it was trained.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from keras_lesions.errors import KerasLesionsError


class ExportError(KerasLesionsError):
    """An export target is unusable or the run cannot be exported."""


def check_version_dir(out: str | os.PathLike) -> Path:
    """``out`` must look like NAME/VERSION with an integer VERSION and not exist yet."""
    out = Path(out)
    if not out.name.isdigit():
        raise ExportError("TF Serving needs a folder named after an integer version, like "
                          "saved_models/lesion_classifier/1", out)
    if out.exists():
        raise ExportError("already exists: exports are never overwritten; use a new version "
                          "number", out)
    return out


def export_classifier(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export a finished classifier run as a TF Serving SavedModel.

    The ``serving_default`` signature takes ``roi``: float32 [N, S, S, 1] in
    [0, 1] (HU windowed W400/L50 and resized, as ``data.pipeline.roi_inputs``
    makes it; the training-set mean is subtracted inside the model) and returns
    ``probabilities`` float32 [N, classes] and ``class_name`` string [N].

    The export is written to a temporary folder beside ``out`` and renamed
    into place when complete.

    Raises:
        ExportError / RunError: bad target or run folder.
    """
    import tensorflow as tf
    import keras

    from keras_lesions.train.classifier import load_run_model

    out = check_version_dir(out)
    run_dir = Path(run_dir)
    model = load_run_model(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    class_names = info.get("class_names")
    num_classes = model.output_shape[-1]
    if not class_names or len(class_names) != num_classes:
        raise ExportError(f"run.json lists class names {class_names} for a {num_classes}-class "
                          "model", run_dir)
    size = model.input_shape[1]
    names = tf.constant(class_names)

    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32, name="roi")])
    def serve(roi):
        probabilities = model(roi, training=False)
        return {"probabilities": probabilities,
                "class_name": tf.gather(names, tf.argmax(probabilities, axis=-1))}

    archive.add_endpoint("serving_default", serve)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        archive.write_out(str(staging / "model"), verbose=False)
        # TF Serving ignores assets.extra/: the place for provenance files.
        provenance = staging / "model" / "assets.extra"
        provenance.mkdir(exist_ok=True)
        for extra in ("config.yaml", "run.json", "done.json"):
            if (run_dir / extra).is_file():
                shutil.copy2(run_dir / extra, provenance / extra)
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
