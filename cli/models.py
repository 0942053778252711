"""``kl export``, ``kl models``: trained networks out, architectures listed."""
from __future__ import annotations

from pathlib import Path

import click


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
    from keras_lesions.models.catalog import paper_models, parameter_table

    click.echo(parameter_table(paper_models()))


COMMANDS = [export_command, models_command]
