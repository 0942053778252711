"""Every architecture of the project at paper size, for ``kl models``."""
from __future__ import annotations


def _shape(shape) -> str:
    shapes = shape if isinstance(shape, list) else [shape]
    return ", ".join("x".join(str(d) for d in s[1:]) for s in shapes)


def paper_models() -> list[dict]:
    """Build each paper-size model and describe it (name, shapes, parameters).

    Later issues add their builders here (DCGAN, ACGAN, disentanglement).
    """
    from keras_lesions.models.classifier import build_lesion_classifier

    builders = [
        ("lesion_classifier (3 classes)", lambda: build_lesion_classifier(3)),
        ("lesion_classifier (4 classes)", lambda: build_lesion_classifier(4)),
    ]
    entries = []
    for name, build in builders:
        model = build()
        entries.append({"name": name, "input": _shape(model.input_shape),
                        "output": _shape(model.output_shape),
                        "parameters": int(model.count_params())})
    return entries
