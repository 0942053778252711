"""Sampling trained DCGAN / ACGAN generators into arrays and lesion datasets.

Frid-Adar et al. 2018 §3.2: the generator maps z ∈ U[−1, 1]^100 to a
64×64×1 lesion ROI through tanh, i.e. in [−1, 1]; §3.3: the ACGAN generator
also takes the class. §4.2.2: "we collected large numbers of synthetic lesions
for all three lesion classes" (DCGAN, one generator per class), which become
the D_synth groups. (§4.2.2 says the noise was "normal distributed", §3.2 says
uniform in [−1, 1]; we follow §3.2, the training recipe, so that sampling
draws z from the distribution the generator was trained on.)

A generator run folder (written by ``keras_lesions.train.gan``)::

    RUN/generator.keras   functional model: z float32 [B, latent_dim] in
                          U[−1, 1] (ACGAN: [z, class_id int32 [B]]) →
                          images float32 [B, S, S, 1] in [−1, 1] (tanh)
    RUN/run.json          {"kind": "dcgan" | "acgan", "class_names": [...],
                          "class_name": (DCGAN only) the class it makes,
                          "latent_dim", "image_size", "fold", "seed", ...}
    RUN/done.json         written last: the training finished

Every function returns a provenance record beside its arrays (the generator
run, its fold, the sampling seed), and synthetic lesions are marked as such
wherever they go.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lesions.data.dataset import Lesion, LesionDataset
from keras_lesions.errors import KerasLesionsError
from keras_lesions.inference import predict
from keras_lesions.runs.folder import RunError, is_done, read_run_info

GENERATOR_KINDS = ("dcgan", "acgan")
# Batch of the sampling forward passes: large enough to keep the CPU busy,
# small enough that a 64×64 paper-size generator stays far below 1 GB.
SAMPLE_BATCH_SIZE = 256
# Synthetic ROIs have no measured lesion box; we place one the way the importers
# estimate it for plain ROIs without a mask (lesion plus 0.4·diameter of tissue
# on each side, their default roi_margin). A guess: it only matters if scale
# augmentation is ever applied to synthetic lesions.
SYNTHETIC_ROI_MARGIN = 0.4


# --------------------------------------------------------------------------- loading


def load_generator_run(run_dir: str | os.PathLike):
    """Load a finished DCGAN/ACGAN run's generator and check it against run.json.

    Loading is ``keras_lesions.train.gan.load_generator``'s; this adds the
    checks sampling relies on (see ``check_generator``).

    Args:
        run_dir: the generator run folder (see module docstring).

    Returns:
        ``(model, info)``: the generator ``keras.Model`` and run.json as a dict.

    Raises:
        RunError: naming the folder: missing, not a run, of another kind (a
            classifier run, say), unfinished, or a generator that does not
            match its run.json.
    """
    from keras_lesions.train.gan import load_generator

    model, info = load_generator(run_dir)
    check_generator(model, info, run_dir)
    return model, info


def generator_class_names(generators: Sequence[str | os.PathLike]) -> list[str]:
    """The class order of generator runs, read from their run.json files.

    Each run records its dataset's class order; the result is the union in
    first-seen order (normally every run lists the same classes). Only
    run.json is read, no model is loaded.

    Raises:
        RunError: a folder that is not a finished generator run.
    """
    names: list[str] = []
    for run_dir in map(Path, generators):
        info = read_run_info(run_dir, kind=GENERATOR_KINDS)
        if not is_done(run_dir):
            raise RunError(f"holds an unfinished {info['kind']} run (no done.json); resume its "
                           "training first", run_dir)
        names += [c for c in info.get("class_names") or [] if c not in names]
    return names


def check_generator(model, info: dict, where: str | os.PathLike = "<generator>") -> None:
    """Check a generator model against its run.json facts.

    Raises:
        RunError: kind, class names, latent size, inputs or image size disagree.
    """
    kind = info.get("kind")
    if kind not in GENERATOR_KINDS:
        raise RunError(f"is a {kind!r} run, not a DCGAN or ACGAN generator run", where)
    class_names = info.get("class_names")
    if not class_names or not all(isinstance(c, str) for c in class_names):
        raise RunError(f"run.json lists no class names (got {class_names!r})", where)
    if kind == "dcgan" and info.get("class_name") not in class_names:
        raise RunError(f"DCGAN run.json names class {info.get('class_name')!r}, which is not "
                       f"among its class names {class_names}", where)
    inputs = model.inputs
    if len(inputs) != (2 if kind == "acgan" else 1):
        raise RunError(f"the {kind} generator takes {len(inputs)} inputs; expected "
                       f"{'[z, class_id]' if kind == 'acgan' else 'z'}", where)
    latent_dim = inputs[0].shape[-1]
    if info.get("latent_dim") is not None and int(info["latent_dim"]) != latent_dim:
        raise RunError(f"generator takes z of size {latent_dim} but run.json says latent_dim "
                       f"{info['latent_dim']}", where)
    shape = tuple(model.output_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        raise RunError(f"generator makes images of shape {shape}, expected [B, S, S, 1]", where)
    if info.get("image_size") is not None and int(info["image_size"]) != shape[1]:
        raise RunError(f"generator makes {shape[1]}x{shape[2]} images but run.json says "
                       f"image_size {info['image_size']}", where)


# --------------------------------------------------------------------------- sampling


def sample_generator(
    generator,
    n: int,
    seed: int,
    class_name: str | None = None,
    *,
    info: dict | None = None,
    batch_size: int = SAMPLE_BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw ``n`` synthetic lesion ROIs from a trained generator.

    z is drawn from U[−1, 1]^latent_dim (§3.2) with ``numpy.random.default_rng(seed)``,
    so a seed gives the same images on every call. The generator runs in
    inference mode (``training=False``: batch-norm moving statistics) in
    batches, and its tanh output is mapped from [−1, 1] to [0, 1], the
    classifier's input range.

    Args:
        generator: a generator run folder, or a generator ``keras.Model`` with
            its run facts in ``info``.
        n: number of images (> 0).
        seed: sampling seed (z, nothing else is random).
        class_name: DCGAN: must be None or the class it was trained on.
            ACGAN: None for labels balanced over the run's classes (``i mod
            K``: counts differ by at most one), or one class for all images.
        info: run.json facts; required with a model, ignored with a folder.
        batch_size: images per forward pass.

    Returns:
        ``(images, labels, provenance)``: float32 [n, S, S, 1] in [0, 1]; int32
        [n] indices into ``provenance["class_names"]`` (the run's class
        order); and a JSON-able dict (generator, kind, class_names, classes,
        seed, n, latent_dim, image_size, fold, run_seed, z_distribution).

    Raises:
        KerasLesionsError: n ≤ 0, an unknown class, a DCGAN asked for another
            class, or ``info`` missing with a model.
        RunError: the folder is not a finished generator run.
    """
    if isinstance(generator, (str, os.PathLike)):
        where = str(generator)
        model, info = load_generator_run(generator)
    else:
        if info is None:
            raise KerasLesionsError("sample_generator needs the run facts (info=) with a model")
        where = f"<model {getattr(generator, 'name', '?')}>"
        model = generator
        check_generator(model, info, where)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise KerasLesionsError(f"number of synthetic images must be a positive integer, "
                                f"got {n!r}")
    kind = info["kind"]
    class_names = list(info["class_names"])
    if class_name is not None and class_name not in class_names:
        raise KerasLesionsError(f"unknown class {class_name!r}: the generator knows "
                                f"{', '.join(class_names)}", where)
    if kind == "dcgan":
        if class_name is not None and class_name != info["class_name"]:
            raise KerasLesionsError(f"this DCGAN makes {info['class_name']!r} lesions only, not "
                                    f"{class_name!r}", where)
        labels = np.full(n, class_names.index(info["class_name"]), np.int32)
    elif class_name is not None:
        labels = np.full(n, class_names.index(class_name), np.int32)
    else:
        labels = (np.arange(n) % len(class_names)).astype(np.int32)

    latent_dim = int(model.inputs[0].shape[-1])
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1.0, 1.0, size=(n, latent_dim)).astype(np.float32)
    images = tanh_to_unit(predict(model, z if kind == "dcgan" else [z, labels], batch_size))
    provenance = {
        "generator": where,
        "kind": kind,
        "class_names": class_names,
        "classes": sorted({class_names[i] for i in labels.tolist()}, key=class_names.index),
        "seed": int(seed),
        "n": int(n),
        "latent_dim": latent_dim,
        "image_size": int(images.shape[1]),
        "fold": info.get("fold"),
        "run_seed": info.get("seed"),
        "z_distribution": "uniform[-1, 1]",
    }
    return images, labels, provenance


