"""Table 4 of an experiment: the reader study (``evaluate.reader_study``)
in a gan-curve's report. The study itself is made and served by
``keras_lesions.reader_study`` (``kl reader-study``); this only checks that
it fits the experiment and puts its table in the report."""
from __future__ import annotations

from keras_lesions.config import ExperimentConfig
from keras_lesions.reader_study.study import Study, StudyError


def reader_study_of(config: ExperimentConfig, class_names=None) -> Study | None:
    """The config's reader study, opened and checked (before any run, so a
    wrong path is found at the start, not after hours of training); None
    when the config names none.

    Raises:
        StudyError: a file that is not a study database, or a study of other
            classes than the experiment's.
    """
    path = config.evaluate.reader_study
    if path is None:
        return None
    study = Study(path)
    if class_names is not None and sorted(study.class_names) != sorted(class_names):
        raise StudyError(f"is a study of {', '.join(study.class_names)}; the experiment's "
                         f"classes are {', '.join(class_names)}", path)
    return study


def table4_appendix(config: ExperimentConfig, class_names, report_dir
                    ) -> tuple[list[str], int | None]:
    """report/table4.md and its Markdown lines for the report (none without
    a study), and how many answers the study held when it was read (None
    without one): the report is made again once it holds more."""
    from keras_lesions.reader_study.table4 import table4_lines, write_table4

    study = reader_study_of(config, class_names)
    if study is None:
        return [], None
    answers = study.answer_count()  # before reading: an answer given meanwhile remakes it
    result = write_table4(study, report_dir)
    return ["", "## Table 4: the readers' assessment of the lesion ROIs (§4.4)", "",
            f"From the reader study {study.path} ({study.meta['n_real']} real ROIs of "
            f"{study.meta['real']['path']}, {study.meta['n_synthetic']} synthetic of "
            f"{study.meta['synthetic']['path']}); table4.md has the same table.", "",
            *table4_lines(result)], answers
