"""The ``kl`` command: entry point and top-level commands."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions import __version__
from keras_lesions.runtime import quiet_tensorflow_startup, raise_on_sigterm
from keras_lesions_cli import experiment, models, reader_study, synth, train
from keras_lesions_cli.common import SEED, KLGroup, ProgressBars, command_line, note
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
for family in (experiment, train, synth, models, reader_study):
    for command in family.COMMANDS:
        cli.add_command(command)


@cli.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("kl-demo"), show_default=True, help="Folder for everything it makes.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Phantom and fold seed (same seed, same dataset and split).")
@click.option("--config", "config_path", default="configs/frid-adar-2018-gan-quick.yaml",
              show_default=True, help="Experiment config (the quick CPU one by default).")
@click.option("--mixture-config", "mixture_config_path",
              default="configs/ben-cohen-2019-quick.yaml", show_default=True,
              help="Config of the Ben-Cohen 2019 part.")
@click.option("--skip-mixture", is_flag=True, help="Leave out the Ben-Cohen 2019 part.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Run up to N independent runs at once, in N worker processes.")
def demo_command(out_dir, seed, config_path, mixture_config_path, skip_mixture, jobs):
    """Run the main job on the built-in phantoms.

    Generates the Frid-Adar 2018 phantom dataset (182 lesions) with its 3-fold
    patient-level split, checks it and writes its preview grid, then runs the
    CNN-AUG baseline (classic augmentation, 3-fold cross-validation) and
    CNN-AUG-GAN (small per-class DCGANs) with the quick CPU config, and prints
    the accuracy tables side by side. Then Ben-Cohen 2019 on the 4-class
    128×128 phantoms (239 lesions): small disentanglement networks per fold,
    the baseline classifier vs the one trained with mixtures of specified
    factors (Tables 2 and 3), and the swap grid. Re-running resumes: finished
    trainings are not repeated.
    """
    from keras_lesions.demo import run_demo
    from keras_lesions.evaluate.report import side_by_side, text_table
    from keras_lesions.experiments.executors import ProcessExecutor
    from keras_lesions.experiments.mixture import summary as mixture_summary

    bars = ProgressBars()
    try:
        result = run_demo(out_dir, seed, config_path,
                          None if skip_mixture else mixture_config_path,
                          created_by=command_line(), log=note, progress=bars,
                          executor=ProcessExecutor(jobs=jobs) if jobs and jobs > 1 else None)
    finally:
        bars.close()
    click.echo(result.check.format(result.class_names))
    click.echo("\nCNN-AUG test accuracy by augmentation group (95% CI, patient bootstrap):")
    for point in result.curve["curve"]:
        low, high = point["ci95"]
        click.echo(f"  {point['group']:<8} +{point['added_samples']:<6} "
                   f"{100 * point['accuracy']:.1f}%  [{100 * low:.1f}, {100 * high:.1f}]")
    click.echo(f"\nD_aug optimal, chosen per fold on its {result.curve['selected_on']} "
               f"predictions: {result.curve['optimal_counts']}")
    if result.gan is not None:
        click.echo("\nCNN-AUG vs CNN-AUG-GAN (each fold's D_aug optimal, + its chosen number "
                   "of DCGAN lesions per class):")
        click.echo(side_by_side(result.gan["baseline_summary"], result.gan["best_summary"]))
        click.echo(f"\n{result.gan['verdict']}")
        for key, comparison in result.gan["comparisons"].items():
            if key != "DCGAN":
                click.echo(f"- {comparison['verdict']}")
    else:
        click.echo(text_table(result.curve["optimal_summary"]))
    click.echo(f"\ndataset: {result.dataset_path}\npreview: {result.preview_path}\n"
               f"report:  {result.report_dir}")
    if result.mixture is not None:
        click.echo("\nBen-Cohen 2019, baseline vs mixtures of specified factors "
                   "(4 classes, 3-fold cross-validation):")
        click.echo(mixture_summary(result.mixture))
        click.echo(f"swap grid: {Path(result.mixture['report']).parent / 'swap.png'}")


def main():
    """The ``kl`` entry point. Before anything imports TensorFlow: its start-up
    chatter is not for the user of a command line (a bad input gives one
    line), and SIGTERM undoes a write in progress as Ctrl-C does. (Set here,
    not on import, so that importing the CLI changes no process state.)"""
    quiet_tensorflow_startup()
    raise_on_sigterm()
    cli(prog_name="kl")


if __name__ == "__main__":
    main()
