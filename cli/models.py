"""``kl export``, ``kl predict``, ``kl models``: trained networks out and
applied to new lesions, architectures listed."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions_cli.common import note


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="saved_models/NAME/VERSION (VERSION an integer, as TF Serving wants).")
def export_command(run, out):
    """Export a trained run as a TF Serving SavedModel.

    Classifier: serving_default takes roi float32 [N, S, S, 1] in [0, 1] (S = the
    run's input size, 64 in the paper) and returns probabilities [N, classes]
    and class_name [N]; serve_raw takes roi float32 [N, H, W, 1], ROI crops in
    the training data's units, and hounsfield bool [N], and windows and resizes
    them in the graph as training did. assets.extra/ holds the model card
    (MODEL_CARD.md, model_card.json). DCGAN/ACGAN generator: takes z float32 [N, latent_dim]
    (and class_id int32 [N] for ACGAN) and returns images [N, 64, 64, 1] in [0, 1].
    Disentanglement run: E_C, E_R and G_R in one SavedModel; serving_default
    (= encode) takes image [N, S, S, 1] and returns c and r; decode takes c
    and r and returns image; classify returns E_C + classifier probabilities.
    """
    from keras_lesions.export import export_run

    path = export_run(run, out)
    click.echo(f"exported {run} -> {path} (check it: saved_model_cli show --dir {path} --all)")


@click.command("predict")
@click.argument("classifier", metavar="RUN_OR_EXPORT",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("source", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV to write (one row per lesion).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mapping CSV of volumes and masks (as `kl data import` takes it), or of "
                   "class-folder files and patients.")
@click.option("--npy-unit", type=click.Choice(["HU", "normalized"]), default="HU",
              show_default=True, help="What the values of .npy ROI files are.")
def predict_command(classifier, source, out, mapping, npy_unit):
    """Classify the lesions of INPUT with a trained classifier.

    RUN_OR_EXPORT is a finished classifier run folder or a SavedModel written
    by `kl export`. INPUT is a dataset file (.h5), a folder with one
    sub-folder of ROI images per class, a folder of unlabelled ROI images, or
    a folder of CT volumes and masks with --mapping. Every lesion is windowed,
    cropped and resized exactly as the classifier's training lesions were (as
    its run recorded). The CSV has one row per lesion: lesion_id, patient_id,
    source, p_<class> for every class, predicted, and true_class where INPUT
    says it.
    """
    from keras_lesions.predict import predict_to_csv

    notes: list[str] = []
    result = predict_to_csv(classifier, source, out, mapping_csv=mapping, npy_unit=npy_unit,
                            log=notes.append)
    for line in notes:
        note(line)
    counts = ", ".join(f"{n} {name}" for name, n in result["class_counts"].items())
    accuracy = (f"; accuracy on the {result['labelled']} labelled: "
                f"{100 * result['accuracy']:.1f}%" if result["accuracy"] is not None else "")
    click.echo(f"wrote {out}: {result['n']} lesions predicted ({counts}){accuracy}")


@click.command("models")
def models_command():
    """List every architecture the project defines, at paper size."""
    from keras_lesions.models.catalog import paper_models, parameter_table

    click.echo(parameter_table(paper_models()))


COMMANDS = [export_command, predict_command, models_command]
