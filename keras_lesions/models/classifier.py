"""The liver-lesion classification CNN of Frid-Adar et al. 2018 §2.2.

"Fixed size input ROIs of 64×64, with an intensity range rescaled to (0,1).
The architecture consists of three pairs of convolutional layers where each
convolutional layer is followed by a max-pooling layer, and two dense
fully-connected layers ending with a soft-max layer [...] ReLU [...] approximately
1.3 M parameters [...] dropout [...] 0.5."

The paper gives neither kernel sizes nor widths. Our reading, which lands on
the stated size: 5×5 convolutions with 32, 64, 128 filters ('same' padding),
each followed by 2×2 max-pooling (64 → 32 → 16 → 8), then Dense(128) and
Dense(classes). Parameter count for 3 classes:

    conv 5×5×1×32 + 32        =       832
    conv 5×5×32×64 + 64       =    51,264
    conv 5×5×64×128 + 128     =   204,928
    dense 8·8·128×128 + 128   = 1,048,704
    dense 128×3 + 3           =       387
    trainable                 = 1,306,115   (≈ 1.31 M)
    + the stored training-set mean (1 non-trainable weight) = 1,306,116
"""
from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="keras_lesions")
class SubtractMean(layers.Layer):
    """Subtracts the training-set mean intensity, stored as a weight.

    Keeping the mean inside the model means exported models take raw [0, 1]
    input, and the statistic travels with the weights it was fitted beside
    (fitted on training folds only, by the training code).
    """

    def __init__(self, mean: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_mean = float(mean)

    def build(self, input_shape):
        self.mean = self.add_weight(
            name="mean", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.initial_mean))

    def call(self, inputs):
        return inputs - keras.ops.cast(self.mean, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.initial_mean}


def build_lesion_classifier(
    num_classes: int = 3,
    input_size: int = 64,
    filters: tuple[int, int, int] = (32, 64, 128),
    kernel_size: int = 5,
    dense_units: int = 128,
    dropout: float = 0.5,
    mean: float = 0.0,
    name: str = "lesion_classifier",
) -> keras.Model:
    """Build the classification CNN (Frid-Adar et al. 2018 §2.2).

    Args:
        num_classes: size of the softmax (3 in Frid-Adar, 4 with healthy).
        input_size: side of the square input (64 in the paper).
        filters: filters of the three conv layers.
        kernel_size: conv kernel side.
        dense_units: width of the hidden dense layer.
        dropout: dropout rate before the output layer (0.5, §2.2).
        mean: training-set mean intensity, subtracted inside the model.
        name: model name.

    Returns:
        A functional model: float32 [batch, input_size, input_size, 1] in
        [0, 1] → class probabilities [batch, num_classes].
    """
    inputs = keras.Input((input_size, input_size, 1), name="roi")
    x = SubtractMean(mean, name="subtract_mean")(inputs)
    for i, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, kernel_size, padding="same", activation="relu",
                          name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    # float32 even under a mixed-precision policy (compute.precision): a
    # float16 softmax loses small probabilities
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
