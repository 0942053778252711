"""Networks of Ben-Cohen et al. 2019, Table 1 (two-step disentanglement).

Table 1 came out of the PDF with its three columns interleaved. Our reading,
checked against the text ("ReLU activation for all convolution layers and
dense layers"; "each Conv layer in the decoder is followed by a ×2
upsampling"; 128×128 ROIs, §3.1):

Encoder (E_C and E_R, the same architecture):
    C64K3S2 → C256K3S2 → C1024K3S2 → flatten → Dense 256
    128×128×1 → 64×64×64 → 32×32×256 → 16×16×1024 → 262,144 → 256
Classifier (the classifier after E_C, and the adversarial classifier after E_R):
    Dense 256 → BatchNorm → Dense 256 → BatchNorm → Dense 4 → softmax
Decoder G_R (reads z = (c, r), 256 + 256 = 512 numbers):
    Dense 262,144 → Reshape (16, 16, 1024) → Dropout 0.5
    → C1024K3 ↑2 → C256K3 ↑2 → C64K3 ↑2 → C64K3 → C1K3 → sigmoid
    16 → 32 → 64 → 128: only the first three convolutions can be followed by
    ×2 upsampling if the output is to be 128×128 again, so "each Conv layer"
    reads as "each of the first three"; the last conv has the sigmoid, not ReLU
    (the output is an image in [0, 1]).

Paper-size parameter counts under this reading (Keras ``count_params()``):

    encoder    640 + 147,712 + 2,360,320 + 67,109,120            = 69,617,792
    classifier 65,792 + 1,024 + 65,792 + 1,024 + 1,028 (4 classes) =    134,660
    decoder    134,479,872 + 9,438,208 + 2,359,552 + 147,520
               + 36,928 + 577                                      = 146,462,657

``width`` multiplies every convolution's filters (and with them the 16·16·1024
bottleneck; never below 8 filters), so width 1/32 gives CPU-sized models; the code size (256) and
the classifier's 256 units are separate settings. ``input_size`` may be any
multiple of 8 (three stride-2 convolutions, three ×2 upsamplings).
"""
from __future__ import annotations

import keras
from keras import layers

# Table 1 at paper size.
ENCODER_FILTERS = (64, 256, 1024)
DECODER_FILTERS = (1024, 256, 64, 64)
CODE_SIZE = 256
CLASSIFIER_UNITS = 256


# Narrower layers are not used: at width 1/32 the decoder's 64-filter
# convolutions became 2-filter ReLU layers that died (all zero) within an
# epoch in our CPU runs, leaving G_R a constant grey image.
MIN_FILTERS = 8


def scaled(filters: int, width: float) -> int:
    """Filters of a layer at ``width`` × the paper's (at least ``MIN_FILTERS``)."""
    return max(MIN_FILTERS, int(round(filters * width)))


def _check_size(input_size: int) -> None:
    if input_size < 8 or input_size % 8:
        raise ValueError(f"input_size must be a positive multiple of 8, got {input_size}")


def build_encoder(input_size: int = 128, width: float = 1.0, code_size: int = CODE_SIZE,
                  name: str = "encoder") -> keras.Model:
    """E_C or E_R: image [batch, S, S, 1] in [0, 1] → code [batch, code_size].

    The code comes out of a ReLU (Table 1: ReLU on every dense layer), so it is
    non-negative.
    """
    _check_size(input_size)
    inputs = keras.Input((input_size, input_size, 1), name="image")
    x = inputs
    for i, filters in enumerate(ENCODER_FILTERS, start=1):
        x = layers.Conv2D(scaled(filters, width), 3, strides=2, padding="same",
                          activation="relu", name=f"conv{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    code = layers.Dense(code_size, activation="relu", name="code")(x)
    return keras.Model(inputs, code, name=name)


def build_code_classifier(num_classes: int = 4, code_size: int = CODE_SIZE,
                          units: int = CLASSIFIER_UNITS, bn_momentum: float = 0.9,
                          name: str = "code_classifier") -> keras.Model:
    """The classifier on a code: c → class probabilities (also the adversary on r).

    ``bn_momentum`` is our choice (the paper gives none): with Keras' default
    0.99 the moving statistics lagged far behind the codes of an encoder that
    is still learning. A step-1 classifier scoring 87% on its own training
    images with batch statistics scored 42% with its moving ones, and
    validation picked epochs at random.
    """
    inputs = keras.Input((code_size,), name="code")
    x = layers.Dense(units, activation="relu", name="dense1")(inputs)
    x = layers.BatchNormalization(momentum=bn_momentum, name="bn1")(x)
    x = layers.Dense(units, activation="relu", name="dense2")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name="bn2")(x)
    # float32 outputs even under a mixed-precision policy (compute.precision)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_decoder(input_size: int = 128, width: float = 1.0, c_size: int = CODE_SIZE,
                  r_size: int = CODE_SIZE, dropout: float = 0.5,
                  name: str = "decoder") -> keras.Model:
    """G_R: z = concat(c, r) [batch, c_size + r_size] → image [batch, S, S, 1] in [0, 1]."""
    _check_size(input_size)
    side = input_size // 8
    bottleneck = scaled(DECODER_FILTERS[0], width)
    inputs = keras.Input((c_size + r_size,), name="z")
    x = layers.Dense(side * side * bottleneck, activation="relu", name="dense")(inputs)
    x = layers.Reshape((side, side, bottleneck), name="reshape")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    for i, filters in enumerate(DECODER_FILTERS, start=1):
        x = layers.Conv2D(scaled(filters, width), 3, padding="same", activation="relu",
                          name=f"conv{i}")(x)
        if i <= 3:
            x = layers.UpSampling2D(2, name=f"up{i}")(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype="float32",
                            name="image")(x)
    return keras.Model(inputs, outputs, name=name)


def build_specified_classifier(encoder: keras.Model, head: keras.Model,
                               name: str = "specified_classifier") -> keras.Model:
    """E_C followed by its classifier: the paper's classification network.

    Step 1 of the disentanglement trains exactly this model with cross-entropy
    (§2.1); the mixture experiment trains it again on real and mixed images
    with soft targets (§2.2).
    """
    inputs = keras.Input(encoder.input_shape[1:], name="image")
    outputs = head(encoder(inputs))
    return keras.Model(inputs, outputs, name=name)
