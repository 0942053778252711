"""``kl train-cnn``, ``train-gan``, ``train-acgan``, ``train-disentangle``: one training by hand.

Each trains the very run the experiment's plan would (same folder, same
settings), so a later ``kl experiment`` reuses it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from keras_lesions_cli.common import (
    RUN, SEED, ProgressBars, config_option, load, note, output_dir_option)

GAN_CONFIG = "configs/frid-adar-2018-gan-quick.yaml"
resume_option = click.option("--resume", is_flag=True,
                             help="Continue an interrupted training from its last epoch.")
restart_option = click.option("--restart", is_flag=True,
                              help="Discard an unfinished training (a damaged checkpoint) and "
                                   "train it from the start; finished runs are kept.")


def _one_of(resume: bool, restart: bool) -> None:
    if resume and restart:
        raise click.UsageError("--resume continues a training and --restart discards it: "
                               "pass one")


@click.command("train-cnn")
@config_option("configs/frid-adar-2018-quick.yaml")
@click.option("--fold", type=click.IntRange(min=0), required=True, help="Test fold.")
@click.option("--group", "group_index", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data group D_aug^i to train on (1 = the config's first group; in the "
                   "paper's list, the original ROIs only).")
@click.option("--extra", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="Extra training dataset (.h5), e.g. synthetic lesions; repeatable.")
@click.option("--seed", type=SEED, help="Overrides train.seed.")
@click.option("--epochs", type=click.IntRange(min=1), help="Overrides train.epochs.")
@click.option("--run-dir", type=RUN,
              help="Run folder (default: OUTPUT_DIR/NAME/runs/fold<k>/classifier/<group>/"
                   "seed<s>).")
@resume_option
@restart_option
@output_dir_option()
def train_cnn_command(config_path, fold, group_index, extra, seed, epochs, run_dir, resume,
                      restart, output_dir):
    """Train the lesion classifier on one fold and one data group.

    Checkpoints every epoch (RUN/checkpoint), logs to TensorBoard (RUN/tensorboard)
    and, when done, tests on the held-out fold (RUN/predictions.npz).
    """
    from keras_lesions.experiments.manual import train_cnn

    _one_of(resume, restart)
    config = load(config_path, {"train.epochs": epochs, "train.seed": seed,
                                "output_dir": output_dir})
    result = train_cnn(config, fold, group_index - 1, extra_datasets=tuple(extra),
                       run_dir=run_dir, resume=resume, restart=restart, log=note,
                       # Keras's progress bar is for a terminal, not for a log file
                       verbose="auto" if sys.stdout.isatty() else 0)
    if result["already_done"]:
        click.echo(f"{result['run_dir']} is already finished (test accuracy on fold {fold}: "
                   f"{100 * result['accuracy']:.1f}%); finished runs are never trained again")
    else:
        click.echo(f"test accuracy on fold {fold}: {100 * result['accuracy']:.1f}%   "
                   f"run: {result['run_dir']}")


@click.command("train-final")
@config_option("configs/frid-adar-2018-quick.yaml")
@resume_option
@restart_option
@click.option("--test-on", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An external test set (.h5) of other patients: the final model is tested "
                   "once on it (default: the config's data.test_dataset).")
@click.option("--synthetic", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True,
              help="gan-curve experiments: add DCGAN lesions (at the size chosen on validation) "
                   "only when the verdict says they help (auto), always, or never.")
@output_dir_option()
def train_final_command(config_path, resume, restart, test_on, synthetic, output_dir):
    """Train the final classifier of an experiment on every patient.

    Uses what `kl experiment` on the same config chose on its validation
    patients (the D_aug group chosen by most cells; for a gan-curve experiment
    whose verdict says DCGAN augmentation helps, also DCGANs trained on every
    patient and the synthetic size chosen by most cells) and writes the model, its
    model card (MODEL_CARD.md, model_card.json: data, training, the
    experiment's cross-validated figures, intended use and limits) into
    OUTPUT_DIR/NAME/final/classifier. That folder is what `kl predict` and
    `kl export` are meant for. With --test-on (or data.test_dataset), the
    final model is tested once on that dataset of other patients and the
    figures go beside the cross-validated ones (final/external/external.md
    and the model card).
    """
    from keras_lesions.experiments.final import train_final

    _one_of(resume, restart)
    config = load(config_path, {"output_dir": output_dir})
    bars = ProgressBars()
    try:
        result = train_final(config, log=note,
                             progress=lambda done, total: bars("final model", done, total),
                             resume=resume, restart=restart, test_on=test_on,
                             synthetic=synthetic)
    finally:
        bars.close()
    state = "is already trained" if result["already_done"] else "trained"
    click.echo(f"final model {state}: {result['run_dir']} ({result['group']}; D_aug chosen "
               f"{result['counts']}); model card: {result['card']}")
    click.echo(result["why"])
    if result["external"] is not None:
        pooled = result["external"]["pooled"]
        click.echo(f"external test: accuracy {100 * pooled['accuracy']:.1f}% over "
                   f"{pooled['n']} lesions (beside the cross-validated figures in "
                   f"{Path(result['run_dir']).parent / 'external' / 'external.md'})")


def _gan_options(command):
    for option in reversed([
            config_option(GAN_CONFIG, "Experiment config (YAML); its gan section sets the GAN."),
            click.option("--fold", type=click.IntRange(min=0), default=0, show_default=True,
                         help="Test fold: the GAN learns from the other folds only."),
            click.option("--all-folds", is_flag=True, help="Every fold of the config."),
            click.option("--epochs", type=click.IntRange(min=1),
                         help="Overrides gan.epochs (smoke runs)."),
            resume_option, restart_option]):
        command = option(command)
    return command


@click.command("train-gan")
@click.option("--class", "class_names", multiple=True,
              help="Lesion class to learn (repeatable), e.g. --class cyst.")
@click.option("--all-classes", is_flag=True, help="One DCGAN per class of the dataset.")
@_gan_options
def train_gan_command(class_names, all_classes, config_path, fold, all_folds, epochs, resume,
                      restart):
    """Train per-class DCGANs (Frid-Adar §3.2) on D_aug optimal of a fold.

    Checkpoints every epoch (--resume continues with the optimizers' state),
    logs TensorBoard scalars and writes a sample grid per epoch into the run
    folder OUTPUT_DIR/NAME/runs/fold<k>/gan/dcgan-<class>/base-<group>/seed<s>/.
    """
    from keras_lesions.experiments.gan_curve import ALL_CLASSES
    from keras_lesions.experiments.manual import train_gans

    _one_of(resume, restart)
    if not class_names and not all_classes:
        raise click.UsageError("name a class with --class (e.g. --class cyst) or pass "
                               "--all-classes")
    config = load(config_path, {"gan.epochs": epochs})
    runs = train_gans(config, None if all_folds else [fold],
                      ALL_CLASSES if all_classes else list(class_names), resume=resume,
                      restart=restart, log=note, progress=ProgressBars("epoch"))
    for run in runs:
        click.echo(str(run))


@click.command("train-acgan")
@_gan_options
def train_acgan_command(config_path, fold, all_folds, epochs, resume, restart):
    """Train the class-conditional ACGAN (Frid-Adar §3.3) on D_aug optimal of a fold.

    One generator for all classes; the discriminator has a real/fake head and an
    auxiliary class head (see `kl evaluate-acgan`).
    """
    from keras_lesions.experiments.manual import train_gans

    _one_of(resume, restart)
    config = load(config_path, {"gan.epochs": epochs})
    for run in train_gans(config, None if all_folds else [fold], (), acgan=True, resume=resume,
                          restart=restart, log=note, progress=ProgressBars("epoch")):
        click.echo(str(run))


@click.command("train-disentangle")
@config_option("configs/ben-cohen-2019-quick.yaml",
               "Experiment config (YAML) with a disentangle section.")
@click.option("--fold", type=click.IntRange(min=0), default=0, show_default=True,
              help="Test fold: training uses the other folds only.")
@click.option("--run-dir", type=RUN,
              help="Run folder (default: OUTPUT_DIR/NAME/runs/fold<k>/disentangle/seed<s>).")
@resume_option
@restart_option
@click.option("--epochs", type=click.IntRange(min=1), help="Overrides disentangle.epochs.")
@output_dir_option()
def train_disentangle_command(config_path, fold, run_dir, resume, restart, epochs, output_dir):
    """Two-step disentanglement on one fold's training data (Ben-Cohen §2.1).

    Step 1 trains the encoder E_C with the classifier (cross-entropy); step 2
    keeps E_C fixed and trains E_R and the decoder G_R to rebuild the image from
    (E_C(x), E_R(x)) while an adversarial classifier, trained alongside, is
    made to fail on E_R(x). disentangle.validation_fraction of the training
    folds' patients (30% in the paper) are held out for validation; every case
    is shown disentangle.repeats times an epoch (10 in the paper), online
    augmented.
    Checkpoints every epoch (--resume), logs to TensorBoard (RUN/tensorboard,
    RUN/step1/tensorboard).
    """
    from keras_lesions.experiments.manual import disentangle_fold

    _one_of(resume, restart)
    config = load(config_path, {"disentangle.epochs": epochs, "output_dir": output_dir})
    bars = ProgressBars("epoch")
    try:
        result = disentangle_fold(config, fold, run_dir=run_dir, resume=resume, restart=restart,
                                  log=note, progress=bars)
    finally:
        bars.close()
    if result["already_done"]:
        click.echo(f"{result['run_dir']} is already finished; finished runs are never trained "
                   "again")
        return
    metrics = result["metrics"]
    click.echo(f"step 1 classifier (the baseline): test accuracy on fold {fold} "
               f"{100 * result['baseline_accuracy']:.1f}%")
    if metrics:
        click.echo(f"step 2: reconstruction MSE {metrics['val_rec_loss']:.4f} (validation), "
                   f"adversary accuracy on E_R(x) {100 * metrics['adv_accuracy']:.1f}% "
                   f"(train), {100 * metrics['val_adv_accuracy']:.1f}% (validation)")
    click.echo(f"run: {result['run_dir']}")


COMMANDS = [train_cnn_command, train_gan_command, train_acgan_command, train_disentangle_command,
            train_final_command]
