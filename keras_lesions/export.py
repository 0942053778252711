"""Exports for TensorFlow Serving: SavedModels with explicit signatures.

TF Serving expects ``MODEL_BASE/NAME/VERSION/`` with an integer VERSION; the
SavedModel's ``serving_default`` signature is what a client calls. Each export
carries the resolved config and the run's metrics in ``assets.extra/``, so a
deployed model can be traced to how it was trained.

``export_classifier`` exports a lesion classifier run, ``export_generator`` a
DCGAN/ACGAN generator run, ``export_disentangled`` the encoders and decoder of
a disentanglement run, and ``export_run`` picks one by the run's kind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from keras_lesions.errors import KerasLesionsError
from keras_lesions.io import write_json


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


RAW_SIGNATURE = "serve_raw"


def export_classifier(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export a finished classifier run as a TF Serving SavedModel.

    Two signatures, both returning ``probabilities`` float32 [N, classes] and
    ``class_name`` string [N]:

    - ``serving_default`` takes ``roi``: float32 [N, S, S, 1] in [0, 1], the
      network input (HU windowed and resized, as ``pipeline.roi_inputs``
      makes it; a Frid-Adar classifier subtracts its training-set mean inside
      the model).
    - ``serve_raw`` takes ``roi``: float32 [N, H, W, 1], ROI crops of any one
      size in the units of the training data (HU, or normalized [0, 1]), and
      ``hounsfield``: bool [N], whether they are HU. It windows them with the
      run's window and resizes them in the graph with the training code's own
      operations (``augment.classic.roi_network_inputs``), as `kl predict`
      renders a ROI image without a diameter; a flag other than the training
      data's unit is an InvalidArgument error.

    ``assets.extra/classifier.json`` describes both and the preprocessing.
    The export is written to a temporary folder beside ``out`` and renamed
    into place when complete.

    Raises:
        ExportError / RunError: bad target or run folder.
    """
    import tensorflow as tf
    import keras

    from keras_lesions.augment.classic import roi_network_inputs
    from keras_lesions.predict import PredictError, run_preprocessing
    from keras_lesions.runs.folder import read_run_info
    from keras_lesions.train.classifier import load_run_model

    out = check_version_dir(out)
    run_dir = Path(run_dir)
    info = read_run_info(run_dir, kind="lesion_classifier")
    model = load_run_model(run_dir)
    class_names = info.get("class_names")
    num_classes = model.output_shape[-1]
    if not class_names or len(class_names) != num_classes:
        raise ExportError(f"run.json lists class names {class_names} for a {num_classes}-class "
                          "model", run_dir)
    size = model.input_shape[1]
    names = tf.constant(class_names)
    try:
        preprocessing = run_preprocessing(info, run_dir, int(size))
    except PredictError:
        # A run from before runs recorded their preprocessing, its dataset
        # gone: the network-input signature only.
        preprocessing = None
    trained_on_hu = preprocessing is not None and preprocessing["intensity_unit"] == "HU"
    margin = 0.4 if preprocessing is None or preprocessing.get("roi_margin") is None else \
        float(preprocessing["roi_margin"])

    archive = keras.export.ExportArchive()
    archive.track(model)

    def classify(network_input):
        probabilities = model(network_input, training=False)
        return {"probabilities": probabilities,
                "class_name": tf.gather(names, tf.argmax(probabilities, axis=-1))}

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32, name="roi")])
    def serve(roi):
        return classify(roi)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="roi"),
                                  tf.TensorSpec([None], tf.bool, name="hounsfield")])
    def serve_raw(roi, hounsfield):
        unit = "Hounsfield units" if trained_on_hu else "normalized [0, 1] values"
        checks = [tf.debugging.assert_equal(
            hounsfield, tf.fill(tf.shape(hounsfield), trained_on_hu),
            message=f"this classifier was trained on {unit}: send hounsfield="
                    f"{str(trained_on_hu).lower()}"),
            tf.debugging.assert_equal(tf.shape(hounsfield)[0], tf.shape(roi)[0],
                                      message="one hounsfield flag per ROI")]
        with tf.control_dependencies(checks):
            if trained_on_hu:
                low = preprocessing["window_level"] - preprocessing["window_width"] / 2.0
                windowed = tf.clip_by_value((roi - low) / float(preprocessing["window_width"]),
                                            0.0, 1.0)
                return classify(roi_network_inputs(windowed, margin, size))
            clipped = tf.clip_by_value(roi, 0.0, 1.0)
            # As pipeline.roi_inputs: a normalized ROI already at the input size
            # is network input as it is.
            at_size = tf.reduce_all(tf.equal(tf.shape(roi)[1:3], size))
            network_input = tf.cond(at_size, lambda: tf.ensure_shape(clipped, [None, size, size, 1]),
                                    lambda: roi_network_inputs(clipped, margin, size))
            return classify(network_input)

    archive.add_endpoint("serving_default", serve)
    signatures = {"serving_default": {"inputs": {
        "roi": f"float32 [N, {size}, {size}, 1] in [0, 1]"}}}
    if preprocessing is not None:
        archive.add_endpoint(RAW_SIGNATURE, serve_raw)
        signatures[RAW_SIGNATURE] = {"inputs": {
            "roi": "float32 [N, H, W, 1], ROI crops of one size, in "
                   + ("HU" if trained_on_hu else "normalized [0, 1] values"),
            "hounsfield": f"bool [N], must be {str(trained_on_hu).lower()}"}}
    else:
        signatures[RAW_SIGNATURE] = ("not exported: the run records no preprocessing and its "
                                     "dataset file is gone")
    description = {
        "kind": "lesion_classifier", "class_names": list(class_names), "input_size": int(size),
        "preprocessing": preprocessing,
        "signatures": signatures,
        "outputs": {"probabilities": f"float32 [N, {num_classes}]", "class_name": "string [N]"},
        "run": str(run_dir),
    }
    from keras_lesions.model_card import CARD_JSON, CARD_MARKDOWN, card_markdown, card_of_run

    card = card_of_run(run_dir)
    return _write_archive(archive, out, run_dir, {"classifier.json": description, CARD_JSON: card},
                          {CARD_MARKDOWN: card_markdown(card)})


