"""``kl reader-study``: the expert reader study (Frid-Adar §4.4, Table 4)."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions_cli.common import SEED, note

DB = click.Path(dir_okay=False, path_type=Path)
DATASET = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("reader-study")
def reader_study_group():
    """Radiologists tell real from synthetic lesions and classify them (Table 4).

    `serve` makes the study (real and synthetic ROIs in one SQLite file) and
    serves it in the browser; `report` writes Table 4 and the readers'
    agreement from it.
    """


@reader_study_group.command("serve")
@click.option("--db", "db_path", type=DB, required=True,
              help="The study database: made if new (needs --real and --synthetic), "
                   "resumed if it exists.")
@click.option("--real", "real_path", type=DATASET,
              help="The real lesions (a dataset file, e.g. from `kl data phantoms/import`).")
@click.option("--synthetic", "synthetic_path", type=DATASET,
              help="The synthetic lesions (a file from `kl synthesize`, or an experiment's "
                   "data/<cell>/synth/dcgan/base-*.h5).")
@click.option("--n-real", type=click.IntRange(min=0),
              help="Real ROIs shown, drawn at random [default: all; the paper showed 182].")
@click.option("--n-synthetic", type=click.IntRange(min=0),
              help="Synthetic ROIs shown, spread evenly over the classes [default: 120, as in "
                   "the paper].")
@click.option("--seed", type=SEED, help="Which lesions are drawn [default: 0].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default is this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free one).")
def serve_command(db_path, real_path, synthetic_path, n_real, n_synthetic, seed, host, port):
    """Serve the reader study in the browser (one ROI at a time, keyboard only).

    Each reader gives their name and gets their own fixed random order; each
    answer is saved in the database the moment it is given, so a reader can
    close the browser and resume at the same image.
    """
    from keras_lesions.reader_study.app import listen, serve
    from keras_lesions.reader_study.study import open_or_create

    listening = listen(host, port)  # a taken port is refused before a study is made
    study, created = open_or_create(db_path, real_path, synthetic_path, n_real=n_real,
                                    n_synthetic=n_synthetic, seed=seed)
    meta = study.meta
    note(f"{'made' if created else 'resumed'} {db_path}: {meta['n_real']} real and "
         f"{meta['n_synthetic']} synthetic ROIs; readers so far: "
         f"{', '.join(study.readers()) or 'none'}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        note(f"listening on {host}: anyone who can reach this machine on port {port} can "
             "open the study" + (" (and requests for any host name are answered)"
                                 if host in ("0.0.0.0", "::") else ""))
    serve(study, listening, host=host, log=note)


@reader_study_group.command("report")
@click.argument("db_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for table4.md and table4.json [default: beside the database, as "
                   "STUDY-table4.md and STUDY-table4.json].")
def report_command(db_path, out):
    """Table 4: each reader's class accuracy (real, synthetic, total), their
    real-vs-synthetic accuracy, and Cohen's kappa between readers."""
    from keras_lesions.reader_study.table4 import table4_lines, write_table4

    if out is None:  # two studies in one folder keep a report each
        result = write_table4(db_path, db_path.parent, stem=f"{db_path.stem}-table4")
    else:
        result = write_table4(db_path, out)
    click.echo("\n".join(table4_lines(result)))
    click.echo(f"\nTable 4: {result['md']}")


COMMANDS = [reader_study_group]
