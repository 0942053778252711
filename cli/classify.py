"""``kl augment``, ``train-cnn``, ``evaluate``, ``experiment``, ``export``, ``models``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from keras_lesions_cli.common import ProgressBars, note

CONFIG = click.Path(dir_okay=False, path_type=Path)


def _load(config_path, overrides):
    from keras_lesions.config import load_config

    return load_config(config_path, {k: v for k, v in overrides.items() if v is not None})


def _config_option(default="configs/frid-adar-2018-quick.yaml"):
    return click.option("--config", "config_path", type=CONFIG, default=default, show_default=True,
                        help="Experiment config (YAML).")


@click.command("augment")
@_config_option()
@click.option("--fold", type=click.IntRange(min=0), multiple=True,
              help="Test fold whose training folds are augmented (repeatable; default: the "
                   "config's folds).")
@click.option("--output-dir", help="Overrides the config's output_dir.")
def augment_command(config_path, fold, output_dir):
    """Build the offline classic-augmentation groups D_aug^1..D_aug^9.

    For each test fold, the training folds' lesions are rotated, flipped,
    translated and re-cropped at other scales (Frid-Adar §3.1), and the nested
    groups are stored once (HDF5) for every run to reuse.
    """
    from keras_lesions.evaluate.crossval import augmentation_groups_path, open_experiment
    from keras_lesions.data.folds import train_test_indices

    config = _load(config_path, {"output_dir": output_dir})
    dataset_path, dataset = open_experiment(config, log=note)
    for f in fold or config.evaluate.folds:
        train_test_indices(dataset.folds, f, where=dataset_path)  # refuses a fold out of range
        path = augmentation_groups_path(config, dataset, f, log=note,
                                        progress=ProgressBars("image"))
        click.echo(f"fold {f}: {path}")


@click.command("train-cnn")
@_config_option()
@click.option("--fold", type=click.IntRange(min=0), required=True, help="Test fold.")
@click.option("--group", "group_index", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data group D_aug^i to train on (1 = the config's first group; in the "
                   "paper's list, the original ROIs only).")
@click.option("--extra", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="Extra training dataset (.h5), e.g. synthetic lesions; repeatable.")
@click.option("--seed", type=int, help="Overrides train.seed.")
@click.option("--epochs", type=click.IntRange(min=1), help="Overrides train.epochs.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: OUTPUT_DIR/NAME/runs/D_aug<i>/fold<k>/seed<s>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch.")
@click.option("--output-dir", help="Overrides the config's output_dir.")
def train_cnn_command(config_path, fold, group_index, extra, seed, epochs, run_dir, resume,
                      output_dir):
    """Train the lesion classifier on one fold and one data group.

    Checkpoints every epoch (RUN/backup), logs to TensorBoard (RUN/tensorboard)
    and, when done, tests on the held-out fold (RUN/predictions.npz).
    """
    from keras_lesions.data.folds import train_test_indices
    from keras_lesions.evaluate.crossval import default_run_dir, open_experiment, run_fold
    from keras_lesions.train.classifier import is_done

    config = _load(config_path, {"train.epochs": epochs, "train.seed": seed,
                                 "output_dir": output_dir})
    seed = config.train.seed
    dataset_path, dataset = open_experiment(config, log=note)
    train_test_indices(dataset.folds, fold, where=dataset_path)  # refuses a fold out of range
    run_dir = run_dir or default_run_dir(config, fold, group_index - 1, seed, extra)
    if is_done(run_dir):
        done = json.loads((run_dir / "done.json").read_text())
        click.echo(f"{run_dir} is already finished (test accuracy on fold {done['fold']}: "
                   f"{100 * done['test_accuracy']:.1f}%); finished runs are never trained again")
        return
    result = run_fold(config, dataset, dataset_path, fold, group_index - 1, seed, run_dir,
                      extra_datasets=tuple(extra), resume=resume, log=note, verbose="auto")
    click.echo(f"test accuracy on fold {fold}: {100 * result['accuracy']:.1f}%   run: {run_dir}")


@click.command("evaluate")
@click.argument("runs", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: RUNS/report).")
def evaluate_command(runs, out):
    """Cross-validated metrics of the finished runs under RUNS.

    Groups the runs by data group; for each, sums the confusion matrices over
    test folds and reports total accuracy, per-class sensitivity/specificity
    and their weighted averages, per-fold accuracy (mean ± std) and 95% CIs over
    seeds, as JSON, Markdown and PNG.
    """
    from keras_lesions.evaluate.crossval import evaluate_runs
    from keras_lesions.evaluate.report import text_table

    results = evaluate_runs(runs, out)
    for group, summary in results.items():
        click.echo(f"\n{group}")
        click.echo(text_table(summary))
    click.echo(f"\nreport: {out or runs / 'report'}")


@click.command("experiment")
@click.argument("config_path", metavar="CONFIG", type=CONFIG)
@click.option("--output-dir", help="Overrides the config's output_dir.")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Overrides train.epochs (mixture: disentangle.classifier_epochs and "
                   "disentangle.epochs), for smoke runs.")
def experiment_command(config_path, output_dir, epochs):
    """Run a whole experiment from its config; resumes where it stopped.

    classic-curve: trains the classifier on every data group, fold and seed,
    writes accuracy vs added samples (CSV + PNG), per-group tables and the
    chosen D_aug^optimal (report/optimal.json). gan-curve: that, then per-class
    DCGANs and an ACGAN per fold, the classifier on D_aug optimal plus growing
    synthetic (and extra real) sets, Tables 3, 5, 7 and generator quality
    (report/gan_report.md). mixture: Ben-Cohen 2019's baseline vs proposed
    classifier per fold, with disentanglement and mixtures of specified
    factors in between (report/mixture_report.md, Tables 2 and 3). Finished
    runs are never trained again.
    """
    from keras_lesions.evaluate.crossval import experiment_dir, run_classic_curve
    from keras_lesions.evaluate.report import text_table

    config = _load(config_path, {"output_dir": output_dir})
    if epochs is not None:  # the epochs of whatever this kind of experiment trains
        keys = (["disentangle.classifier_epochs", "disentangle.epochs"]
                if config.kind == "mixture" else ["train.epochs"])
        config = _load(config_path, {"output_dir": output_dir, **{k: epochs for k in keys}})
    report = experiment_dir(config) / "report"
    if config.kind == "mixture":
        from keras_lesions.evaluate.mixture_experiment import run_mixture_experiment

        bars = ProgressBars("epoch")
        try:
            result = run_mixture_experiment(config, log=note, progress=bars)
        finally:
            bars.close()
        click.echo("\n" + mixture_summary(result))
        click.echo(f"\nreport: {result['report']}")
        return
    if config.kind == "gan-curve":
        from keras_lesions.evaluate.gan_experiment import run_gan_curve

        result = run_gan_curve(config, log=note, progress=ProgressBars())
        click.echo(f"\n{result['verdict']}\n")
        click.echo(f"CNN-AUG ({result['base_group']}):")
        click.echo(text_table(result["baseline_summary"]))
        click.echo(f"\nCNN-AUG-GAN (+{result['best_synthetic_per_class']} synthetic per class):")
        click.echo(text_table(result["best_summary"]))
        click.echo(f"\nreport: {report}/gan_report.md")
        return
    result = run_classic_curve(config, log=note, progress=ProgressBars(), verbose=0)
    click.echo("\nadded samples  accuracy")
    for point in result["curve"]:
        click.echo(f"{point['added_samples']:>13}  {100 * point['accuracy']:.1f}% "
                   f"(folds {100 * point['fold_mean']:.1f} ± {100 * point['fold_std']:.1f})")
    click.echo(f"\nD_aug optimal: {result['optimal_group']} "
               f"(+{result['optimal_added_samples']} samples)\n")
    click.echo(text_table(result["optimal_summary"]))
    click.echo(f"\nreport: {report}")


def mixture_summary(result: dict) -> str:
    """Table 2 and the verdict of a mixture experiment, for a terminal."""
    from keras_lesions.evaluate.report import side_by_side

    lines = ["fold  baseline  proposed  difference"]
    for row in result["table2"]:
        lines.append(f"{row['fold']:>4}  {100 * row['baseline']:>7.1f}%  "
                     f"{100 * row['proposed']:>7.1f}%  {100 * row['difference']:>+9.1f}")
    b, p = result["baseline"]["accuracy"], result["proposed"]["accuracy"]
    lines.append(f"avg.  {100 * b['mean']:.1f} ± {100 * b['std']:.1f}  "
                 f"{100 * p['mean']:.1f} ± {100 * p['std']:.1f}")
    lines += ["", side_by_side(result["baseline"], result["proposed"],
                               titles=("baseline", "proposed")),
              "", result["verdict"]]
    return "\n".join(lines)


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="saved_models/NAME/VERSION (VERSION an integer, as TF Serving wants).")
def export_command(run, out):
    """Export a trained run as a TF Serving SavedModel.

    Classifier: serving_default takes roi float32 [N, S, S, 1] in [0, 1] (S = the
    run's input size, 64 in the paper) and returns probabilities [N, classes]
    and class_name [N]. DCGAN/ACGAN generator: takes z float32 [N, latent_dim]
    (and class_id int32 [N] for ACGAN) and returns images [N, 64, 64, 1] in [0, 1].
    Disentanglement run: E_C, E_R and G_R in one SavedModel; serving_default
    (= encode) takes image [N, S, S, 1] and returns c and r; decode takes c
    and r and returns image; classify returns E_C + classifier probabilities.
    """
    from keras_lesions.export import export_run

    path = export_run(run, out)
    click.echo(f"exported {run} -> {path} (check it: saved_model_cli show --dir {path} --all)")


@click.command("models")
def models_command():
    """List every architecture the project defines, at paper size."""
    from keras_lesions.models.catalog import paper_models

    click.echo(f"{'model':<34} {'input':<22} {'output':<20} {'parameters':>12}")
    for entry in paper_models():
        click.echo(f"{entry['name']:<34} {entry['input']:<22} {entry['output']:<20} "
                   f"{entry['parameters']:>12,}")


COMMANDS = [augment_command, train_cnn_command, evaluate_command, experiment_command,
            export_command, models_command]