def _write_archive(archive, out: Path, run_dir: Path, extra_files: dict | None = None,
                   extra_text: dict[str, str] | None = None) -> Path:
    """Write ``archive`` to a staging folder beside ``out``, then rename it into place.

    The run's config.yaml, run.json and done.json (and ``extra_files``:
    name -> JSON-able payload; ``extra_text``: name -> text) are copied into
    ``assets.extra/``.
    """
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
        for name, payload in (extra_files or {}).items():
            write_json(provenance / name, payload)
        for name, text in (extra_text or {}).items():
            (provenance / name).write_text(text, encoding="utf-8")
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def export_generator(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export a finished DCGAN/ACGAN run's generator as a TF Serving SavedModel.

    The ``serving_default`` signature takes ``z``: float32 [N, latent_dim],
    drawn by the client from U[−1, 1] as in training (Frid-Adar et al. 2018
    §3.2), and for an ACGAN also ``class_id``: int32 [N], indices into the
    run's class names (§3.3; an id outside them is an InvalidArgument error).
    It returns ``images``: float32 [N, S, S, 1] in [0, 1] (the generator's tanh
    output mapped from [−1, 1] and clipped), the classifier's input range.

    ``assets.extra/`` holds the run's config.yaml, run.json and done.json, and
    ``generator.json`` describing the signature (kind, class names, latent
    size, z distribution, output range). The export is written to a temporary
    folder beside ``out`` and renamed into place when complete.

    Raises:
        ExportError: a bad target folder.
        RunError: not a finished generator run.
    """
    import tensorflow as tf
    import keras

    from keras_lesions.synth.sample import load_generator_run

    out = check_version_dir(out)
    run_dir = Path(run_dir)
    model, info = load_generator_run(run_dir)
    kind = info["kind"]
    latent_dim = int(model.inputs[0].shape[-1])
    num_classes = len(info["class_names"])

    def to_unit(images):
        return tf.clip_by_value((images + 1.0) / 2.0, 0.0, 1.0)

    archive = keras.export.ExportArchive()
    archive.track(model)
    z_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="z")
    if kind == "dcgan":
        @tf.function(input_signature=[z_spec])
        def serve(z):
            return {"images": to_unit(model(z, training=False))}
    else:
        @tf.function(input_signature=[z_spec, tf.TensorSpec([None], tf.int32, name="class_id")])
        def serve(z, class_id):
            # An out-of-range id would silently embed as zeros on some devices.
            checks = [tf.debugging.assert_non_negative(class_id, message="class_id < 0"),
                      tf.debugging.assert_less(class_id, num_classes,
                                               message=f"class_id >= {num_classes}")]
            with tf.control_dependencies(checks):
                images = model([z, class_id], training=False)
            return {"images": to_unit(images)}

    archive.add_endpoint("serving_default", serve)
    description = {
        "kind": kind,
        "class_names": list(info["class_names"]),
        "class_name": info.get("class_name"),
        "latent_dim": latent_dim,
        "image_size": int(model.output_shape[1]),
        "inputs": {"z": f"float32 [N, {latent_dim}], uniform in [-1, 1]",
                   **({"class_id": "int32 [N], index into class_names"}
                      if kind == "acgan" else {})},
        "outputs": {"images": f"float32 [N, {model.output_shape[1]}, "
                              f"{model.output_shape[2]}, 1] in [0, 1]"},
        "fold": info.get("fold"),
        "run": str(run_dir),
    }
    return _write_archive(archive, out, run_dir, {"generator.json": description})


def export_disentangled(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export a finished disentanglement run's E_C, E_R and G_R as one SavedModel.

    Signatures (Ben-Cohen et al. 2019 §2):

    - ``serving_default``: ``image`` float32 [N, S, S, 1] in [0, 1] (HU
      windowed W400/L50 and resized, as ``pipeline.roi_inputs`` makes it)
      → ``c`` = E_C(image) and ``r`` = E_R(image), float32 [N, code_size].
    - ``decode``: ``c``, ``r`` → ``image`` = G_R(c, r), float32 [N, S, S, 1]
      in [0, 1] (swap or mix codes between the two calls).
    - ``classify``: ``image`` → ``probabilities`` [N, classes] and
      ``class_name`` [N] from E_C and its classifier (step 1).

    ``assets.extra/disentangle.json`` describes them. Written to a staging
    folder beside ``out`` and renamed into place when complete.

    Raises:
        ExportError: a bad target folder.
        RunError: not a finished disentanglement run.
    """
    import tensorflow as tf
    import keras

    from keras_lesions.train.disentangle import load_disentangled

    out = check_version_dir(out)
    networks = load_disentangled(run_dir)
    size = networks.input_size
    c_size = int(networks.encoder_c.output_shape[-1])
    r_size = int(networks.encoder_r.output_shape[-1])
    names = tf.constant(networks.class_names)

    archive = keras.export.ExportArchive()
    for network in (networks.encoder_c, networks.encoder_r, networks.decoder,
                    networks.classifier):
        archive.track(network)
    image_spec = tf.TensorSpec([None, size, size, 1], tf.float32, name="image")

    @tf.function(input_signature=[image_spec])
    def encode(image):
        return {"c": networks.encoder_c(image, training=False),
                "r": networks.encoder_r(image, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None, c_size], tf.float32, name="c"),
                                  tf.TensorSpec([None, r_size], tf.float32, name="r")])
    def decode(c, r):
        return {"image": networks.decoder(tf.concat([c, r], axis=-1), training=False)}

    @tf.function(input_signature=[image_spec])
    def classify(image):
        probabilities = networks.classifier(networks.encoder_c(image, training=False),
                                            training=False)
        return {"probabilities": probabilities,
                "class_name": tf.gather(names, tf.argmax(probabilities, axis=-1))}

    archive.add_endpoint("serving_default", encode)
    archive.add_endpoint("decode", decode)
    archive.add_endpoint("classify", classify)
    description = {
        "kind": "disentangle",
        "class_names": networks.class_names,
        "image_size": size,
        "signatures": {
            "serving_default": {"inputs": {"image": f"float32 [N, {size}, {size}, 1] in [0, 1]"},
                                "outputs": {"c": f"float32 [N, {c_size}]",
                                            "r": f"float32 [N, {r_size}]"}},
            "decode": {"inputs": {"c": f"float32 [N, {c_size}]", "r": f"float32 [N, {r_size}]"},
                       "outputs": {"image": f"float32 [N, {size}, {size}, 1] in [0, 1]"}},
            "classify": {"inputs": {"image": f"float32 [N, {size}, {size}, 1] in [0, 1]"},
                         "outputs": {"probabilities": f"float32 [N, {len(networks.class_names)}]",
                                     "class_name": "string [N]"}}},
        "fold": networks.info.get("fold"),
        "run": str(networks.run_dir),
    }
    return _write_archive(archive, out, networks.run_dir, {"disentangle.json": description})


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export any finished run: its run.json "kind" picks the exporter.

    "lesion_classifier" → ``export_classifier``; "dcgan" / "acgan" →
    ``export_generator``.

    Raises:
        RunError: no run folder or no run.json.
        ExportError: a kind nothing can export, or a bad target folder.
    """
    from keras_lesions.runs.folder import read_run_info

    run_dir = Path(run_dir)
    kind = read_run_info(run_dir).get("kind")
    if kind == "lesion_classifier":
        return export_classifier(run_dir, out)
    if kind in ("dcgan", "acgan"):
        return export_generator(run_dir, out)
    if kind == "disentangle":
        return export_disentangled(run_dir, out)
    raise ExportError(f"is a {kind!r} run; only lesion_classifier, dcgan, acgan and "
                      "disentangle runs can be exported", run_dir)
