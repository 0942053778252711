"""``kl train-disentangle``, ``swap``, ``mix`` (Ben-Cohen et al. 2019)."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions_cli.classify import CONFIG, _load
from keras_lesions_cli.common import ProgressBars, command_line, note

DEFAULT_CONFIG = "configs/ben-cohen-2019-quick.yaml"
RUN = click.Path(file_okay=False, path_type=Path)


@click.command("train-disentangle")
@click.option("--config", "config_path", type=CONFIG, default=DEFAULT_CONFIG, show_default=True,
              help="Experiment config (YAML) with a disentangle section.")
@click.option("--fold", type=click.IntRange(min=0), default=0, show_default=True,
              help="Test fold: training uses the other folds only.")
@click.option("--run-dir", type=RUN,
              help="Run folder (default: OUTPUT_DIR/NAME/runs/disentangle/fold<k>/seed<s>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch.")
@click.option("--epochs", type=click.IntRange(min=1), help="Overrides disentangle.epochs.")
@click.option("--output-dir", help="Overrides the config's output_dir.")
def train_disentangle_command(config_path, fold, run_dir, resume, epochs, output_dir):
    """Two-step disentanglement on one fold's training data (Ben-Cohen §2.1).

    Step 1 trains the encoder E_C with the classifier (cross-entropy); step 2
    freezes E_C and trains E_R and the decoder G_R to rebuild the image from
    (E_C(x), E_R(x)) while an adversarial classifier, trained alongside, is
    made to fail on E_R(x). disentangle.validation_fraction of the training
    folds' patients (30% in the paper) are held out for validation; every case
    is shown disentangle.repeats times an epoch (10 in the paper), online
    augmented.
    Checkpoints every epoch (--resume), logs to TensorBoard (RUN/tensorboard,
    RUN/step1/tensorboard).
    """
    from keras_lesions.data.folds import train_test_indices
    from keras_lesions.evaluate.crossval import experiment_dir, open_experiment
    from keras_lesions.train.classifier import is_done
    from keras_lesions.train.disentangle import train_disentangle

    config = _load(config_path, {"disentangle.epochs": epochs, "output_dir": output_dir})
    dataset_path, dataset = open_experiment(config, log=note)
    train_test_indices(dataset.folds, fold, where=dataset_path)  # refuses a fold out of range
    seed = config.disentangle.seed
    run_dir = run_dir or experiment_dir(config) / "runs" / "disentangle" / f"fold{fold}" / \
        f"seed{seed}"
    if is_done(run_dir):
        click.echo(f"{run_dir} is already finished; finished runs are never trained again")
        return
    bars = ProgressBars("epoch")
    try:
        result = train_disentangle(dataset, dataset_path, fold, config, run_dir, resume=resume,
                                   log=note, progress=bars)
    finally:
        bars.close()
    metrics = result["metrics"]
    click.echo(f"step 1 classifier (the baseline): test accuracy on fold {fold} "
               f"{100 * result['baseline_accuracy']:.1f}%")
    if metrics:
        click.echo(f"step 2: reconstruction MSE {metrics['val_rec_loss']:.4f} (validation), "
                   f"adversary accuracy on E_R(x) {100 * metrics['adv_accuracy']:.1f}% "
                   f"(train), {100 * metrics['val_adv_accuracy']:.1f}% (validation)")
    click.echo(f"run: {run_dir}")


def _lesion_images(networks, dataset, lesion_ids, where):
    """Network input for lesions named by id, with one clear error for an unknown id."""
    from keras_lesions.data.pipeline import roi_inputs
    from keras_lesions.errors import DatasetError

    ids = list(dataset.lesion_ids)
    rows = []
    for lesion_id in lesion_ids:
        if lesion_id not in ids:
            raise DatasetError(f"has no lesion {lesion_id!r} (ids look like {ids[0]!r}; "
                               "`kl data check` lists them)", where)
        rows.append(ids.index(lesion_id))
    return roi_inputs(dataset, rows, networks.input_size), rows


def _run_dataset(networks, dataset_path):
    from keras_lesions.data.dataset import read_dataset
    from keras_lesions.synth.mixture import MixtureError

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


@click.command("swap")
@click.option("--run", "run_dir", type=RUN, required=True, help="A finished disentanglement run.")
@click.option("--x", "x_id", required=True, help="Lesion id whose unspecified code r is kept.")
@click.option("--y", "y_ids", required=True, multiple=True,
              help="Lesion id whose specified code c is used (repeatable).")
@click.option("--dataset", "dataset_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Dataset holding the lesions (default: the run's).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG to write.")
def swap_command(run_dir, x_id, y_ids, dataset_path, out):
    """Render G_R(E_R(x), E_C(y_i)) beside the inputs (Fig. 3)."""
    from keras_lesions.synth.mixture import write_swap_grid
    from keras_lesions.train.disentangle import load_disentangled

    networks = load_disentangled(run_dir)
    dataset, path = _run_dataset(networks, dataset_path)
    images, rows = _lesion_images(networks, dataset, (x_id,) + tuple(y_ids), path)
    names = dataset.class_names
    write_swap_grid(networks, images[0], images[1:], out,
                    f"{names[dataset.labels[rows[0]]]} {x_id}",
                    [f"{names[dataset.labels[r]]} {dataset.lesion_ids[r]}" for r in rows[1:]])
    click.echo(f"wrote {out}")


@click.command("mix")
@click.option("--run", "run_dir", type=RUN, required=True, help="A finished disentanglement run.")
@click.option("--alpha", default="random", show_default=True,
              help="'random' (proportions uniform on the simplex) or the share in (0, 1] the "
                   "image keeps of its own c.")
@click.option("--n", "count", type=int, required=True, help="Number of mixed images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Proportions and order.")
@click.option("--dataset", "dataset_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Dataset the run was trained on (default: the one its run.json names).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Lesion dataset (.h5) to write, with soft labels.")
def mix_command(run_dir, alpha, count, seed, dataset_path, out):
    """Mixtures of specified factors of the run's training lesions (§2.2, Fig. 4).

    Each mixed image keeps one training lesion's r and mixes its c with the
    nearest (L2) training c of every other class; its soft label holds the
    class proportions. Only the run's fit lesions are used (never its test
    fold or validation patients), so the result may augment that fold's
    training: `kl train-cnn --extra OUT` trains on the soft labels.
    """
    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.synth.mixture import MixtureError, mixture_dataset, parse_alpha
    from keras_lesions.train.disentangle import load_disentangled

    alpha = parse_alpha(alpha)  # before loading anything: a bad --alpha fails fast
    if count < 1:
        raise MixtureError(f"--n must be at least 1, got {count}")
    networks = load_disentangled(run_dir)
    dataset, path = _run_dataset(networks, dataset_path)
    ids = list(dataset.lesion_ids)
    missing = [i for i in networks.info["fit_ids"] if i not in ids]
    if missing:
        raise MixtureError(f"lacks the run's training lesion {missing[0]!r}: not the dataset "
                           "the run was trained on", path)
    fit = [ids.index(i) for i in networks.info["fit_ids"]]
    note(f"mixing {count} images from {len(fit)} training lesions of fold "
         f"{networks.info['fold']} (alpha {alpha})")
    mixed = mixture_dataset(networks, dataset, fit, count, alpha, seed,
                            created_by=command_line())
    write_dataset(mixed, out)
    shares = mixed.soft_labels.mean(0)
    click.echo(f"wrote {len(mixed)} mixed images with soft labels to {out} (mean class shares: "
               + ", ".join(f"{n} {100 * s:.0f}%" for n, s in zip(mixed.class_names, shares))
               + ")")


COMMANDS = [train_disentangle_command, swap_command, mix_command]
