"""Swapping and mixing the specified factors of lesions (Ben-Cohen et al. 2019 §2.2).

Each image x has a specified code c = E_C(x) (what the classifier reads) and
an unspecified code r = E_R(x) (what the decoder G_R still needs to redraw
it). Swapping (Fig. 3) renders G_R(E_R(x), E_C(y)). The mixture of specified
factors (Fig. 4) keeps an image's r and replaces its c by

    c_mix = α_0·c + Σ_j α_j·c_j,   Σ α = 1,

where c_j is, for each other class j, the training c vector nearest to c in
L2 ("most similar [...] to include a mixture of c vectors that are hard to
distinguish but derive from different classes"). The new image G_R(r, c_mix)
gets the soft target of the class proportions: α_0 for its own class, α_j for
class j.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from keras_lesions.config import parse_alpha
from keras_lesions.inference import predict
from keras_lesions.errors import MixtureError

if TYPE_CHECKING:
    from keras_lesions.data.dataset import LesionDataset


def nearest_of_other_classes(codes: np.ndarray, labels: np.ndarray, num_classes: int
                             ) -> np.ndarray:
    """For each code, the index of the nearest code (L2) of every class.

    Returns:
        int64 (n, num_classes): column j holds the nearest code of class j;
        the image's own class column holds the image itself. A class without
        any code gets -1.
    """
    codes = np.asarray(codes, np.float64)
    labels = np.asarray(labels, np.int64)
    n = len(codes)
    out = np.full((n, num_classes), -1, np.int64)
    out[np.arange(n), labels] = np.arange(n)
    squared = (codes ** 2).sum(1)
    for j in range(num_classes):
        members = np.flatnonzero(labels == j)
        if len(members) == 0:
            continue
        distances = squared[:, None] - 2.0 * codes @ codes[members].T + squared[members][None]
        nearest = members[distances.argmin(1)]
        others = labels != j
        out[others, j] = nearest[others]
    return out


def draw_proportions(labels: np.ndarray, available: np.ndarray, alpha, rng) -> np.ndarray:
    """Class proportions of each mixture; rows sum to 1.

    Args:
        labels: (n,) own class of each image.
        available: bool (n, classes): classes that can take part (the own class
            and every class with training codes).
        alpha: "random" (uniform on the simplex of the available classes:
            Dirichlet(1, ..., 1)) or a share a in (0, 1] kept by the own class,
            the rest split equally among the other available classes.
        rng: numpy Generator.

    Returns:
        float64 (n, classes).
    """
    alpha = parse_alpha(alpha)
    labels = np.asarray(labels, np.int64)
    n, k = available.shape
    out = np.zeros((n, k))
    for i in range(n):
        classes = np.flatnonzero(available[i])
        if alpha == "random":
            out[i, classes] = rng.dirichlet(np.ones(len(classes)))
        else:
            others = classes[classes != labels[i]]
            out[i, labels[i]] = alpha if len(others) else 1.0
            if len(others):
                out[i, others] = (1.0 - alpha) / len(others)
    return out


def mix_codes(codes: np.ndarray, partners: np.ndarray, proportions: np.ndarray) -> np.ndarray:
    """c_mix[i] = Σ_j proportions[i, j] · codes[partners[i, j]] (absent classes skipped)."""
    safe = np.where(partners >= 0, partners, 0)
    weights = np.where(partners >= 0, proportions, 0.0)
    return np.einsum("nk,nkd->nd", weights, np.asarray(codes)[safe]).astype(np.float32)


def encode(networks, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(c, r) = (E_C(x), E_R(x)) of images float32 [n, S, S, 1] in [0, 1].

    Raises:
        MixtureError: images of another size than the networks take.
    """
    check_images(images, networks.input_size)
    return predict(networks.encoder_c, images, batch), predict(networks.encoder_r, images, batch)


def decode(networks, c: np.ndarray, r: np.ndarray, batch: int = 64) -> np.ndarray:
    """G_R(c, r): images float32 [n, S, S, 1] in [0, 1]."""
    z = np.concatenate([np.asarray(c, np.float32), np.asarray(r, np.float32)], axis=1)
    return predict(networks.decoder, z, batch)


