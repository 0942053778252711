"""``kl train-gan``, ``train-acgan``, ``synthesize``, ``evaluate-acgan``."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions_cli.common import ProgressBars, note

CONFIG = click.Path(dir_okay=False, path_type=Path)


def _config(config_path, overrides):
    from keras_lesions.config import load_config

    return load_config(config_path, {k: v for k, v in overrides.items() if v is not None})


def _folds(config, fold, all_folds):
    return list(config.evaluate.folds) if all_folds else [fold]


config_option = click.option("--config", "config_path", type=CONFIG,
                             default="configs/frid-adar-2018-gan-quick.yaml", show_default=True,
                             help="Experiment config (YAML); its gan section sets the GAN.")
fold_option = click.option("--fold", type=click.IntRange(min=0), default=0, show_default=True,
                           help="Test fold: the GAN learns from the other folds only.")
all_folds_option = click.option("--all-folds", is_flag=True, help="Every fold of the config.")
epochs_option = click.option("--epochs", type=click.IntRange(min=1),
                             help="Overrides gan.epochs (smoke runs).")
resume_option = click.option("--resume", is_flag=True,
                             help="Continue an interrupted training from its last epoch.")


@click.command("train-gan")
@config_option
@click.option("--class", "class_names", multiple=True,
              help="Lesion class to learn (repeatable), e.g. --class cyst.")
@click.option("--all-classes", is_flag=True, help="One DCGAN per class of the dataset.")
@fold_option
@all_folds_option
@epochs_option
@resume_option
def train_gan_command(config_path, class_names, all_classes, fold, all_folds, epochs, resume):
    """Train per-class DCGANs (Frid-Adar §3.2) on D_aug optimal of a fold.

    Checkpoints every epoch (--resume continues with the optimizers' state),
    logs TensorBoard scalars and writes a sample grid per epoch into the run
    folder OUTPUT_DIR/NAME/gan/dcgan-<class>/fold<k>/.
    """
    from keras_lesions.evaluate.gan_experiment import train_fold_gans

    if not class_names and not all_classes:
        raise click.UsageError("name a class with --class (e.g. --class cyst) or pass "
                               "--all-classes")
    config = _config(config_path, {"gan.epochs": epochs})
    if all_classes:
        from keras_lesions.evaluate.crossval import open_experiment

        class_names = open_experiment(config, note)[1].class_names
    for f in _folds(config, fold, all_folds):
        runs = train_fold_gans(config, f, list(class_names), acgan=False, resume=resume,
                               log=note, progress=ProgressBars("epoch"))
        for run in runs["dcgan"]:
            click.echo(f"fold {f}: {run}")


@click.command("train-acgan")
@config_option
@fold_option
@all_folds_option
@epochs_option
@resume_option
def train_acgan_command(config_path, fold, all_folds, epochs, resume):
    """Train the class-conditional ACGAN (Frid-Adar §3.3) on D_aug optimal of a fold.

    One generator for all classes; the discriminator has a real/fake head and an
    auxiliary class head (see `kl evaluate-acgan`).
    """
    from keras_lesions.evaluate.gan_experiment import train_fold_gans

    config = _config(config_path, {"gan.epochs": epochs})
    for f in _folds(config, fold, all_folds):
        runs = train_fold_gans(config, f, [], acgan=True, resume=resume, log=note,
                               progress=ProgressBars("epoch"))
        click.echo(f"fold {f}: {runs['acgan'][0]}")


@click.command("synthesize")
@click.option("--generator", "generators", type=click.Path(path_type=Path), multiple=True,
              required=True, help="A trained DCGAN or ACGAN run folder (repeatable).")
@click.option("--n", type=int, required=True,
              help="Lesions per DCGAN, or per class for an ACGAN.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Dataset file (.h5) to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same lesions.")
def synthesize_command(generators, n, out, seed):
    """Write synthetic lesions as a dataset (.h5) that `kl train-cnn --extra` takes.

    Every lesion is marked synthetic, with its generator's provenance; patient
    ids are the generator's, so they never collide with real patients.
    """
    from keras_lesions.data.dataset import write_dataset
    from keras_lesions.errors import KerasLesionsError
    from keras_lesions.synth import synthesize_dataset
    from keras_lesions.synth.sample import generator_class_names

    if n <= 0:
        raise KerasLesionsError(f"--n must be a positive number of lesions, got {n}")
    dataset = synthesize_dataset(list(generators), n, seed, generator_class_names(generators))
    write_dataset(dataset, out)
    counts = ", ".join(f"{k} {name}" for name, k in dataset.class_counts().items())
    click.echo(f"wrote {out}: {len(dataset)} synthetic lesions ({counts})")


@click.command("evaluate-acgan")
@config_option
@click.option("--fold", type=click.IntRange(min=0), multiple=True,
              help="Folds (default: the config's).")
def evaluate_acgan_command(config_path, fold):
    """The ACGAN discriminator used directly as the classifier (Table 5, last row).

    Each fold's trained ACGAN classifies that fold's test lesions with its
    auxiliary class head; the cross-validated table is printed and written to
    OUTPUT_DIR/NAME/report/ACGAN_discriminator.*.
    """
    from keras_lesions.evaluate.gan_experiment import evaluate_acgan_discriminators
    from keras_lesions.evaluate.report import text_table

    config = _config(config_path, {})
    summary = evaluate_acgan_discriminators(config, list(fold) or None, log=note)
    click.echo(text_table(summary))


COMMANDS = [train_gan_command, train_acgan_command, synthesize_command, evaluate_acgan_command]
