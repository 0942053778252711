"""The ``kl`` command: entry point and top-level commands."""
from __future__ import annotations

import os
from pathlib import Path

# TensorFlow's C++ start-up chatter (CPU feature notes, absl warnings) is not
# for the user of a command line; real errors still surface as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click

from keras_lesions import __version__
from keras_lesions_cli.common import KLGroup, ProgressBars, command_line, note, progress_bar
from keras_lesions_cli.classify import COMMANDS
from keras_lesions_cli.data import data_group


@click.group(cls=KLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keras-lesions")
def cli():
    """keras-lesions: liver-lesion CT classification with synthetic augmentation.

    Reproduces Frid-Adar et al. 2018 (GAN augmentation) and Ben-Cohen et al.
    2019 (disentangled mixtures) in TensorFlow 2 / Keras 3. Runs without
    clinical data on the built-in CT phantoms (`kl data phantoms`), or on your
    own lesions (`kl data import`).

    Start with `kl demo`.
    """


cli.add_command(data_group)
for command in COMMANDS:
    cli.add_command(command)


@cli.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("kl-demo"), show_default=True, help="Folder for everything it makes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config_path", default="configs/frid-adar-2018-quick.yaml",
              show_default=True, help="Classifier config (the quick CPU one by default).")
def demo_command(out_dir, seed, config_path):
    """Run the main job on the built-in phantoms.

    Generates the Frid-Adar 2018 phantom dataset (182 lesions) with its 3-fold
    patient-level split, checks it and writes its preview grid, then runs the
    CNN-AUG baseline (classic augmentation, 3-fold cross-validation) with the
    quick CPU config and prints the accuracy table. Re-running resumes: finished
    trainings are not repeated.
    """
    from keras_lesions.config import load_config
    from keras_lesions.data import PRESETS, read_dataset, write_dataset
    from keras_lesions.data.check import check_dataset
    from keras_lesions.data.folds import make_patient_folds
    from keras_lesions.data.phantoms import generate_phantoms
    from keras_lesions.data.preview import write_preview
    from keras_lesions.evaluate.crossval import run_classic_curve
    from keras_lesions.evaluate.report import text_table

    config = load_config(config_path, {"data.dataset": str(out_dir / "phantoms.h5"),
                                       "output_dir": str(out_dir), "name": "cnn-aug"})
    preset = PRESETS["frid-adar-2018"]
    dataset_path = out_dir / "phantoms.h5"
    if dataset_path.exists():
        note(f"[1/4] using the phantom dataset already in {dataset_path}")
        dataset = read_dataset(dataset_path)
    else:
        note(f"[1/4] generating the {preset.name} phantom dataset ({preset.n_lesions} lesions)")
        bar, progress = progress_bar(preset.n_lesions, "phantoms")
        with bar:
            dataset = generate_phantoms(preset=preset.name, seed=seed, progress=progress)
        dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids,
                                           k=preset.k_folds, seed=seed,
                                           class_names=dataset.class_names)
        dataset.fold_k, dataset.fold_seed = preset.k_folds, seed
        dataset.created_by = command_line()
        write_dataset(dataset, dataset_path)
    note(f"[2/4] checking {dataset_path}")
    report = check_dataset(dataset, k_expected=preset.k_folds)
    click.echo(report.format(dataset.class_names))
    if report.errors:
        raise SystemExit(1)
    note("[3/4] writing the preview grid")
    preview_path = out_dir / "preview.png"
    write_preview(dataset, preview_path, seed=seed)
    note(f"[4/4] CNN-AUG: classic augmentation + 3-fold patient-level cross-validation "
         f"({config_path}: {config.train.epochs} epochs, groups +{config.augment.group_sizes})")
    result = run_classic_curve(config, log=note, progress=ProgressBars(), verbose=0)
    report_dir = out_dir / config.name / "report"
    click.echo("\nCNN-AUG accuracy by augmentation group (3-fold cross-validation):")
    for point in result["curve"]:
        click.echo(f"  {point['group']:<8} +{point['added_samples']:<6} "
                   f"{100 * point['accuracy']:.1f}%  (folds {100 * point['fold_mean']:.1f} "
                   f"± {100 * point['fold_std']:.1f})")
    click.echo(f"\nCNN-AUG at {result['optimal_group']} (+{result['optimal_added_samples']} "
               "augmented samples per fold):")
    click.echo(text_table(result["optimal_summary"]))
    click.echo(f"\ndataset: {dataset_path}\npreview: {preview_path}\nreport:  {report_dir}")


def main():
    cli(prog_name="kl")


if __name__ == "__main__":
    main()
