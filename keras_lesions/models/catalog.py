"""Every architecture of the project at paper size, for ``kl models``."""
from __future__ import annotations


def _shape(structure) -> str:
    """Per-sample shapes of a model's inputs or outputs (``model.input`` /
    ``model.output``): one tensor, a list, or a dict of named tensors."""
    def one(tensor) -> str:
        dims = tuple(tensor.shape)[1:]
        return "x".join(str(d) for d in dims) if dims else "scalar"

    if isinstance(structure, dict):
        return ", ".join(f"{name}: {one(t)}" for name, t in structure.items())
    if isinstance(structure, (list, tuple)):
        return ", ".join(one(t) for t in structure)
    return one(structure)


def paper_models() -> list[dict]:
    """Build each paper-size model and describe it (name, shapes, parameters).

    """
    from keras_lesions.models.classifier import build_lesion_classifier
    from keras_lesions.models.gan import (
        build_acgan_discriminator, build_acgan_generator, build_dcgan_discriminator,
        build_dcgan_generator)
    from keras_lesions.models.disentangle import (
        build_code_classifier, build_decoder, build_encoder)

    builders = [
        ("lesion_classifier (3 classes)", lambda: build_lesion_classifier(3)),
        ("lesion_classifier (4 classes)", lambda: build_lesion_classifier(4)),
        ("dcgan_generator", lambda: build_dcgan_generator()),
        ("dcgan_discriminator", lambda: build_dcgan_discriminator()),
        ("acgan_generator (3 classes)", lambda: build_acgan_generator(3)),
        ("acgan_discriminator (3 classes)", lambda: build_acgan_discriminator(3)),
        ("encoder E_C / E_R (Ben-Cohen)", lambda: build_encoder()),
        ("classifier / adversary (4 classes)", lambda: build_code_classifier(4)),
        ("decoder G_R (Ben-Cohen)", lambda: build_decoder()),
    ]
    entries = []
    for name, build in builders:
        model = build()
        entries.append({"name": name, "input": _shape(model.input),
                        "output": _shape(model.output),
                        "parameters": int(model.count_params())})
    return entries


def parameter_table(entries: list[dict]) -> str:
    """:func:`paper_models` as a text table: name, input, output, parameters."""
    lines = [f"{'model':<34} {'input':<22} {'output':<20} {'parameters':>12}"]
    lines += [f"{e['name']:<34} {e['input']:<22} {e['output']:<20} {e['parameters']:>12,}"
              for e in entries]
    return "\n".join(lines)