def tanh_to_unit(images: np.ndarray) -> np.ndarray:
    """Map generator output from [−1, 1] to float32 [0, 1], clipped."""
    return np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)


# --------------------------------------------------------------------------- datasets


def synthesize_dataset(
    generators: Sequence[str | os.PathLike],
    n: int,
    seed: int,
    class_names: Sequence[str],
    *,
    image_size: int = 64,
    description: str = "",
) -> LesionDataset:
    """Sample generators into a lesion dataset of synthetic ROIs (D_synth material).

    Each DCGAN contributes ``n`` lesions of its class; an ACGAN contributes
    ``n`` per class it knows. Generator ``i`` (in the given order) samples
    with seed ``seed + i``, so each generator gets its own z stream and the
    whole dataset is reproducible from ``seed``.

    Every lesion is marked synthetic: lesion id ``synth-<class>-000001``
    (numbered per class), patient id ``synthetic:<run name>`` (the run
    folder's name, extended by parent folders until the generators' names
    differ), so synthetic lesions can never share a patient with real ones;
    ``source`` is the run folder and ``attributes`` holds {"synthetic": True,
    "generator", "kind", "seed", "index", "fold"}. ROIs have no context or
    mask, diameters are unknown (NaN, source "unknown").

    All generators must come from the same cross-validation fold: a generator
    trained with fold k held out may only augment the training of fold k.

    Args:
        generators: generator run folders.
        n: lesions per DCGAN / per class of an ACGAN (> 0).
        seed: sampling seed.
        class_names: the class order of the target dataset (usually the real
            dataset's); each generator's classes must be among them.
        image_size: the side every generator must produce.
        description: one line for humans (a default is made).

    Returns:
        A validated ``LesionDataset`` with ``intensity_unit="normalized"``,
        ``input_size=image_size`` and provenance in ``extra``.

    Raises:
        KerasLesionsError: no generators, a generator listed twice, n ≤ 0, a
            class outside ``class_names``, a mismatched image size, or
            generators of different folds.
        RunError: a folder that is not a finished generator run.
    """
    generators = [Path(g) for g in generators]
    class_names = list(class_names)
    if not generators:
        raise KerasLesionsError("no generator runs given")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise KerasLesionsError(f"synthetic lesions per class must be a positive integer, "
                                f"got {n!r}")
    resolved = [g.resolve() for g in generators]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise KerasLesionsError("generator run listed twice", generators[i])

    runs = []
    for path in generators:
        model, info = load_generator_run(path)
        made = [info["class_name"]] if info["kind"] == "dcgan" else list(info["class_names"])
        missing = [c for c in made if c not in class_names]
        if missing:
            raise KerasLesionsError(f"makes {missing[0]!r} lesions, a class outside "
                                    f"{', '.join(class_names)}", path)
        size = int(model.output_shape[1])
        if size != image_size:
            raise KerasLesionsError(f"makes {size}x{size} images; the synthetic dataset needs "
                                    f"{image_size}x{image_size}", path)
        runs.append((path, model, info, made))
    folds = {json.dumps(info.get("fold")) for _, _, info, _ in runs}
    if len(folds) > 1:
        listing = ", ".join(f"{p} (fold {info.get('fold')})" for p, _, info, _ in runs)
        raise KerasLesionsError(f"generators come from different folds: {listing}; a "
                                "synthetic set may only augment the fold its generators "
                                "held out")

    names = _run_names(resolved)
    lesions: list[Lesion] = []
    counters = dict.fromkeys(class_names, 0)
    records = []
    lesion_h = max(1, int(round(image_size / (1 + 2 * SYNTHETIC_ROI_MARGIN))))
    r0 = (image_size - lesion_h) // 2
    lesion_box = (r0, r0, r0 + lesion_h, r0 + lesion_h)
    for i, (path, model, info, made) in enumerate(runs):
        count = n * len(made)
        images, labels, provenance = sample_generator(model, count, seed + i, info=info)
        provenance["generator"] = str(path)
        records.append(provenance)
        run_classes = provenance["class_names"]
        for index in range(count):
            name = run_classes[int(labels[index])]
            counters[name] += 1
            roi = np.ascontiguousarray(images[index, :, :, 0])
            lesions.append(Lesion(
                lesion_id=f"synth-{name}-{counters[name]:06d}",
                patient_id=f"synthetic:{names[i]}",
                label=class_names.index(name),
                roi=roi,
                context=roi,
                roi_box=(0, 0, image_size, image_size),
                lesion_box=lesion_box,
                mask=None,
                diameter_px=math.nan,
                diameter_mm=math.nan,
                diameter_source="unknown",
                source=str(path),
                has_context=False,
                slice_index=-1,
                attributes={"synthetic": True, "generator": str(path), "kind": info["kind"],
                            "seed": seed + i, "index": index, "fold": info.get("fold")},
            ))
    fold = runs[0][2].get("fold")
    dataset = LesionDataset(
        class_names=class_names,
        lesions=lesions,
        intensity_unit="normalized",
        window_level=math.nan,
        window_width=math.nan,
        input_size=image_size,
        created_by="keras_lesions.synth.synthesize_dataset",
        description=description or (
            f"{len(lesions)} synthetic lesions from {len(runs)} generator run(s) of fold {fold}"),
        extra={"synthetic": True, "generators": [str(p) for p in generators], "seed": int(seed),
               "n": int(n), "fold": fold, "samples": records},
    )
    dataset.validate()
    return dataset


def _run_names(paths: Sequence[Path]) -> list[str]:
    """Each run's folder name, extended by parents until all names differ."""
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


def synthesize_file(generators: Sequence[str | os.PathLike], n: int, seed: int,
                    out: str | os.PathLike) -> LesionDataset:
    """What ``kl synthesize`` runs: sample generator runs into a dataset file, in
    the class order their runs recorded (see :func:`synthesize_dataset`).

    Raises:
        KerasLesionsError: n ≤ 0 and everything :func:`synthesize_dataset` refuses.
    """
    from keras_lesions.data.dataset import write_dataset

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise KerasLesionsError(f"--n must be a positive number of lesions, got {n}")
    dataset = synthesize_dataset(list(generators), n, seed, generator_class_names(generators))
    write_dataset(dataset, out)
    return dataset