def check_images(images: np.ndarray, size: int) -> None:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (size, size, 1):
        raise MixtureError(f"images must be [n, {size}, {size}, 1] for these networks, got "
                           f"{tuple(images.shape)}")


def make_mixtures(networks, images: np.ndarray, labels: np.ndarray, n: int, alpha,
                  seed: int = 0) -> dict:
    """``n`` mixtures of specified factors from training images (§2.2).

    Every training image is used in turn (in a seeded order, again and again
    until ``n`` are made): its r, and c mixed with the nearest training c of
    each other class, with fresh proportions each time.

    Args:
        networks: a ``Disentangled`` (``train.disentangle.load_disentangled``):
            encoder_c, encoder_r, decoder, class_names, input_size.
        images: float32 [m, S, S, 1] in [0, 1], the training images (never
            the test fold).
        labels: (m,) their classes.
        n: number of mixtures.
        alpha: "random" or the share in (0, 1] kept by the image's own c.
        seed: proportions and order.

    Returns:
        ``{"images" [n, S, S, 1], "soft_labels" (n, classes), "source" (n,)
        index of the image whose r is used, "partners" (n, classes) index of
        the c taken from each class, "proportions" (n, classes)}``.

    Raises:
        MixtureError: bad α, n < 1, no images, wrong image size, or labels
            outside the run's classes.
    """
    alpha = parse_alpha(alpha)
    labels = np.asarray(labels, np.int64)
    num_classes = len(networks.class_names)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise MixtureError(f"the number of mixtures must be an integer ≥ 1, got {n!r}")
    if len(images) == 0 or len(images) != len(labels):
        raise MixtureError(f"need training images with one label each, got {len(images)} "
                           f"images and {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise MixtureError(f"labels must lie in [0, {num_classes}) (the run's classes)")
    c, r = encode(networks, images)
    partners = nearest_of_other_classes(c, labels, num_classes)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(images))
                            for _ in range(-(-int(n) // len(images)))])[:int(n)]
    proportions = draw_proportions(labels[order], partners[order] >= 0, alpha, rng)
    c_mix = mix_codes(c, partners[order], proportions)
    mixed = decode(networks, c_mix, r[order])
    return {"images": mixed, "soft_labels": proportions.astype(np.float32), "source": order,
            "partners": partners[order], "proportions": proportions}


def mixture_dataset(networks, dataset, indices: Sequence[int], n: int, alpha, seed: int = 0,
                    *, created_by: str = "") -> "LesionDataset":
    """Mixtures of the chosen lesions of ``dataset`` as a lesion dataset with soft labels.

    The images are normalized [0, 1] ROIs of the networks' input size, no
    context. Each keeps its r-source lesion's patient id (so leakage checks
    see it) and lists every lesion whose code it holds in its attributes.
    ``extra["fold"]`` records the run's test fold: the mixtures may only
    augment that fold's training.

    Raises:
        MixtureError: see :func:`make_mixtures`; a dataset whose classes or
            input size differ from the run's.
    """
    from keras_lesions.pipeline import roi_inputs

    size = networks.input_size
    if list(dataset.class_names) != networks.class_names:
        raise MixtureError(f"the dataset's classes {list(dataset.class_names)} differ from the "
                           f"run's {networks.class_names}")
    if dataset.input_size != size:
        raise MixtureError(f"the dataset's ROIs are meant for {dataset.input_size}×"
                           f"{dataset.input_size} input but the run's networks take "
                           f"{size}×{size}")
    indices = np.asarray(indices, np.int64)
    images = roi_inputs(dataset, indices, size)
    labels = dataset.labels[indices]
    made = make_mixtures(networks, images, labels, n, alpha, seed)
    ids = dataset.lesion_ids[indices]
    names = list(dataset.class_names)
    attributes = []
    for row in range(len(made["images"])):
        donors = {names[j]: str(ids[made["partners"][row, j]]) for j in range(len(names))
                  if made["partners"][row, j] >= 0 and made["proportions"][row, j] > 0}
        attributes.append({"c_from": donors,
                           "proportions": {names[j]: round(float(p), 6)
                                           for j, p in enumerate(made["proportions"][row])}})
    return soft_image_dataset(
        dataset, made["images"], made["soft_labels"], indices[made["source"]],
        # fold and seed in the id: two mixture sets can augment one training
        id_prefix=f"mix-f{networks.info.get('fold')}-s{int(seed)}", what="mixture",
        attributes=attributes, created_by=created_by,
        description=f"{len(made['images'])} mixtures of specified factors (alpha "
                    f"{parse_alpha(alpha)})",
        extra={"kind": "mixture", "fold": networks.info.get("fold"), "alpha": str(alpha),
               "seed": int(seed), "run": str(networks.run_dir),
               "dataset": str(networks.info.get("dataset", ""))})


def soft_image_dataset(dataset, images: np.ndarray, soft_labels: np.ndarray,
                       sources: Sequence[int], *, id_prefix: str, what: str,
                       attributes: Sequence[dict], description: str, extra: dict,
                       created_by: str = "") -> "LesionDataset":
    """Made images with soft targets as a lesion dataset: the format of the
    mixtures, shared by their controls (``synth.controls``).

    Each image becomes a context-less [0, 1] ROI of its own size that keeps
    its source lesion's patient id (so leakage checks see it); its hard label
    is the arg-max of its soft target.

    Args:
        dataset: the real dataset the sources index.
        images: float32 [n, S, S, 1] in [0, 1].
        soft_labels: (n, classes), rows summing to 1 (renormalised here).
        sources: (n,) index in ``dataset`` of each image's source lesion.
        id_prefix: lesion ids are ``<id_prefix>-<row>``.
        what: "mixture", "label-smoothing", ...: the lesions' ``source`` text.
        attributes: per image, recorded with ``r_from`` (the source's id).
    """
    from keras_lesions.data.dataset import Lesion, LesionDataset

    size = int(images.shape[1])
    lesions = []
    for row, (image, soft, source) in enumerate(zip(images, soft_labels, sources)):
        original = dataset.lesions[int(source)]
        r0, c0, r1, c1 = original.roi_box
        # The lesion's diameter in made-image pixels, for the shift limit of
        # online augmentation (its share of the source ROI is kept).
        diameter = float(original.diameter_px) * size / max(r1 - r0, c1 - c0)
        roi = np.clip(image[:, :, 0], 0.0, 1.0)
        lesions.append(Lesion(
            lesion_id=f"{id_prefix}-{row:06d}", patient_id=original.patient_id,
            label=int(np.argmax(soft)), roi=roi, context=roi, roi_box=(0, 0, size, size),
            lesion_box=(0, 0, size, size), diameter_px=diameter,
            diameter_source="roi-estimate", source=f"{what} of {original.lesion_id}",
            has_context=False, attributes={"r_from": original.lesion_id, **attributes[row]}))
    soft = np.asarray(soft_labels, np.float64)
    soft = (soft / soft.sum(1, keepdims=True)).astype(np.float32)
    return LesionDataset(
        class_names=list(dataset.class_names), lesions=lesions, intensity_unit="normalized",
        window_level=float("nan"), window_width=float("nan"), input_size=size,
        created_by=created_by, description=description, extra=extra, soft_labels=soft)


def swap_images(networks, x_image: np.ndarray, y_images: np.ndarray) -> np.ndarray:
    """G_R(E_R(x), E_C(y_i)) for each y_i (Fig. 3): images [len(y), S, S, 1]."""
    x_image = np.asarray(x_image, np.float32).reshape((1,) + tuple(np.shape(x_image)[-3:]))
    _, r = encode(networks, x_image)
    c, _ = encode(networks, np.asarray(y_images, np.float32))
    return decode(networks, c, np.repeat(r, len(c), axis=0))


def code_effect(networks, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """How much G_R's image depends on the specified code c, against the
    unspecified code r: the number behind the swap grid (Fig. 3).

    Each lesion x is paired with a lesion y of another class; with
    base = G_R(E_C(x), E_R(x)),

    * ``c_swap``: mean |G_R(E_C(y), E_R(x)) − base|, what swapping c changes;
    * ``r_swap``: mean |G_R(E_C(x), E_R(y)) − base|, what swapping r changes;
    * ``pixels``: mean |y − x|, how far apart the images themselves are;

    all on the [0, 1] intensity scale; ``c_relative`` = c_swap / pixels and
    ``c_share`` = c_swap / (c_swap + r_swap). A decoder whose image hardly
    changes with c (c_relative below ``IGNORES_C``) draws the same image for
    every mixture of codes, so mixtures then differ from their source lesion
    by their soft target only: what the label-smoothing control tests. (A
    decoder that draws one blob whatever it is given can still have a high
    c_share: both swaps change next to nothing.)

    Raises:
        MixtureError: fewer than two classes among ``labels``, or images of
            another size than the networks take.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise MixtureError("the code effect needs lesions of at least two classes")
    rng = np.random.default_rng(seed)
    partner = np.array([rng.choice(np.flatnonzero(labels != label)) for label in labels])
    c, r = encode(networks, images)
    base = decode(networks, c, r)
    c_swap = float(np.abs(decode(networks, c[partner], r) - base).mean())
    r_swap = float(np.abs(decode(networks, c, r[partner]) - base).mean())
    share = c_swap / (c_swap + r_swap) if c_swap + r_swap > 0 else 0.0
    pixels = float(np.abs(images[partner] - images).mean())
    relative = c_swap / pixels if pixels > 0 else 0.0
    return {"n": int(len(images)), "c_swap": c_swap, "r_swap": r_swap, "pixels": pixels,
            "c_share": share, "c_relative": relative,
            "reading": code_effect_reading(relative, share)}


# Below this fraction of the lesions' own difference, a swap of c is taken to
# change nothing (our threshold).
IGNORES_C = 0.1


def code_effect_reading(relative: float, share: float) -> str:
    """One sentence on ``code_effect``'s ``c_relative`` and ``c_share``."""
    if relative < IGNORES_C:
        return (f"G_R draws nearly the same image whatever specified code it is given "
                f"(swapping E_C between lesions of different classes changes its image by "
                f"{_percent(relative)} of how much the lesions differ): mixtures of codes "
                "are near-copies of their source lesion, so the mixture arm tests soft "
                "targets, not mixed lesions")
    return (f"swapping E_C changes G_R's image by {_percent(relative)} of how much the "
            f"lesions differ ({_percent(share)} of the change that swapping either code "
            f"makes)")


def _percent(fraction: float) -> str:
    """A share in percent: whole from 1% up, below it to one significant
    digit (a decoder that ignores its code reads "0.03%", not "0%"), and
    "< 0.001%" below that."""
    percent = 100 * fraction
    if percent >= 1 or percent <= 0:
        return f"{percent:.0f}%"
    if percent < 0.001:
        return "< 0.001%"
    return f"{percent:.1g}%"


def write_swap_grid(networks, x_image: np.ndarray, y_images: np.ndarray,
                    path: str | os.PathLike, x_title: str = "x",
                    y_titles: Sequence[str] = ()) -> Path:
    """A Fig. 3 style PNG: top row the y_i, bottom row x and G_R(E_R(x), E_C(y_i));
    also G_R(E_R(x), E_C(x)), the plain reconstruction, for reference."""
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    from keras_lesions.io import save_figure

    y_images = np.asarray(y_images, np.float32)
    swapped = swap_images(networks, x_image, y_images)
    reconstruction = swap_images(networks, x_image, np.asarray(x_image)[None])[0]
    columns = len(y_images) + 1
    fig = Figure(figsize=(1.9 * columns, 4.0))
    axes = fig.subplots(2, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(np.asarray(x_image)[:, :, 0], cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"x: {x_title}", fontsize=7)
    axes[1, 0].imshow(reconstruction[:, :, 0], cmap="gray", vmin=0, vmax=1)
    axes[1, 0].set_title("G(E_R(x), E_C(x))", fontsize=7)
    for i, image in enumerate(y_images):
        title = y_titles[i] if i < len(y_titles) else f"y{i + 1}"
        axes[0, i + 1].imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, i + 1].set_title(f"y{i + 1}: {title}", fontsize=7)
        axes[1, i + 1].imshow(swapped[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[1, i + 1].set_title(f"G(E_R(x), E_C(y{i + 1}))", fontsize=7)
    fig.suptitle("Swapping specified factors (Ben-Cohen 2019, Fig. 3)", fontsize=8)
    save_figure(fig, path, dpi=100)
    return Path(path)


def run_dataset(networks, dataset_path: str | os.PathLike | None = None):
    """The dataset a disentanglement run was trained on (or the one given),
    checked against the run's input size and classes.

    Returns:
        (dataset, its path).

    Raises:
        MixtureError: another input size or other classes than the run's.
    """
    from keras_lesions.data.dataset import read_dataset

    path = Path(dataset_path or networks.info.get("dataset", ""))
    dataset = read_dataset(path)
    if dataset.input_size != networks.input_size:
        raise MixtureError(f"the dataset's ROIs are meant for {dataset.input_size}×"
                           f"{dataset.input_size} input but the run's networks take "
                           f"{networks.input_size}×{networks.input_size}", path)
    if list(dataset.class_names) != networks.class_names:
        raise MixtureError(f"has classes {list(dataset.class_names)}, the run "
                           f"{networks.class_names}", path)
    return dataset, path


def lesion_rows(dataset, lesion_ids: Sequence[str], where) -> list[int]:
    """Indices of lesions named by id, with one clear error for an unknown id."""
    from keras_lesions.errors import DatasetError

    ids = list(dataset.lesion_ids)
    rows = []
    for lesion_id in lesion_ids:
        if lesion_id not in ids:
            raise DatasetError(f"has no lesion {lesion_id!r} (ids look like {ids[0]!r}; "
                               "`kl data check` lists them)", where)
        rows.append(ids.index(lesion_id))
    return rows


def swap_from_run(run_dir: str | os.PathLike, x_id: str, y_ids: Sequence[str],
                  out: str | os.PathLike, dataset_path: str | os.PathLike | None = None) -> Path:
    """What ``kl swap`` runs: the Fig. 3 grid G_R(E_R(x), E_C(y_i)) of lesions
    named by id, from a finished disentanglement run."""
    from keras_lesions.pipeline import roi_inputs
    from keras_lesions.train.disentangle import load_disentangled

    networks = load_disentangled(run_dir)
    dataset, path = run_dataset(networks, dataset_path)
    rows = lesion_rows(dataset, (x_id,) + tuple(y_ids), path)
    images = roi_inputs(dataset, rows, networks.input_size)
    names = dataset.class_names
    return write_swap_grid(networks, images[0], images[1:], out,
                           f"{names[dataset.labels[rows[0]]]} {x_id}",
                           [f"{names[dataset.labels[r]]} {dataset.lesion_ids[r]}"
                            for r in rows[1:]])


def mix_from_run(run_dir: str | os.PathLike, count: int, alpha, seed: int,
                 out: str | os.PathLike, dataset_path: str | os.PathLike | None = None, *,
                 created_by: str = "", log=print) -> "LesionDataset":
    """What ``kl mix`` runs: ``count`` mixtures of the run's fit lesions only
    (never its test fold or validation patients), written to ``out``.

    Raises:
        MixtureError: a bad α or count (checked before anything is loaded),
            or a dataset that lacks the run's training lesions.
    """
    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.train.disentangle import load_disentangled

    alpha = parse_alpha(alpha)
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise MixtureError(f"--n must be at least 1, got {count}")
    networks = load_disentangled(run_dir)
    dataset, path = run_dataset(networks, dataset_path)
    ids = list(dataset.lesion_ids)
    missing = [i for i in networks.info["fit_ids"] if i not in ids]
    if missing:
        raise MixtureError(f"lacks the run's training lesion {missing[0]!r}: not the dataset "
                           "the run was trained on", path)
    fit = [ids.index(i) for i in networks.info["fit_ids"]]
    log(f"mixing {count} images from {len(fit)} training lesions of fold "
        f"{networks.info['fold']} (alpha {alpha})")
    mixed = mixture_dataset(networks, dataset, fit, count, alpha, seed, created_by=created_by)
    write_dataset(mixed, out)
    return mixed
